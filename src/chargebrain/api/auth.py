"""Who is calling, and the checks of every secret a client may present.

The admin proves who they are with HTTP Basic, user `admin` and the admin password. The
password is stored as an scrypt hash in the settings; an empty password (the default, as
on the real product) makes every caller the admin. Users prove who they are with their
user id or an RFID/PIN of theirs (see the commands).

Every check of a secret first asks the throttle (`throttle.py`) for budget: a failed
check uses budget of the client's address, its network and everybody; with no budget
left the secret is not checked and the request is answered at once with 429 and
`Retry-After`, or, for a public command that brought wrong credentials unasked, as to an
anonymous caller. Nobody is held waiting. The admin password is checked on a small pool
of scrypt threads, and right and wrong credentials already seen are answered from keyed
digests (`passwords.py`).

This module must never log or store a password in clear text, and never answer 401 or
429 for a command of the public level (get_dev_info, get_params, …) because of
credentials sent unasked.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from aiohttp import web

from chargebrain.api import answers, passwords
from chargebrain.api.commands import COMMANDS, Caller, Permission
from chargebrain.api.errors import ApiError
from chargebrain.api.passwords import Digests, hash_password
from chargebrain.api.throttle import Refusal, Secret

if TYPE_CHECKING:
    from chargebrain.api.services import Services
    from chargebrain.store.db import Store

log = logging.getLogger("chargebrain.auth")

SETTING = "admin_pwd"
ADMIN_USER = "admin"
# Kept here for the callers that know them from this module.
MAX_PASSWORD_LEN = passwords.MAX_PASSWORD_LEN
verify_password = passwords.verify_password
password_problem = passwords.password_problem


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
    stored = hash_password(password)
    store.set_setting(SETTING, stored)
    _hashes.pop(store, None)
    forget_verified()
    if stored:
        # This process knows the new password: its first use needs no scrypt run.
        passwords.verified.add(Digests.digest(stored, ADMIN_USER, password))


def may_run_without_password(app: Services) -> bool:
    """May the server go on without an admin password? Only when it listens on loopback,
    or was started with --allow-insecure (as `chargebrain run` decides at start)."""
    return app.allow_insecure or is_loopback(app.http_host)


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


@dataclass
class Attempt:
    """The outcome of one guarded attempt; set `failed` when the proof was wrong."""

    failed: bool = False


def too_many(refusal: Refusal) -> ApiError:
    """The 429 answer to a check the throttle did not admit."""
    return ApiError(429, f"{refusal.describe()}; try again in {refusal.retry_after} s",
                    headers={"Retry-After": str(refusal.retry_after)})


@asynccontextmanager
async def guarded(app: Services, remote: str, secret: Secret) -> AsyncIterator[Attempt]:
    """Check a cheap secret (an RFID/PIN, a user id) from `remote` inside this block.

    Raises the 429 ApiError at once when the throttle has no budget for the check (the
    block does not run). Mark `attempt.failed` when the secret was wrong.
    """
    ticket = app.throttle.admit(secret, remote)
    if isinstance(ticket, Refusal):
        log.debug("not checked: %s", ticket.describe())
        raise too_many(ticket)
    attempt = Attempt()
    try:
        yield attempt
    finally:
        ticket.settle(failed=attempt.failed)
        if attempt.failed:
            log.warning("failed check of %s from %s", secret.value, remote or "?")


class Verdict(Enum):
    RIGHT = "right"
    WRONG = "wrong"
    REFUSED = "refused"  # not checked: no budget left


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    refusal: Refusal | None = None


async def check_admin_password(app: Services, remote: str, user: str, password: str) -> Check:
    """Is (user, password) the admin's? Asks the throttle first, except for credentials
    already known to be wrong (answered from their digest, at no cost: their sender
    learns nothing new). Right credentials already seen skip scrypt but not the throttle:
    answering them over budget would let anyone test guesses against them for free."""
    stored = stored_hash(app.store)
    if stored == "":
        return Check(Verdict.RIGHT if password == "" else Verdict.WRONG)
    key = Digests.digest(stored, user, password)
    if key in passwords.rejected:
        return Check(Verdict.WRONG)
    priority = app.throttle.priority(Secret.ADMIN_PASSWORD, remote)
    ticket = app.throttle.admit(Secret.ADMIN_PASSWORD, remote)
    if isinstance(ticket, Refusal):
        log.debug("not checked: %s", ticket.describe())
        return Check(Verdict.REFUSED, refusal=ticket)
    verdict: Verdict | None = None
    try:
        if key in passwords.verified:
            verdict = Verdict.RIGHT
        else:
            ok = await app.password_checks.check(priority, stored, password)
            right = ok and hmac.compare_digest(user.encode(), ADMIN_USER.encode())
            (passwords.verified if right else passwords.rejected).add(key)
            verdict = Verdict.RIGHT if right else Verdict.WRONG
    finally:
        ticket.settle(failed=verdict is Verdict.WRONG, proved=verdict is Verdict.RIGHT)
    if verdict is Verdict.WRONG:
        log.warning("wrong admin password from %s", remote or "?")
    return Check(verdict)


def _public_request(request: web.Request) -> bool:
    if request.path != "/cnf":
        return False
    cmd = COMMANDS.get(request.query.get("cmd", "").strip())
    return cmd is not None and cmd.permission is Permission.PUBLIC


async def identify(app: Services, request: web.Request) -> Caller:
    """The caller of `request`. Raises the 429 ApiError when the request brought
    credentials the throttle has no budget to check, except for a public command, which
    is then answered as to a caller without credentials."""
    remote = request.remote or ""
    if stored_hash(app.store) == "":
        return Caller(is_admin=True, remote=remote)
    creds = basic_credentials(request)
    if creds is None:
        return Caller(is_admin=False, remote=remote)
    check = await check_admin_password(app, remote, *creds)
    if check.verdict is Verdict.RIGHT:
        return Caller(is_admin=True, remote=remote)
    if check.refusal is not None and not _public_request(request):
        raise too_many(check.refusal)
    return Caller(is_admin=False, remote=remote, bad_credentials=True)


async def penalise(app: Services, caller: Caller) -> None:
    """Called when a request is refused for want of the admin password: records the
    refusal (the failure itself was counted when the password was checked)."""
    if caller.bad_credentials:
        log.info("refused: wrong admin password from %s", caller.remote or "?")
    else:
        log.debug("refused: no credentials from %s", caller.remote or "?")


def challenge(message: str) -> web.Response:
    """A 401 JSON answer that asks for HTTP Basic credentials."""
    return answers.challenge(message)


def forget_verified() -> None:
    """Drop remembered right credentials (after the password changed)."""
    passwords.verified.clear()
