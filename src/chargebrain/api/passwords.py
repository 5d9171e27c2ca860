"""The admin password's hash, the memory of recent answers, and where scrypt runs.

The password is stored as `scrypt$salt$hash` (about 40 ms of one core per check). So
that checking costs that only when it tells something new:

* `verified` remembers, as keyed digests, credentials that proved right (a polling client
  with the right password costs no scrypt run per request);
* `rejected` remembers credentials that proved wrong: the same wrong password sent again
  (a misconfigured client, or one guess repeated) is answered at once, costs no scrypt
  run and no budget, and tells the sender nothing it did not know.

Both digests cover the stored hash too, so a new password makes every old entry useless
at once. The digest key is random per process; no password is kept in clear.

scrypt runs on a pool of two threads of its own (`CheckPool`); when checks queue, the
lowest priority number goes first (see `throttle.Throttle.priority`), so that an admin
whose address is trusted or clean does not queue behind an attacker's checks.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

MAX_PASSWORD_LEN = 256
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
WORKERS = 2
_EXECUTOR = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="chargebrain-scrypt")


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


class Digests:
    """A bounded set of keyed digests of (stored hash, user, password); the least
    recently used goes first."""

    _KEY = secrets.token_bytes(32)

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    @classmethod
    def digest(cls, stored: str, user: str, password: str) -> bytes:
        text = f"{stored}\0{user}\0{password}".encode("utf-8", "surrogatepass")
        return hmac.new(cls._KEY, text, hashlib.sha256).digest()

    def __contains__(self, key: bytes) -> bool:
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        return False

    def add(self, key: bytes) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def clear(self) -> None:
        self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)


# Right credentials: one per stored hash, a few hashes at most (changes, other processes).
verified = Digests(8)
# Wrong credentials: enough for every misconfigured client of a site and more.
rejected = Digests(1024)


class CheckPool:
    """Runs password checks on the scrypt threads, at most `workers` at a time; waiting
    checks start by priority (lower first), then in order of arrival. Nobody waits for
    long: the throttle admits no more checks than budget is left."""

    def __init__(self, monotonic: Callable[[], float], workers: int = WORKERS) -> None:
        self.monotonic = monotonic
        self.workers = workers
        self._free = workers
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.checks = 0  # checks run
        self.queued = 0  # of which had to wait for a thread
        self.longest_wait_s = 0.0

    @property
    def busy(self) -> int:
        """Checks running or waiting for a thread."""
        return self.workers - self._free + sum(not f.done() for _, _, f in self._waiting)

    async def check(self, priority: int, stored: str, password: str) -> bool:
        """Is `password` the one `stored` hashes? (Records how long it waited to start.)"""
        started = self.monotonic()
        await self._acquire(priority)
        waited = self.monotonic() - started
        self.longest_wait_s = max(self.longest_wait_s, waited)
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(_EXECUTOR, verify_password, stored, password)
        finally:
            self._release()
        return ok

    async def _acquire(self, priority: int) -> None:
        self.checks += 1
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        self.queued += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # the thread was handed over just as the caller left
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1
