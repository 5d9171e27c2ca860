"""Budgets of wrong guesses: how many failed secret checks a client may cause, and when.

Every check of a secret (the admin password, an RFID/PIN, a user id) asks `admit` first.
A check is admitted when the client's address, its network and everybody together each
have budget left; a failed check uses one unit of each, a right one gives it back. A
budget is a leaky bucket: `burst` failures at once, then one more every `period_s`
seconds. When a bucket is empty the check is not made at all and the caller is told how
long to wait (`Refusal.retry_after`); nobody is ever held waiting here.

Buckets (per kind of secret, so guessing PINs does not lock out the admin password):

* the address: an IPv4 address, or the /64 of an IPv6 address (one LAN);
* its network: the IPv4 /24, or the IPv6 /48 (one customer of an ISP);
* everybody: one bucket for all addresses.

An address that proved the admin password recently is trusted for it: only its own
address bucket applies, so many attacking addresses that empty the network and global
buckets do not lock out an admin who has logged in before. Only the admin password earns
trust: any user can prove their own card or user id, and must not buy budget with it.

Memory is bounded: a bucket that has leaked empty is forgotten (it holds nothing a new
one would not), failures need budget of the global bucket so few buckets fill at a time,
and a hard cap on the table drops the least filled buckets first. Time comes from an
injected monotonic clock.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

ANY_ADDRESS = "*"


class Secret(Enum):
    """The kinds of secret a client may guess, each with its own budgets."""

    ADMIN_PASSWORD = "the admin password"
    CARD = "an RFID/PIN"
    USER_ID = "a user id"


class Scope(Enum):
    ADDRESS = "address"
    NETWORK = "network"
    EVERYONE = "all addresses"


@dataclass(frozen=True)
class Budget:
    """`burst` failures at once, then one more every `period_s` seconds."""

    burst: int
    period_s: float


DEFAULT_BUDGETS = {
    Scope.ADDRESS: Budget(burst=10, period_s=60.0),
    Scope.NETWORK: Budget(burst=20, period_s=20.0),
    Scope.EVERYONE: Budget(burst=50, period_s=6.0),
}
TRUST_S = 24 * 3600.0
MAX_BUCKETS = 10_000
MAX_TRUSTED = 1_000
MIN_RETRY_S = 1


def prefixes(remote: str) -> tuple[str, str]:
    """(address, network) of a client: IPv4 /32 and /24, IPv6 /64 and /48. An IPv4
    address mapped into IPv6 counts as IPv4; what is not an address (a Unix socket) is
    its own address in one network of such clients."""
    text = remote.strip().strip("[]").split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return f"other:{remote[:64]}", "other"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return str(addr), str(ipaddress.ip_network(f"{addr}/24", strict=False))
    return (str(ipaddress.ip_network(f"{addr}/64", strict=False)),
            str(ipaddress.ip_network(f"{addr}/48", strict=False)))


@dataclass
class _Bucket:
    level: float = 0.0  # failures not yet leaked away, as of `at`
    at: float = 0.0
    in_flight: int = 0  # admitted checks not settled yet (each may still fail)


_Key = tuple[Secret, Scope, str]


@dataclass(frozen=True)
class Refusal:
    """Why a check was not admitted: the bucket that is empty and when to try again."""

    secret: Secret
    scope: Scope
    prefix: str
    retry_after: int  # whole seconds, at least 1

    def describe(self) -> str:
        where = {Scope.ADDRESS: f"from {self.prefix}",
                 Scope.NETWORK: f"from the network {self.prefix}",
                 Scope.EVERYONE: "from all addresses together"}[self.scope]
        return f"too many wrong guesses of {self.secret.value} {where}"


class Ticket:
    """One admitted check; report its outcome once with `settle`."""

    def __init__(self, throttle: Throttle, secret: Secret, remote: str,
                 keys: tuple[_Key, ...]) -> None:
        self._throttle = throttle
        self.secret = secret
        self.remote = remote
        self._keys = keys
        self._open = True

    def settle(self, failed: bool, proved: bool = False) -> None:
        """The check is over: `failed` uses budget; `proved` (a right secret) gives it
        back and, for the admin password, trusts the address. Neither: the check ended
        without an answer about the secret (only its budget reservation is returned)."""
        if self._open:
            self._open = False
            self._throttle._settle(self, self._keys, failed, proved)


class Throttle:
    """The budgets of every client, for every kind of secret."""

    def __init__(self, monotonic: Callable[[], float],
                 budgets: dict[Scope, Budget] | None = None, trust_s: float = TRUST_S,
                 max_buckets: int = MAX_BUCKETS, max_trusted: int = MAX_TRUSTED) -> None:
        self.monotonic = monotonic
        self.budgets = dict(DEFAULT_BUDGETS if budgets is None else budgets)
        self.trust_s = trust_s
        self.max_buckets = max_buckets
        self.max_trusted = max_trusted
        self._buckets: dict[_Key, _Bucket] = {}
        self._trusted: dict[tuple[Secret, str], float] = {}  # address -> trusted until
        self.failures_total = 0  # failed checks since start (for the record)

    # --- asking ------------------------------------------------------------------------

    def admit(self, secret: Secret, remote: str) -> Ticket | Refusal:
        """A ticket for one check of `secret` from `remote`, or why not (at once)."""
        now = self.monotonic()
        keys = self._keys(secret, remote, now)
        worst: tuple[float, _Key] | None = None
        for key in keys:
            budget = self.budgets[key[1]]
            bucket = self._buckets.get(key)
            if bucket is None:
                continue
            over = self._level(bucket, budget, now) + bucket.in_flight + 1 - budget.burst
            if over > 0 and (worst is None or over * budget.period_s > worst[0]):
                worst = (over * budget.period_s, key)
        if worst is not None:
            wait, (_, scope, prefix) = worst
            return Refusal(secret, scope, prefix, max(MIN_RETRY_S, math.ceil(wait)))
        for key in keys:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(at=now)
            bucket.in_flight += 1
        if len(self._buckets) > self.max_buckets:
            self._shrink(now, int(self.max_buckets * 0.9))
        return Ticket(self, secret, remote, keys)

    def trusted(self, secret: Secret, remote: str) -> bool:
        """Did `remote`'s address prove `secret` within the trust time?"""
        return self._is_trusted(secret, prefixes(remote)[0], self.monotonic())

    def failures(self, secret: Secret, remote: str, scope: Scope = Scope.ADDRESS) -> float:
        """Failures of `remote`'s bucket in `scope` not yet leaked away."""
        address, network = prefixes(remote)
        prefix = {Scope.ADDRESS: address, Scope.NETWORK: network,
                  Scope.EVERYONE: ANY_ADDRESS}[scope]
        bucket = self._buckets.get((secret, scope, prefix))
        if bucket is None:
            return 0.0
        return self._level(bucket, self.budgets[scope], self.monotonic())

    def priority(self, secret: Secret, remote: str) -> int:
        """Whose check runs first when checks queue: 0 a trusted address, 1 an address
        with no failures and nothing in flight, 2 the others."""
        now = self.monotonic()
        address = prefixes(remote)[0]
        if self._is_trusted(secret, address, now):
            return 0
        bucket = self._buckets.get((secret, Scope.ADDRESS, address))
        if bucket is None or (bucket.in_flight == 0 and self._level(
                bucket, self.budgets[Scope.ADDRESS], now) == 0):
            return 1
        return 2

    def size(self) -> int:
        """Buckets and trusted addresses held (what the memory bound is about)."""
        return len(self._buckets) + len(self._trusted)

    # --- internals ---------------------------------------------------------------------

    def _keys(self, secret: Secret, remote: str, now: float) -> tuple[_Key, ...]:
        address, network = prefixes(remote)
        own: _Key = (secret, Scope.ADDRESS, address)
        if self._is_trusted(secret, address, now):
            return (own,)
        return (own, (secret, Scope.NETWORK, network), (secret, Scope.EVERYONE, ANY_ADDRESS))

    def _is_trusted(self, secret: Secret, address: str, now: float) -> bool:
        until = self._trusted.get((secret, address))
        if until is None:
            return False
        if now >= until:
            del self._trusted[(secret, address)]
            return False
        return True

    @staticmethod
    def _level(bucket: _Bucket, budget: Budget, now: float) -> float:
        return max(0.0, bucket.level - (now - bucket.at) / budget.period_s)

    def _settle(self, ticket: Ticket, keys: tuple[_Key, ...], failed: bool,
                proved: bool) -> None:
        now = self.monotonic()
        for key in keys:
            bucket = self._buckets.get(key)
            if bucket is None:  # dropped by the cap while in flight
                continue
            budget = self.budgets[key[1]]
            bucket.in_flight = max(0, bucket.in_flight - 1)
            bucket.level = self._level(bucket, budget, now) + (1.0 if failed else 0.0)
            bucket.at = now
            if bucket.level == 0 and bucket.in_flight == 0:
                del self._buckets[key]
        if failed:
            self.failures_total += 1
        elif proved and ticket.secret is Secret.ADMIN_PASSWORD:
            address = prefixes(ticket.remote)[0]
            self._trusted.pop((ticket.secret, address), None)
            self._trusted[(ticket.secret, address)] = now + self.trust_s
            while len(self._trusted) > self.max_trusted:  # the oldest proof goes first
                del self._trusted[next(iter(self._trusted))]

    def _shrink(self, now: float, target: int) -> None:
        """Forget what has leaked empty, then, down to `target`, the least filled buckets
        of addresses and networks (never a global one, never one with a check in
        flight). Shrinking below the cap keeps this rare."""

        def level(key: _Key) -> float:
            return self._level(self._buckets[key], self.budgets[key[1]], now)

        for key in [k for k, b in self._buckets.items() if b.in_flight == 0 and level(k) == 0]:
            del self._buckets[key]
        excess = len(self._buckets) - target
        if excess <= 0:
            return
        candidates = [k for k, b in self._buckets.items()
                      if k[1] is not Scope.EVERYONE and b.in_flight == 0]
        for key in sorted(candidates, key=level)[:excess]:
            del self._buckets[key]
