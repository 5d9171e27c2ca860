"""Keys of JSON objects sent to set_params, set_device and set_user: a key no command
knows is a 400 naming it (nothing changes); every key the API's own answers show is
accepted back, so whole objects round-trip unchanged."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.api.test_users import ADMIN, add_user, call, set_password
from tests.conftest import Running


async def site_state(running: Running) -> tuple[Any, ...]:
    mgr = running.app.manager
    return mgr.site, mgr.decider.overdraft_cur, running.app.store.get_setting("site_params")


async def devices_state(http: aiohttp.ClientSession, running: Running) -> Any:
    status, devices = await call(http, running, "cmd=get_devices")
    assert status == 200
    return devices


async def install(http: aiohttp.ClientSession, running: Running) -> str:
    """Devices of every kind, with their optional parts filled, and a user with a card."""
    docs = [
        {"dev_type": "meter_ajax", "dev_id": "M3", "name": "grid", "role": 3, "factor": 1.5},
        {"dev_type": "evse_group", "dev_id": "E10", "name": "Carport", "max_charging_cur": 20000},
        {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Sim-E2", "group": 10, "prio": 2,
         "max_charging_cur": "min(16000, 20000)", "used_phases": 7, "attach": "M3",
         "charging_rules": [{"mode": 0, "current": 8000, "enabled": True}]},
        {"dev_type": "meter_expression", "dev_id": "M4", "name": "twice", "expr": "M3.power_w*2"},
    ]
    for doc in docs:
        status, body = await call(http, running, "cmd=set_device", {"devices": [doc]})
        assert status == 200, body
    uid = await add_user(http, running, "walker", ["1234", "5678"], ["E2"])
    status, body = await call(http, running, "cmd=set_ajax_meter&dev_id=M3",
                              {"power_w": 2300, "current": [10000, 0, 0], "soc": 55})
    assert status == 200, body
    status, body = await call(http, running, "cmd=set_params",
                              {"max_total_current": "30000 + 2000", "reserve_current": 1000,
                               "fixed_price": 0.25, "surplus_expr": "M3.power_w"})
    assert status == 200, body
    await running.app.manager.wait_cycle()
    return uid


# --- unknown keys ----------------------------------------------------------------------


@pytest.mark.parametrize("body,key", [
    ({"max_total_curent": 10000}, "max_total_curent"),
    ({"max_total_current": 10000, "lb_enable": False}, "lb_enable"),
    ({"devices": [{"dev_id": "E1"}], "bogus": 1}, "bogus"),
])
async def test_set_params_refuses_unknown_site_keys(
    running: Running, http: aiohttp.ClientSession, body: dict[str, Any], key: str
) -> None:
    before = await site_state(running), await devices_state(http, running)
    status, answer = await call(http, running, "cmd=set_params", body)
    assert status == 400 and key in answer["error"], answer
    assert (await site_state(running), await devices_state(http, running)) == before


@pytest.mark.parametrize("command", ["set_device", "set_params"])
@pytest.mark.parametrize("doc,key", [
    ({"dev_id": "E1", "max_charging_curr": 10000}, "max_charging_curr"),
    ({"dev_id": "E1", "max_charging_cur": 10000, "prio": 3, "typo": 1}, "typo"),
    ({"dev_id": "M1", "prio": 3}, "prio"),  # an EVSE setting, not a meter's
    ({"dev_type": "meter_ajax", "dev_id": "M7", "nmae": "new"}, "nmae"),
])
async def test_device_objects_with_unknown_keys_are_refused(
    running: Running, http: aiohttp.ClientSession, command: str, doc: dict[str, Any], key: str
) -> None:
    before = await devices_state(http, running)
    status, answer = await call(http, running, f"cmd={command}", {"devices": [doc]})
    assert status == 400 and key in answer["error"], answer
    assert await devices_state(http, running) == before


async def test_set_device_body_keys_beside_devices(running: Running,
                                                   http: aiohttp.ClientSession) -> None:
    status, answer = await call(http, running, "cmd=set_device",
                                {"devices": [{"dev_id": "E1", "prio": 3}], "extra": 1})
    assert status == 400 and "extra" in answer["error"]
    status, answer = await call(http, running, "cmd=set_device", {"dev_id": "E1", "prio": 3})
    assert status == 200, answer


async def test_set_user_refuses_unknown_keys(running: Running,
                                             http: aiohttp.ClientSession) -> None:
    uid = await add_user(http, running, "walker", ["1234"])
    _, before = await call(http, running, "cmd=get_users")
    for body, key in (
        ({"id": uid, "nmae": "x"}, "nmae"),
        ({"id": uid, "name": "x", "dev_id": ["E1"]}, "dev_id"),
        ({"id": uid, "rfids": [{"id": "1234", "ac_auth": True, "acauth": False}]}, "acauth"),
        ({"name": "new user", "pin": "1"}, "pin"),
    ):
        status, answer = await call(http, running, "cmd=set_user", body)
        assert status == 400 and key in answer["error"], answer
    # Also for the user changing their own object without the admin password.
    await set_password(http, running)
    status, answer = await call(http, running, "cmd=set_user", {"id": uid, "nmae": "x"})
    assert status == 400 and "nmae" in answer["error"], answer
    _, after = await call(http, running, "cmd=get_users", headers=ADMIN)
    assert after == before


# --- whole objects sent back ------------------------------------------------------------


async def test_get_devices_objects_round_trip(running: Running,
                                              http: aiohttp.ClientSession) -> None:
    await install(http, running)
    before = await devices_state(http, running)
    for doc in before:
        for command, body in (("set_device", {"devices": [doc]}), ("set_device", doc),
                              ("set_params", {"devices": [doc]})):
            status, answer = await call(http, running, f"cmd={command}", body)
            assert status == 200, (command, doc["dev_id"], answer)
    assert await devices_state(http, running) == before


async def test_get_dev_info_objects_round_trip(running: Running,
                                               http: aiohttp.ClientSession) -> None:
    await install(http, running)
    before = await devices_state(http, running)
    _, info = await call(http, running, "cmd=get_dev_info")
    assert any("soc" in d for d in info["devices"])  # every optional key is there
    for doc in info["devices"]:
        for command in ("set_device", "set_params"):
            status, answer = await call(http, running, f"cmd={command}", {"devices": [doc]})
            assert status == 200, (command, doc["dev_id"], answer)
    assert await devices_state(http, running) == before
    status, answer = await call(http, running, "cmd=set_params", info["params"])
    assert status == 200, answer
    assert await devices_state(http, running) == before


async def test_get_params_round_trips(running: Running, http: aiohttp.ClientSession) -> None:
    await install(http, running)
    before = await site_state(running)
    _, params = await call(http, running, "cmd=get_params")
    # The 1.x watt names are there beside the currents they echo; the currents count.
    assert {"vsn", "version", "time", "dev_meta", "max_total_power", "power_reserve",
            "max_total_evse_power", "max_imbalance", "overdraft_cur"} <= set(params)
    status, answer = await call(http, running, "cmd=set_params", params)
    assert status == 200, answer
    assert await site_state(running) == before
    assert running.app.manager.site.max_total_current == "30000 + 2000"
    assert running.app.manager.site.max_total_evse_current == 0
    # A watt name alone still sets the current (old scripts).
    status, answer = await call(http, running, "cmd=set_params", {"power_reserve": 1380})
    assert status == 200 and running.app.manager.site.reserve_current == 2000


async def test_overdraft_sent_back(running: Running, http: aiohttp.ClientSession) -> None:
    _, params = await call(http, running, "cmd=get_params")
    assert params["overdraft_cur"] == 0
    for value in (0, "0"):
        assert (await call(http, running, "cmd=set_params", {"overdraft_cur": value}))[0] == 200
    status, answer = await call(http, running, "cmd=set_params", {"overdraft_cur": 5000})
    assert status == 400 and "overdraft_cur" in answer["error"]


async def test_user_objects_round_trip(running: Running, http: aiohttp.ClientSession) -> None:
    uid = await install(http, running)
    _, before = await call(http, running, "cmd=get_users")
    for user in before:
        status, answer = await call(http, running, "cmd=set_user", user)
        assert status == 200 and answer == user, answer
    _, user = await call(http, running, f"cmd=get_user&id={uid}")
    await set_password(http, running)
    # The user with their own id, without the admin password.
    status, answer = await call(http, running, "cmd=set_user", user)
    assert status == 200 and answer == user, answer
    _, after = await call(http, running, "cmd=get_users", headers=ADMIN)
    assert after == before
