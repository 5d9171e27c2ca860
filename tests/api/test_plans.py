"""Departure plans over HTTP: set_plan, what HTTP-input wallboxes report, what
get_dev_info shows, who may set them, and what the manager does with them."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import aiohttp

from chargebrain.manager.rules_runtime import local_zone
from tests.api.test_sessions import push
from tests.api.test_users import ADMIN, add_evse, add_user, call, device, set_password
from tests.conftest import Running, wait_for


async def plan(http: aiohttp.ClientSession, running: Running, query: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return await call(http, running, f"cmd=set_plan&{query}", body, headers)


async def test_the_admin_sets_a_plan_that_get_dev_info_shows_until_unplug(
        running: Running, http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    await push(http, running, "E2", 2)
    leaves = int(time.time()) + 3 * 3600
    status, body = await plan(http, running, f"dev_id=e2&departure={leaves}&req_energy=12000.0")
    assert status == 200, body
    assert body == {"dev_id": "E2", "departure": leaves, "req_energy": 12000}
    e2 = await device(http, running, "E2")
    assert (e2["departure"], e2["req_energy"]) == (leaves, 12000)
    # A time of day is the next time the controller's clock shows it.
    status, body = await plan(http, running, "dev_id=E2&departure=07:45")
    assert status == 200, body
    at = datetime.fromtimestamp(body["departure"], local_zone())
    assert (at.hour, at.minute, at.second) == (7, 45, 0)
    assert 0 < body["departure"] - time.time() <= 86_400
    assert body["req_energy"] == 12000  # what is not sent stays
    # As a JSON body; 0 forgets a value.
    status, body = await plan(http, running, "dev_id=E2", {"req_energy": 0})
    assert status == 200 and body["req_energy"] == 0 and body["departure"] > 0
    status, body = await plan(http, running, "dev_id=E2&clear=1")
    assert status == 200 and body == {"dev_id": "E2", "departure": 0, "req_energy": 0}
    # The plan ends with the session.
    status, _ = await plan(http, running, f"dev_id=E2&departure={leaves}&req_energy=5000")
    assert status == 200
    await push(http, running, "E2", 1)
    e2 = await device(http, running, "E2")
    assert (e2["departure"], e2["req_energy"]) == (0, 0)


async def test_a_wallbox_reports_the_plan_and_set_plan_counts_before_it(
        running: Running, http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    leaves = int(time.time()) + 7200
    await push(http, running, "E2", 2, f"&departure={leaves}&req_energy=9000")
    e2 = await device(http, running, "E2")
    assert (e2["departure"], e2["req_energy"]) == (leaves, 9000)
    status, body = await plan(http, running, "dev_id=E2&req_energy=4000")
    assert status == 200 and body == {"dev_id": "E2", "departure": leaves, "req_energy": 4000}
    status, body = await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=2&departure=-5")
    assert status == 400 and body == {"error": "departure cannot be negative"}


async def test_bad_plans_are_refused_and_change_nothing(
        running: Running, http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    await push(http, running, "E2", 2)
    leaves = int(time.time()) + 3600
    assert (await plan(http, running, f"dev_id=E2&departure={leaves}&req_energy=8000"))[0] == 200
    past = int(time.time()) - 60
    cases = {
        "dev_id=E2": "departure, req_energy or clear is required",
        f"dev_id=E2&departure={past}": f"departure: {past} has passed",
        f"dev_id=E2&departure={int(time.time()) + 8 * 86400}":
            "departure: more than 7 days ahead",
        "dev_id=E2&departure=25:00": "departure: Unix time in seconds or a time of day "
                                     "HH:MM is required",
        "dev_id=E2&req_energy=-1": "req_energy: -1 out of range 0..1000000",
        "dev_id=E2&req_energy=x&departure=08:00": "req_energy: 'x' is not a number",
        "dev_id=E2&clear=maybe": "clear",
        "req_energy=5": "dev_id is required",
    }
    for query, error in cases.items():
        status, body = await plan(http, running, query)
        assert status == 400, (query, body)
        assert body["error"].startswith(error), (query, body)
    assert (await plan(http, running, "dev_id=E9&req_energy=5"))[0] == 404
    status, body = await plan(http, running, "dev_id=E2", [1, 2])
    assert status == 400 and "JSON object" in body["error"]
    e2 = await device(http, running, "E2")
    assert (e2["departure"], e2["req_energy"]) == (leaves, 8000)


async def test_the_user_of_the_session_may_set_its_plan_others_may_not(
        running: Running, http: aiohttp.ClientSession) -> None:
    await set_password(http, running)
    await add_evse(http, running, "E2", headers=ADMIN)
    alice = await add_user(http, running, "alice", ["1234"], ["E2"], headers=ADMIN)
    bob = await add_user(http, running, "bob", ["5678"], ["E2"], headers=ADMIN)
    await push(http, running, "E2", 2, headers=ADMIN)
    status, _ = await call(http, running, "cmd=enter_rfid&rfid=1234&dev_id=E2")
    assert status == 200
    refused = {
        "": "set_plan needs the admin password",
        "&rfid=5678": "the RFID/PIN is not that of the user charging at E2",
        "&rfid=0000": "the RFID/PIN is not that of the user charging at E2",
        f"&user_id={bob}": "the user id is not that of the user charging at E2",
        "&user_id=123": "the user id is not that of the user charging at E2",
    }
    for extra, error in refused.items():
        status, body = await plan(http, running, f"dev_id=E2&req_energy=7000{extra}")
        assert status == 401 and body["error"].startswith(error), (extra, body)
    e2 = await device(http, running, "E2")
    assert e2["req_energy"] == 0
    status, body = await plan(http, running, "dev_id=E2&req_energy=7000&rfid=1234")
    assert status == 200 and body["req_energy"] == 7000
    status, body = await plan(http, running, f"dev_id=E2&departure=18:00&user_id={alice}")
    assert status == 200 and body["departure"] > 0 and body["req_energy"] == 7000


async def test_the_car_that_leaves_soon_gets_what_the_other_can_spare(
        running: Running, http: aiohttp.ClientSession) -> None:
    status, _ = await call(http, running, "cmd=set_params", {"max_total_current": 20000})
    assert status == 200
    for dev_id in ("E2", "E3"):
        await add_evse(http, running, dev_id, used_phases=7)
        await push(http, running, dev_id, 2)

    async def orders() -> dict[str, int]:
        out = {}
        for dev_id in ("E2", "E3"):
            d = await device(http, running, dev_id)
            current = d["evse"]["current"]
            await push(http, running, dev_id, 3, f"&current={current},{current},{current}")
            out[dev_id] = current
        return out

    async def shared(expected: dict[str, int]) -> bool:
        return await orders() == expected

    await wait_for(lambda: shared({"E2": 10000, "E3": 10000}))
    now = int(time.time())
    # E2 leaves in 2 h and wants 8 kWh; E3 stays 9 h for 10 kWh: its minimum will do.
    assert (await plan(http, running, f"dev_id=E2&departure={now + 7200}&req_energy=8000"))[0] \
        == 200
    assert (await plan(http, running,
                       f"dev_id=E3&departure={now + 9 * 3600}&req_energy=10000"))[0] == 200
    await wait_for(lambda: shared({"E2": 14000, "E3": 6000}), timeout=15)
    e3 = await device(http, running, "E3")
    assert e3["reason"] == "site phase L1, departure plan leaves time"
