"""The throttle and the scrypt pool on their own: prefixes, leaking budgets, Retry-After,
trust, bounded memory, the order in which queued checks start."""

from __future__ import annotations

import asyncio

import pytest

from chargebrain.api import passwords
from chargebrain.api.throttle import (
    DEFAULT_BUDGETS,
    Budget,
    Refusal,
    Scope,
    Secret,
    Throttle,
    Ticket,
    prefixes,
)

PW = Secret.ADMIN_PASSWORD


class Now:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def fail(throttle: Throttle, remote: str, secret: Secret = PW) -> None:
    ticket = throttle.admit(secret, remote)
    assert isinstance(ticket, Ticket), ticket
    ticket.settle(failed=True)


def test_prefixes() -> None:
    assert prefixes("192.0.2.7") == ("192.0.2.7", "192.0.2.0/24")
    assert prefixes("::ffff:192.0.2.7") == ("192.0.2.7", "192.0.2.0/24")
    assert prefixes("2001:db8:1:2:3:4:5:6") == ("2001:db8:1:2::/64", "2001:db8:1::/48")
    assert prefixes("fe80::1%eth0") == ("fe80::/64", "fe80::/48")
    assert prefixes("") == ("other:", "other")


def test_budget_leaks_back_and_retry_after_says_when() -> None:
    now = Now()
    budget = DEFAULT_BUDGETS[Scope.ADDRESS]
    throttle = Throttle(now)
    for _ in range(budget.burst):
        fail(throttle, "192.0.2.7")
    refusal = throttle.admit(PW, "192.0.2.7")
    assert isinstance(refusal, Refusal) and refusal.scope is Scope.ADDRESS
    assert refusal.retry_after == budget.period_s
    assert "192.0.2.7" in refusal.describe()
    # Other kinds of secret and other addresses have their own budgets.
    assert isinstance(throttle.admit(Secret.CARD, "192.0.2.7"), Ticket)
    assert isinstance(throttle.admit(PW, "192.0.2.8"), Ticket)
    now.t += budget.period_s - 1
    assert isinstance(throttle.admit(PW, "192.0.2.7"), Refusal)
    now.t += 1
    assert isinstance(throttle.admit(PW, "192.0.2.7"), Ticket)
    # Long after, nothing is left.
    now.t += 10 * budget.period_s * budget.burst
    assert throttle.failures(PW, "192.0.2.7") == 0


def test_checks_in_flight_hold_budget() -> None:
    """Parallel checks cannot overrun the budget while none has failed yet."""
    throttle = Throttle(Now(), budgets={s: Budget(3, 60.0) for s in Scope})
    tickets = [throttle.admit(PW, "10.0.0.1") for _ in range(5)]
    assert [isinstance(t, Ticket) for t in tickets] == [True, True, True, False, False]
    first = tickets[0]
    assert isinstance(first, Ticket)
    first.settle(failed=False, proved=True)
    first.settle(failed=True)  # settled once only
    assert isinstance(throttle.admit(PW, "10.0.0.1"), Ticket)
    assert throttle.failures(PW, "10.0.0.1") == 0


def test_ipv6_addresses_of_one_lan_share_a_budget() -> None:
    throttle = Throttle(Now())
    for i in range(DEFAULT_BUDGETS[Scope.ADDRESS].burst):
        fail(throttle, f"2001:db8:1:2::{i + 1:x}")
    refusal = throttle.admit(PW, "2001:db8:1:2:ffff::1")
    assert isinstance(refusal, Refusal) and refusal.prefix == "2001:db8:1:2::/64"
    # Another /64 of the same /48: its own address budget, the network's is shared.
    for i in range(DEFAULT_BUDGETS[Scope.NETWORK].burst - DEFAULT_BUDGETS[Scope.ADDRESS].burst):
        fail(throttle, f"2001:db8:1:{100 + i:x}::1")
    refusal = throttle.admit(PW, "2001:db8:1:ffff::1")
    assert isinstance(refusal, Refusal) and refusal.scope is Scope.NETWORK
    assert isinstance(throttle.admit(PW, "2001:db8:2::1"), Ticket)


def test_trust_comes_from_the_admin_password_only_and_expires() -> None:
    now = Now()
    throttle = Throttle(now, budgets={s: Budget(2, 60.0) for s in Scope}, trust_s=100)
    for secret in (PW, Secret.CARD):
        ticket = throttle.admit(secret, "10.0.0.1")
        assert isinstance(ticket, Ticket)
        ticket.settle(failed=False, proved=True)
    assert throttle.trusted(PW, "10.0.0.1") and not throttle.trusted(Secret.CARD, "10.0.0.1")
    assert throttle.priority(PW, "10.0.0.1") == 0
    for i in range(2):
        fail(throttle, f"10.1.{i}.1")
    assert isinstance(throttle.admit(PW, "10.2.0.1"), Refusal)  # everybody's budget is used
    assert isinstance(throttle.admit(PW, "10.0.0.1"), Ticket)  # not for the trusted one
    now.t += 100
    assert not throttle.trusted(PW, "10.0.0.1")


def test_memory_is_bounded() -> None:
    now = Now()
    roomy = {Scope.ADDRESS: Budget(5, 60.0), Scope.NETWORK: Budget(5, 60.0),
             Scope.EVERYONE: Budget(1_000_000, 0.001)}
    throttle = Throttle(now, budgets=roomy, max_buckets=500)
    for i in range(5000):
        fail(throttle, f"10.{i // 250}.{i % 250}.1")
        assert throttle.size() <= 500 + 1
    # With the default budgets, everybody's budget keeps the table small by itself.
    throttle = Throttle(now)
    for i in range(5000):
        ticket = throttle.admit(PW, f"10.{i // 250}.{i % 250}.1")
        if isinstance(ticket, Ticket):
            ticket.settle(failed=True)
    assert throttle.size() <= 2 * DEFAULT_BUDGETS[Scope.EVERYONE].burst + 1
    # Leaked-empty buckets are forgotten.
    now.t += 3600
    ticket = throttle.admit(PW, "10.0.0.1")
    assert isinstance(ticket, Ticket)
    ticket.settle(failed=False)
    throttle._shrink(now.t, 0)
    assert throttle.size() == 0


async def test_queued_checks_start_by_priority() -> None:
    pool = passwords.CheckPool(Now(), workers=1)
    await pool._acquire(1)  # the one thread is busy
    started: list[str] = []

    async def wait(name: str, priority: int) -> None:
        await pool._acquire(priority)
        started.append(name)
        pool._release()

    tasks = [asyncio.create_task(wait(n, p)) for n, p in (("a", 2), ("b", 1), ("c", 0),
                                                          ("d", 2))]
    await asyncio.sleep(0)
    gone = asyncio.create_task(wait("gone", 0))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    pool._release()
    await asyncio.gather(*tasks)
    assert started == ["c", "b", "a", "d"]
    assert pool.queued == 5 and pool._free == 1


async def test_the_pool_checks_passwords() -> None:
    stored = passwords.hash_password("right")
    pool = passwords.CheckPool(Now())
    assert await pool.check(1, stored, "right") is True
    assert await pool.check(1, stored, "wrong") is False
    assert pool.checks == 2


@pytest.mark.parametrize("size", [1, 3])
def test_digests_are_bounded(size: int) -> None:
    seen = passwords.Digests(size)
    keys = [passwords.Digests.digest("s", "admin", str(i)) for i in range(5)]
    for key in keys:
        seen.add(key)
    assert len(seen) == size and keys[-1] in seen and keys[0] not in seen
    assert passwords.Digests.digest("s", "admin", "x") != passwords.Digests.digest(
        "t", "admin", "x")
