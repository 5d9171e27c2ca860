"""Who is calling: HTTP Basic with user `admin` and the admin password.

The password is stored as an scrypt hash in the settings; an empty password (the
default, as on the real product) makes every caller the admin. Failed attempts from one
client are slowed down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING

from aiohttp import web

from chargebrain.api.commands import Caller

if TYPE_CHECKING:
    from chargebrain.app import App

SETTING = "admin_pwd"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """`scrypt$salt$hash`, or '' for the empty password."""
    if password == "":
        return ""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(stored: str, password: str) -> bool:
    if stored == "":
        return password == ""
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
        salt, digest = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=salt, dklen=len(digest), **_SCRYPT)
    return hmac.compare_digest(candidate, digest)


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


class FailureTracker:
    """Remembers recent failed logins per client to slow down guessing."""

    def __init__(self) -> None:
        self._fails: dict[str, tuple[int, float]] = {}

    def delay(self, remote: str) -> float:
        count, last = self._fails.get(remote, (0, 0.0))
        if time.monotonic() - last > 300:
            return 0.0
        return min(5.0, 0.25 * (2 ** max(0, count - 3))) if count > 3 else 0.0

    def failed(self, remote: str) -> None:
        count, last = self._fails.get(remote, (0, 0.0))
        if time.monotonic() - last > 300:
            count = 0
        self._fails[remote] = (count + 1, time.monotonic())
        if len(self._fails) > 10_000:
            self._fails.clear()

    def succeeded(self, remote: str) -> None:
        self._fails.pop(remote, None)


async def identify(app: App, request: web.Request) -> Caller:
    remote = request.remote or ""
    stored = str(app.store.get_setting(SETTING, ""))
    creds = basic_credentials(request)
    if stored == "":
        return Caller(is_admin=True, remote=remote)
    if creds is None:
        return Caller(is_admin=False, remote=remote)
    user, password = creds
    ok = user == "admin" and await asyncio.to_thread(verify_password, stored, password)
    if ok:
        app.auth_failures.succeeded(remote)
        return Caller(is_admin=True, remote=remote)
    app.auth_failures.failed(remote)
    return Caller(is_admin=False, remote=remote, bad_credentials=True)


async def penalise(app: App, caller: Caller) -> None:
    """Slow down a client that keeps failing."""
    delay = app.auth_failures.delay(caller.remote)
    if delay:
        await asyncio.sleep(delay)
