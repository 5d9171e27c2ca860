"""Charging schedules from an external energy manager over HTTP: set_cplan and get_cplan
(the vendor's charging plans), the limits they put in force and their reasons, and bad
bodies refused without a change."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from chargebrain.manager.schedules import minute_of_day
from tests.api.test_sessions import push
from tests.api.test_users import add_evse, call, device
from tests.conftest import Running, wait_for

ALL_DAY = {"st": 0, "dr": 1440}


async def cplan(http: aiohttp.ClientSession, running: Running, dev_id: str,
                body: Any = None, tmp: bool = False) -> tuple[int, Any]:
    extra = "&tmp=1" if tmp else ""
    return await call(http, running, f"cmd=set_cplan&dev_id={dev_id}{extra}", body)


async def shown(http: aiohttp.ClientSession, running: Running, dev_id: str) -> Any:
    status, body = await call(http, running, f"cmd=get_cplan&dev_id={dev_id}")
    assert status == 200, body
    return body


async def test_schedules_limit_an_evse_and_the_site_with_their_reason(
        running: Running, http: aiohttp.ClientSession) -> None:
    for dev_id in ("E2", "E3"):
        await add_evse(http, running, dev_id, used_phases=7)
        await push(http, running, dev_id, 3, "&current=0,0,0")
    assert await shown(http, running, "$G") == {"dev_id": "$G", "cplan": [], "tmp": False,
                                               "limit": -1}
    assert await cplan(http, running, "%24G", {"cplan": [{**ALL_DAY, "lm": 20000}]}) == (
        200, "ok")
    assert await cplan(http, running, "e2", {"cplan": [
        {"dc": False, **ALL_DAY, "lm": "8000"}]}) == (200, "ok")
    assert await shown(http, running, "E2") == {
        "dev_id": "E2", "cplan": [{"dc": False, "st": 0, "dr": 1440, "lm": 8000}],
        "tmp": False, "limit": 8000}

    async def limited() -> bool:
        e2, e3 = await device(http, running, "E2"), await device(http, running, "E3")
        return bool(e2["evse"]["current"] == 8000 and e3["evse"]["current"] == 12000)

    await wait_for(limited)
    e2, e3 = await device(http, running, "E2"), await device(http, running, "E3")
    assert (e2["lreason"], e2["reason"]) == (14, "charging schedule")
    assert (e3["lreason"], e3["reason"]) == (14, "site (charging schedule) phase L1")
    # A temporary schedule; an empty one removes the limit.
    assert await cplan(http, running, "E2", {"cplan": []}, tmp=True) == (200, "ok")
    assert (await shown(http, running, "E2"))["tmp"] is True
    assert await cplan(http, running, "$G", {"cplan": []}) == (200, "ok")

    async def free() -> bool:
        e2, e3 = await device(http, running, "E2"), await device(http, running, "E3")
        return bool(e2["evse"]["current"] == 16000 == e3["evse"]["current"])

    await wait_for(free)


async def test_a_limit_not_in_force_now_is_kept_for_its_time(
        running: Running, http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    now = minute_of_day(time.time(), running.app.manager.decider.ctx.tz)
    later = {"st": (now + 120) % 1440, "dr": 60, "lm": 6000}
    assert await cplan(http, running, "E2", {"cplan": [later]}) == (200, "ok")
    assert await shown(http, running, "E2") == {
        "dev_id": "E2", "cplan": [{"dc": False, **later}], "tmp": False, "limit": -1}


async def test_bad_requests_are_refused_and_change_nothing(
        running: Running, http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    status, _ = await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "meter_ajax", "dev_id": "M3", "name": "battery", "role": 5}]})
    assert status == 200
    good = {"cplan": [{**ALL_DAY, "lm": 10000}]}
    assert await cplan(http, running, "E2", good) == (200, "ok")
    before = await shown(http, running, "E2")
    entry = {"st": 480, "dr": 60, "lm": 6000}
    bad = {
        "E2": [
            (None, 'a JSON body {"cplan": [...]} is required'),
            ([entry], 'a JSON object {"cplan": [...]} is required in the request body'),
            ({}, 'cplan is required: a list of {"st", "dr", "lm"} objects'),
            ({"cplan": entry}, 'cplan: a list of {"st", "dr", "lm"} objects is required'),
            ({"cplan": [entry], "plan": 1}, "unknown key 'plan' in set_cplan"),
            ({"cplan": [entry, {**entry, "x": 1}]}, "unknown key 'x' in cplan[1]"),
            ({"cplan": [{"st": 480, "dr": 60}]}, "cplan[0].lm is required"),
            ({"cplan": [{**entry, "st": 1440}]}, "cplan[0].st: 1440 out of range 0..1439"),
            ({"cplan": [{**entry, "dr": 0}]}, "cplan[0].dr: 0 out of range 1..1440"),
            ({"cplan": [{**entry, "lm": -1}]}, "cplan[0].lm: -1 out of range 0..2000000"),
            ({"cplan": [{**entry, "lm": "x"}]}, "cplan[0].lm: 'x' is not a number"),
            ({"cplan": [3]}, 'cplan[0]: an object {"st": ..., "dr": ..., "lm": ...} is '
                             "required"),
            ({"cplan": [{**entry, "dc": True}]}, "cplan[0].dc: discharge limits are for "
                                                 "storage, which chargebrain does not "
                                                 "control"),
            ({"cplan": [entry] * 1441}, "cplan: no more than 1440 entries"),
        ],
        "M3": [(good, "M3 is a meter: charging schedules are for EVSEs, EVSE groups and "
                      "$G (chargebrain controls no storage)")],
        "": [(good, "dev_id is required: an EVSE or group id, or $G (the site)")],
    }
    for dev_id, cases in bad.items():
        for body, error in cases:
            status, answer = await cplan(http, running, dev_id, body)
            assert (status, answer) == (400, {"error": error}), (dev_id, body)
    status, answer = await call(http, running, "cmd=set_cplan&dev_id=E2&tmp=maybe", good)
    assert status == 400 and answer["error"].startswith("tmp:")
    assert (await cplan(http, running, "E9", good))[0] == 404
    assert (await call(http, running, "cmd=get_cplan&dev_id=E9"))[0] == 404
    assert await shown(http, running, "E2") == before
    # A deleted device's schedule goes with it.
    assert (await call(http, running, "cmd=del_device&dev_id=E2"))[0] == 200
    await add_evse(http, running, "E2")
    assert (await shown(http, running, "E2"))["cplan"] == []


async def test_a_groups_schedule_limits_its_members(
        running: Running, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "evse_group", "dev_id": "E5", "name": "garage", "max_charging_cur": 0}]})
    assert status == 200, body
    await add_evse(http, running, "E2", used_phases=7, group=5)
    await push(http, running, "E2", 3, "&current=0,0,0")
    assert await cplan(http, running, "E5", {"cplan": [{**ALL_DAY, "lm": 9000}]}) == (
        200, "ok")

    async def limited() -> bool:
        return bool((await device(http, running, "E2"))["evse"]["current"] == 9000)

    await wait_for(limited)
    e2 = await device(http, running, "E2")
    assert (e2["lreason"], e2["reason"]) == (14, "group garage (charging schedule) phase L1")
