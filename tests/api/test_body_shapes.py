"""The request bodies as their declared shapes read them, over HTTP: lenient values,
messages naming the field in the API's wording, and which problem of several is
reported (the one the API always reported first). A refused request changes nothing;
only the keys sent change."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.api.test_users import call
from tests.conftest import Running


async def error_of(http: aiohttp.ClientSession, running: Running, query: str,
                   body: Any = None) -> str:
    status, answer = await call(http, running, query, body)
    assert status == 400, answer
    return str(answer["error"])


@pytest.mark.parametrize("body,error", [
    # The body's key order decides which problem is reported ...
    ({"min_pause_time": -1, "cycle_ms": 50}, "min_pause_time: -1 out of range 0..86400"),
    ({"cycle_ms": 50, "min_pause_time": -1}, "cycle_ms: 50 out of range 200..10000"),
    ({"title": ["x"], "disable_policy": 2}, "title: a string is required"),
    ({"disable_policy": 2, "title": ["x"]}, "disable_policy: 2 is not one of -1, 0, 1"),
    # ... a watt name at its place, as the current it stands for when it is a number ...
    ({"max_total_power": "x", "cycle_ms": 50}, "max_total_power: 'x' is not a number"),
    ({"cycle_ms": 50, "max_total_power": -100}, "cycle_ms: 50 out of range 200..10000"),
    ({"max_total_power": -100, "cycle_ms": 50},
     "max_total_current: -145 out of range 0..2000000"),
    # ... then overdraft_cur, then the controller's hardware fields.
    ({"phase_switch_cp_s": 0, "overdraft_cur": 5, "cycle_ms": 50},
     "cycle_ms: 50 out of range 200..10000"),
    ({"phase_switch_cp_s": 0, "overdraft_cur": 5}, "overdraft_cur: 5 out of range 0..0"),
    ({"phase_switch_cp_s": 0}, "phase_switch_cp_s: 0 out of range 1..600"),
    ({"fixed_price": "1e999"}, "fixed_price: '1e999' is not a finite number"),
    ({"max_total_current": 6000.5}, "max_total_current: 6000.5 is not a whole number"),
    ({"lb_enabled": "maybe"}, "lb_enabled: 'maybe' is not a boolean"),
    ({"surplus_expr": "x" * 4097}, "surplus_expr: longer than 4096 characters"),
])
async def test_set_params_problems(running: Running, http: aiohttp.ClientSession,
                                   body: dict[str, Any], error: str) -> None:
    before = running.app.manager.site, running.app.manager.inventory.powerbrain.phase_switching
    assert await error_of(http, running, "cmd=set_params", body) == error
    after = running.app.manager.site, running.app.manager.inventory.powerbrain.phase_switching
    assert after == before


async def test_set_params_reads_values_leniently(running: Running,
                                                 http: aiohttp.ClientSession) -> None:
    before = running.app.manager.site
    status, answer = await call(http, running, "cmd=set_params", {
        "cycle_ms": "2000.0", "lb_enabled": "yes", "reserve_current": " 1000 ",
        "phase_switch_cp_s": "0x10", "max_total_evse_current": " min(20000, 30000) ",
        "max_imbalance": "4600"})
    assert status == 200, answer
    site = running.app.manager.site
    assert (site.cycle_ms, site.lb_enabled, site.reserve_current) == (2000, True, 1000)
    assert site.max_total_evse_current == "min(20000, 30000)"
    assert site.max_imbalance_cur == 20000
    assert running.app.manager.inventory.powerbrain.phase_switching.cp_off_s == 16
    assert site.with_changes(cycle_ms=before.cycle_ms, reserve_current=0,
                             max_total_evse_current=0, max_imbalance_cur=20000) == before


@pytest.mark.parametrize("doc,error", [
    ({"prio": 101, "phase_rotation": 90}, "prio: 101 out of range 0..100"),
    ({"phase_rotation": 90, "prio": 101}, "phase_rotation: 90 is not one of 0, 120, 240"),
    ({"max_charging_cur": 5000}, "max_charging_cur is below min_charging_cur"),
    ({"attach": "X3"}, "attach: 'X3' is not a meter id"),
    ({"users": ["1", True]}, "users: True is not a user id"),
    ({"charging_rules": {}}, "charging_rules: a list of rule objects is required"),
    ({"crule_set": []}, "crule_set: an object is required"),
    ({"name": "x" * 101}, "name: longer than 100 characters"),
])
async def test_set_device_problems(running: Running, http: aiohttp.ClientSession,
                                   doc: dict[str, Any], error: str) -> None:
    _, before = await call(http, running, "cmd=get_devices")
    body = {"devices": [{"dev_id": "E1", **doc}]}
    assert await error_of(http, running, "cmd=set_device", body) == error
    assert (await call(http, running, "cmd=get_devices"))[1] == before


async def test_set_device_changes_only_what_is_sent(running: Running,
                                                    http: aiohttp.ClientSession) -> None:
    status, stored = await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "evse_ajax", "dev_id": "E2", "prio": "3", "max_charging_cur": "20000.0",
         "enable_wakeup": 1, "attach": " m1 "}]})
    assert status == 200, stored
    assert (stored["prio"], stored["max_charging_cur"], stored["enable_wakeup"],
            stored["attach"]) == (3, 20000, True, "M1")
    status, changed = await call(http, running, "cmd=set_device",
                                 {"devices": [{"dev_id": "e2", "phase_rotation": "120"}]})
    assert status == 200
    assert changed == {**stored, "phase_rotation": 120}


@pytest.mark.parametrize("query,error", [
    ("state=9", "state must be 1..5"),
    ("current=1,2", "current: three values are required"),
    ("current=1,2&state=x", "state: 'x' is not a number"),  # state is checked first
    ("max_charging_current=-1", "max_charging_current cannot be negative"),
    ("total_energy=-5", "total_energy cannot be negative"),
    ("power_w=1e16", "power_w: 1e+16 out of range -1e+15..1e+15"),
])
async def test_set_ajax_evse_problems(running: Running, http: aiohttp.ClientSession,
                                      query: str, error: str) -> None:
    status, answer = await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "evse_ajax", "dev_id": "E2"}]})
    assert status == 200, answer
    assert await error_of(http, running, f"cmd=set_ajax_evse&dev_id=E2&{query}") == error


async def test_pushes_read_values_leniently(running: Running,
                                            http: aiohttp.ClientSession) -> None:
    for doc in ({"dev_type": "evse_ajax", "dev_id": "E2"},
                {"dev_type": "meter_ajax", "dev_id": "M3"}):
        assert (await call(http, running, "cmd=set_device", {"devices": [doc]}))[0] == 200
    status, answer = await call(
        http, running, "cmd=set_ajax_evse&dev_id=E2&state=\"3\"&current=[9800, 9900 ,9700 ]"
                       "&power_w=6762.5&total_energy=0x10")
    assert status == 200, answer
    _, info = await call(http, running, "cmd=get_dev_info")
    e2 = next(d for d in info["devices"] if d["dev_id"] == "E2")
    assert (e2["current_l2"], e2["power_w"], e2["state"]) == (9900, 6762, 3)
    status, answer = await call(http, running, "cmd=set_ajax_meter&dev_id=M3",
                                {"power_va": "x", "power_w": "2760", "current": [8000, 2, 2],
                                 "is_va": "on"})
    assert status == 200, answer
    assert await error_of(http, running, "cmd=set_ajax_meter&dev_id=M3&import_wh=-1") == (
        "energy counters cannot be negative")
    assert await error_of(http, running, "cmd=set_ajax_meter&dev_id=M3&voltage=1,x,3") == (
        "voltage: 'x' is not a number")


@pytest.mark.parametrize("body,error", [
    ({"name": 5, "display": "maybe"}, "name: a string is required"),
    ({"display": "maybe", "name": 5}, "name: a string is required"),  # in the order of checks
    ({"rfids": [{"id": "1", "used_phases": 9}]}, "rfids[0].used_phases must be 0..7"),
    ({"rfids": [{"id": "1 2", "used_phases": 9}]}, "rfids[0].used_phases must be 0..7"),
    ({"rfids": [{"id": "1"}, {"name": "x"}]}, "rfids[1].id is required"),
    ({"rfids": [{"id": "1", "x": 2, "acauth": 1}]}, "unknown keys 'acauth', 'x' in rfids[0]"),
    ({"rfids": [{"id": "1 2"}]},
     "rfids[0].id: spaces and control characters are not allowed"),
    ({"rfids": ["4711"]}, "rfids[0]: an object is required"),
    ({"rfids": {}}, "rfids: a list of objects is required"),
    ({"dev_ids": ["E1", 5]}, "dev_ids: 5 is not a device id"),
    ({"name": "x", "nmae": "y", "pin": 1}, "unknown keys 'nmae', 'pin' in the user object"),
    ({"id": "a b"}, "id: 'a b' is not a valid user id"),
])
async def test_set_user_problems(running: Running, http: aiohttp.ClientSession,
                                 body: dict[str, Any], error: str) -> None:
    assert await error_of(http, running, "cmd=set_user", body) == error
    assert (await call(http, running, "cmd=get_users"))[1] == []


@pytest.mark.parametrize("body,error", [
    ({"vars": [{"name": "a", "expr": 1}, {"expr": 2}]}, "vars[1]: name is required"),
    ({"vars": 5}, 'vars must be a list of {"name": ..., "expr": ...}'),
    ({"vars": [5]}, 'vars[0]: an object {"name": ..., "expr": ...} is required'),
    ({}, 'vars is required: a list of {"name": ..., "expr": ...}'),
    ([], 'a JSON object {"vars": [...]} is required in the request body'),
])
async def test_set_cm_vars_problems(running: Running, http: aiohttp.ClientSession,
                                    body: Any, error: str) -> None:
    assert await error_of(http, running, "cmd=set_cm_vars", body) == error
    status, answer = await call(http, running, "cmd=set_cm_vars",
                                {"vars": [{"name": "a", "val": " 5 "}, {"name": "b",
                                                                         "expr": " CM.a * 2 "}]})
    assert status == 200, answer
    _, cm = await call(http, running, "cmd=get_cm_vars")
    assert [(v["name"], v["expr"]) for v in cm["vars"]] == [("a", 5), ("b", "CM.a * 2")]
