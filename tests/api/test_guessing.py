"""Guessing secrets over HTTP: every check counted, budgets per address, network and
everybody, 429 with Retry-After, and the right password never held up by guessers.

Time is the app's virtual clock (it moves only when a test says so); nothing here looks
at how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from chargebrain.api import auth
from chargebrain.api.throttle import DEFAULT_BUDGETS, Scope, Secret
from chargebrain.app import App, Config
from chargebrain.clock import VirtualClock
from tests.api.test_sessions import push
from tests.api.test_users import ADMIN, ADMIN_PWD, add_evse, add_user, basic, call, set_password
from tests.conftest import Running, free_ports

ADDRESS = DEFAULT_BUDGETS[Scope.ADDRESS]
NETWORK = DEFAULT_BUDGETS[Scope.NETWORK]
EVERYONE = DEFAULT_BUDGETS[Scope.EVERYONE]
ME = "127.0.0.1"


@contextlib.asynccontextmanager
async def client_from(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose connections come from `address` (any of 127/8 on Linux)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


def admin_view(info: Any) -> bool:
    """Does a get_dev_info answer show what only the admin sees (users, user ids)?"""
    return any("users" in d or "user_id" in d for d in info["devices"])


async def assert_429(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    """The request is refused as too many guesses; the Retry-After it names."""
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 429, await resp.text()
        assert resp.content_type == "application/json"
        body = await resp.json()
        assert set(body) == {"error"} and "try again in" in body["error"]
        retry = int(resp.headers["Retry-After"])
        assert retry >= 1
        return retry


async def test_guessing_through_get_dev_info_is_counted_then_not_checked(
    virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession
) -> None:
    running, clock = virtual
    throttle = running.app.throttle
    await set_password(http, running)
    status, info = await call(http, running, "cmd=get_dev_info", headers=ADMIN)
    assert status == 200 and admin_view(info)
    for i in range(ADDRESS.burst):
        status, info = await call(http, running, "cmd=get_dev_info",
                                  headers=basic("admin", f"guess {i}"))
        assert status == 200 and not admin_view(info)  # answered as to anybody
    assert throttle.failures(Secret.ADMIN_PASSWORD, ME) == ADDRESS.burst
    # No budget left: the next guess is not checked at all (and not counted), and even
    # the right password is not: telling it apart would be checking it.
    for headers in (basic("admin", "one more"), ADMIN):
        status, info = await call(http, running, "cmd=get_dev_info", headers=headers)
        assert status == 200 and not admin_view(info)
    assert throttle.failures(Secret.ADMIN_PASSWORD, ME) == ADDRESS.burst
    # The public data never needs credentials; an admin command answers 429 with JSON.
    status, info = await call(http, running, "cmd=get_dev_info")
    assert status == 200 and "devices" in info
    retry = await assert_429(http, running.url("cmd=get_users"), ADMIN)
    assert retry == ADDRESS.period_s
    clock.advance(retry)
    status, info = await call(http, running, "cmd=get_dev_info", headers=ADMIN)
    assert status == 200 and admin_view(info)


async def test_a_wrong_password_sent_again_costs_nothing(
    virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession
) -> None:
    """A client with a stale password (Home Assistant polling get_dev_info) learns nothing
    new by sending it again: one failure, one scrypt run, however often it polls."""
    running, _ = virtual
    await set_password(http, running)
    pool = running.app.password_checks
    runs = pool.checks
    for _ in range(3 * ADDRESS.burst):
        status, info = await call(http, running, "cmd=get_dev_info",
                                  headers=basic("admin", "last year's"))
        assert status == 200 and not admin_view(info)
        assert (await call(http, running, "cmd=get_users",
                           headers=basic("admin", "last year's")))[0] == 401
    assert running.app.throttle.failures(Secret.ADMIN_PASSWORD, ME) == 1
    assert pool.checks == runs + 1
    assert (await call(http, running, "cmd=get_users", headers=ADMIN))[0] == 200


async def test_wrong_password_loops_do_not_hold_up_the_right_password(
    virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession
) -> None:
    """Eight clients on the admin's own address hammer an admin command with wrong
    passwords; the admin's right password, not seen since start (so checked with scrypt),
    is answered while they go on, and its check did not wait for a thread."""
    running, _ = virtual
    app = running.app
    await set_password(http, running)
    auth.forget_verified()  # as after a restart: the right password costs a scrypt run
    answers = [0] * 8
    stop = asyncio.Event()

    async def attacker(n: int) -> None:
        async with aiohttp.ClientSession() as own:
            while not stop.is_set():
                status, _ = await call(own, running, "cmd=get_users",
                                       headers=basic("admin", f"wrong {n}"))
                assert status == 401
                answers[n] += 1

    tasks = [asyncio.create_task(attacker(n)) for n in range(8)]
    try:
        for _ in range(3000):  # until every loop is past its first, checked, guess
            if min(answers) >= 20 or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        assert min(answers) >= 20 and not any(t.done() for t in tasks)
        queued_before = app.password_checks.queued
        checks_before = app.password_checks.checks
        status, users = await call(http, running, "cmd=get_users", headers=ADMIN)
        assert status == 200 and users == []
        assert not any(t.done() for t in tasks)  # the attack was still going on
        # The right password was checked (the guesses were not again) without queueing.
        assert app.password_checks.checks == checks_before + 1
        assert app.password_checks.queued == queued_before
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert app.throttle.failures(Secret.ADMIN_PASSWORD, ME) == 8  # one per password


async def test_new_guesses_from_the_admins_address_are_refused_at_once(
    virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession
) -> None:
    """Guesses that are all different use the address's budget; after it every request
    with credentials from there is answered 429 at once (nobody waits), the right
    password from there too, while the admin elsewhere is not affected."""
    running, clock = virtual
    await set_password(http, running)

    async def guesser(n: int) -> list[int]:
        statuses = []
        for i in range(5):
            status, _ = await call(http, running, "cmd=get_users",
                                   headers=basic("admin", f"guess {n}-{i}"))
            statuses.append(status)
        return statuses

    results = await asyncio.gather(*(guesser(n) for n in range(8)))
    statuses = [s for r in results for s in r]
    assert statuses.count(401) == ADDRESS.burst
    assert statuses.count(429) == len(statuses) - ADDRESS.burst
    await assert_429(http, running.url("cmd=get_users"), ADMIN)
    async with client_from("127.0.1.9") as elsewhere:
        assert (await call(elsewhere, running, "cmd=get_users", headers=ADMIN))[0] == 200
    clock.advance(ADDRESS.period_s)
    assert (await call(http, running, "cmd=get_users", headers=ADMIN))[0] == 200


async def test_rotating_addresses_meet_the_network_and_global_budgets(
    virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession
) -> None:
    running, _ = virtual
    throttle = running.app.throttle
    await set_password(http, running)
    # The admin logs in from 127.0.0.1: that address is trusted from now on.
    assert (await call(http, running, "cmd=get_users", headers=ADMIN))[0] == 200

    async def guess_from(address: str, n: int) -> int:
        async with client_from(address) as client:
            status, _ = await call(client, running, "cmd=get_users",
                                   headers=basic("admin", f"rotating {n}"))
            return status

    # One guess per address, all in 127.0.9.0/24: the network's budget stops them.
    statuses = [await guess_from(f"127.0.9.{i + 1}", i) for i in range(NETWORK.burst + 5)]
    assert statuses == [401] * NETWORK.burst + [429] * 5
    # One guess per address, each in its own /24: the global budget stops them.
    statuses = [await guess_from(f"127.{10 + i // 200}.{i % 200}.1", 100 + i)
                for i in range(EVERYONE.burst)]
    assert statuses.count(401) == EVERYONE.burst - NETWORK.burst
    assert statuses[-1] == 429
    assert throttle.failures(Secret.ADMIN_PASSWORD, "127.200.0.1", Scope.EVERYONE) == (
        EVERYONE.burst)
    # A new address with the right password is refused as well: it cannot be told from a
    # guesser's without checking it ...
    async with client_from("127.99.0.1") as client:
        await assert_429(client, running.url("cmd=get_users"), ADMIN)
    # ... but the address that proved the password before still gets in.
    assert (await call(http, running, "cmd=get_users", headers=ADMIN))[0] == 200
    assert throttle.trusted(Secret.ADMIN_PASSWORD, ME)


async def test_every_secret_is_throttled(
    virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession
) -> None:
    """RFID/PIN (enter_rfid, override_device), user ids (get_user, set_user,
    get_transactions), the admin password (the credential check page, change_admin_pwd's
    old_pwd): each kind has its own budget, and none locks out another."""
    running, clock = virtual
    await add_evse(http, running, "E2")
    uid = await add_user(http, running, "walker", ["1234"], ["E2"])
    await push(http, running, "E2", 2)
    assert (await call(http, running, "cmd=enter_rfid&rfid=1234&dev_id=E2"))[0] == 200
    await set_password(http, running)
    # RFIDs/PINs.
    for i in range(ADDRESS.burst):
        assert (await call(http, running, f"cmd=enter_rfid&rfid=9{i:03}"))[0] == 403
    await assert_429(http, running.url("cmd=enter_rfid&rfid=1234&dev_id=E2"), {})
    await assert_429(http, running.url("cmd=override_device&dev_id=E2&rfid=1234&flags=C"), {})
    # User ids, still fine, until guessed too often.
    assert (await call(http, running, f"cmd=get_user&id={uid}"))[0] == 200
    for i in range(ADDRESS.burst):
        assert (await call(http, running, f"cmd=get_user&id=77{i:08}"))[0] == 401
    for url in (f"cmd=get_user&id={uid}", f"cmd=get_transactions&user_id={uid}"):
        await assert_429(http, running.url(url), {})
    status, _ = await call(http, running, "cmd=set_user", {"id": uid, "name": "x"})
    assert status == 429
    # The admin password, through the credential check page.
    assert (await call(http, running, "cmd=get_users", headers=ADMIN))[0] == 200
    page = f"{running.base_url}/ui/en/sim.htm"
    for i in range(ADDRESS.burst - 1):
        async with http.get(page, headers=basic("admin", f"page {i}")) as resp:
            assert resp.status == 401
    # ... and through change_admin_pwd's old password (the caller is the admin).
    status, _ = await call(http, running, "cmd=change_admin_pwd&old_pwd=nope&new_pwd=x",
                           headers=ADMIN)
    assert status == 403
    await assert_429(http, page, basic("admin", "page 99"))
    await assert_429(http, running.url(f"cmd=change_admin_pwd&old_pwd={ADMIN_PWD}&new_pwd=x"),
                     ADMIN)
    assert auth.verify_password(auth.stored_hash(running.app.store), ADMIN_PWD)
    clock.advance(ADDRESS.period_s)
    assert (await call(http, running, "cmd=enter_rfid&rfid=1234&dev_id=E2"))[0] == 200


async def test_removing_the_password_is_refused_beyond_loopback(tmp_path: Path,
                                                                http: aiohttp.ClientSession
                                                                ) -> None:
    for allow_insecure in (False, True):
        port = free_ports(1)
        app = App(Config(tmp_path / f"data-{allow_insecure}", "0.0.0.0", port, 0,
                         allow_insecure=allow_insecure), clock=VirtualClock())
        await app.start()
        try:
            running = Running(app, f"http://127.0.0.1:{port}", 0)
            await set_password(http, running)
            status, body = await call(
                http, running, f"cmd=change_admin_pwd&old_pwd={ADMIN_PWD}&new_pwd=",
                headers=ADMIN)
            if allow_insecure:
                assert status == 200
                assert not auth.admin_password_set(app.store)
            else:
                assert status == 403 and "0.0.0.0" in body["error"]
                assert "--allow-insecure" in body["error"]
                assert auth.verify_password(auth.stored_hash(app.store), ADMIN_PWD)
                status, _ = await call(  # changing it is still fine
                    http, running, f"cmd=change_admin_pwd&old_pwd={ADMIN_PWD}&new_pwd=n",
                    headers=ADMIN)
                assert status == 200
        finally:
            await app.stop()


async def test_removing_the_password_on_loopback(running: Running,
                                                 http: aiohttp.ClientSession) -> None:
    await set_password(http, running)
    status, _ = await call(http, running, f"cmd=change_admin_pwd&old_pwd={ADMIN_PWD}&new_pwd=",
                           headers=ADMIN)
    assert status == 200
    assert (await call(http, running, "cmd=get_users"))[0] == 200
