"""Who is calling: HTTP Basic with user `admin` and the admin password.

The password is stored as an scrypt hash in the settings; an empty password (the
default, as on the real product) makes every caller the admin. Credentials are
compared in constant time. Every failed attempt to prove who one is (a wrong admin
password, an unknown RFID/PIN or user id) counts against the client's address: after a
few failures each further attempt from that address waits before it is checked, one at
a time, so guessing is slow even with many parallel requests.

This module must never log or store a password in clear text, and never answer 401 for
a command of the public level (get_dev_info, enter_rfid, …) because of wrong
credentials sent unasked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from chargebrain.api import answers
from chargebrain.api.commands import COMMANDS, Caller, Permission

if TYPE_CHECKING:
    from chargebrain.api.services import Services
    from chargebrain.store.db import Store

log = logging.getLogger("chargebrain.auth")

SETTING = "admin_pwd"
ADMIN_USER = "admin"
MAX_PASSWORD_LEN = 256
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# Verified passwords are remembered as keyed digests so a polling client with the right
# password does not cost an scrypt run per request.
_CACHE_KEY = secrets.token_bytes(32)
_CACHE_SIZE = 8


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


def password_problem(password: str) -> str | None:
    """Why `password` cannot be the admin password, or None if it can."""
    if len(password) > MAX_PASSWORD_LEN:
        return f"the password is longer than {MAX_PASSWORD_LEN} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
        return "the password contains control characters"
    return None


#: How long a hash read from the store is used before it is read again. Every request
#: asks for it; a change through the API takes effect at once, one made by `chargebrain
#: set-password` in another process within this time.
HASH_TTL_S = 1.0
_hashes: weakref.WeakKeyDictionary[Store, tuple[float, str]] = weakref.WeakKeyDictionary()


def stored_hash(store: Store) -> str:
    now = time.monotonic()
    known = _hashes.get(store)
    if known is not None and now < known[0]:
        return known[1]
    value = store.get_setting(SETTING, "")
    stored = value if isinstance(value, str) else ""
    _hashes[store] = (now + HASH_TTL_S, stored)
    return stored


def admin_password_set(store: Store) -> bool:
    return stored_hash(store) != ""


def set_admin_password(store: Store, password: str) -> None:
    """Store the hash of `password` ('' removes the password). Raises ValueError."""
    problem = password_problem(password)
    if problem is not None:
        raise ValueError(problem)
    store.set_setting(SETTING, hash_password(password))
    _hashes.pop(store, None)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


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
    """Remembers recent failed attempts per client address to slow down guessing.

    The first `free` failures cost nothing; after that every attempt waits
    `base * 2 ** (failures - free)` seconds (at most `cap`). Failures older than
    `window` seconds are forgotten.
    """

    def __init__(self, free: int = 3, base: float = 0.25, cap: float = 5.0,
                 window: float = 300.0, monotonic: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000) -> None:
        self.free = free
        self.base = base
        self.cap = cap
        self.window = window
        self.monotonic = monotonic
        self.max_clients = max_clients
        self._fails: dict[str, tuple[int, float]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    def failures(self, remote: str) -> int:
        count, last = self._fails.get(remote, (0, 0.0))
        if self.monotonic() - last > self.window:
            return 0
        return count

    def delay(self, remote: str) -> float:
        """Seconds the next attempt from `remote` has to wait."""
        count = self.failures(remote)
        if count <= self.free:
            return 0.0
        return float(min(self.cap, self.base * 2 ** (count - self.free)))

    def failed(self, remote: str) -> int:
        count = self.failures(remote) + 1
        self._fails[remote] = (count, self.monotonic())
        if len(self._fails) > self.max_clients:
            self._forget_oldest()
        return count

    def succeeded(self, remote: str) -> None:
        self._fails.pop(remote, None)

    def lock(self, remote: str) -> asyncio.Lock:
        """One attempt at a time per client (held while it waits and is checked)."""
        lock = self._locks.get(remote)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[remote] = lock
        return lock

    def _forget_oldest(self) -> None:
        now = self.monotonic()
        for key in [k for k, (_, last) in self._fails.items() if now - last > self.window]:
            del self._fails[key]
        while len(self._fails) > self.max_clients:
            oldest = min(self._fails, key=lambda k: self._fails[k][1])
            del self._fails[oldest]


@dataclass
class Attempt:
    """The outcome of one guarded attempt; set `failed` when the proof was wrong."""

    failed: bool = False


@asynccontextmanager
async def guarded(app: Services, remote: str) -> AsyncIterator[Attempt]:
    """Check a secret (password, RFID/PIN, user id) from `remote` inside this block.

    Waits first if the client has failed before, and holds the client's lock so that
    parallel attempts are checked one after the other. Mark `attempt.failed` to count it.
    """
    tracker = app.auth_failures
    async with tracker.lock(remote):
        wait = tracker.delay(remote)
        if wait > 0:
            await asyncio.sleep(wait)
        attempt = Attempt()
        try:
            yield attempt
        finally:
            if attempt.failed:
                count = tracker.failed(remote)
                log.warning("failed attempt from %s (%d in a row)", remote or "?", count)


_verified: set[bytes] = set()


def _cache_key(stored: str, password: str) -> bytes:
    return hmac.new(_CACHE_KEY, f"{stored}\0{password}".encode(), hashlib.sha256).digest()


async def _check_password(stored: str, user: str, password: str) -> bool:
    user_ok = hmac.compare_digest(user.encode(), ADMIN_USER.encode())
    key = _cache_key(stored, password)
    if key in _verified:
        return user_ok
    ok = await asyncio.to_thread(verify_password, stored, password)
    if ok:
        if len(_verified) >= _CACHE_SIZE:
            _verified.clear()
        _verified.add(key)
    return ok and user_ok


def _public_request(request: web.Request) -> bool:
    if request.path != "/cnf":
        return False
    cmd = COMMANDS.get(request.query.get("cmd", "").strip())
    return cmd is not None and cmd.permission is Permission.PUBLIC


async def identify(app: Services, request: web.Request) -> Caller:
    remote = request.remote or ""
    stored = stored_hash(app.store)
    if stored == "":
        return Caller(is_admin=True, remote=remote)
    creds = basic_credentials(request)
    if creds is None:
        return Caller(is_admin=False, remote=remote)
    user, password = creds
    if _public_request(request):
        # Public commands work whatever credentials come with them; a client that is
        # failing gets no free password checks through them.
        if app.auth_failures.delay(remote) > 0:
            return Caller(is_admin=False, remote=remote, bad_credentials=True)
        ok = await _check_password(stored, user, password)
        return Caller(is_admin=ok, remote=remote, bad_credentials=not ok)
    async with guarded(app, remote) as attempt:
        ok = await _check_password(stored, user, password)
        attempt.failed = not ok
    if ok:
        app.auth_failures.succeeded(remote)
        return Caller(is_admin=True, remote=remote)
    return Caller(is_admin=False, remote=remote, bad_credentials=True)


async def penalise(app: Services, caller: Caller) -> None:
    """Called when a request is refused for want of the admin password.

    The waiting is done before credentials are checked (see `guarded`), so a refused
    request is not held any longer here; this records the refusal for the admin.
    """
    if caller.bad_credentials:
        log.info("refused: wrong admin password from %s", caller.remote or "?")
    else:
        log.debug("refused: no credentials from %s", caller.remote or "?")


def challenge(message: str) -> web.Response:
    """A 401 JSON answer that asks for HTTP Basic credentials."""
    return answers.challenge(message)


def forget_verified() -> None:
    """Drop remembered verifications (after the password changed)."""
    _verified.clear()

