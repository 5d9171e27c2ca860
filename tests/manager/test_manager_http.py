"""The charging manager through HTTP: HTTP-input EVSEs and meters, set_params, get_dev_info."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import Running, wait_for


async def call(http: aiohttp.ClientSession, running: Running, query: str,
               body: Any = None) -> tuple[int, Any]:
    if body is None:
        async with http.get(running.url(query)) as resp:
            return resp.status, await resp.json()
    async with http.post(running.url(query), json=body) as resp:
        return resp.status, await resp.json()


async def add(http: aiohttp.ClientSession, running: Running, dev: dict[str, Any]) -> None:
    status, body = await call(http, running, "cmd=set_params", {"devices": [dev]})
    assert status == 200, body


async def dev(http: aiohttp.ClientSession, running: Running, dev_id: str) -> dict[str, Any]:
    _, info = await call(http, running, "cmd=get_dev_info")
    for d in info["devices"]:
        if d["dev_id"] == dev_id:
            return d  # type: ignore[no-any-return]
    raise AssertionError(f"{dev_id} not in get_dev_info")


async def test_internal_devices_exist(running: Running, http: aiohttp.ClientSession) -> None:
    _, info = await call(http, running, "cmd=get_dev_info")
    ids = {d["dev_id"]: d for d in info["devices"]}
    assert ids["E1"]["dev_type"] == "evse_powerbrain" and ids["E1"]["device_enabled"] == 1
    assert ids["M1"]["dev_type"] == "meter_powerbrain" and ids["M1"]["device_enabled"] == 1
    assert ids["M2"]["device_enabled"] == 0
    status, body = await call(http, running, "cmd=del_device&dev_id=E1")
    assert status == 400 and "built in" in body["error"]
    # Disabling works.
    await add(http, running, {"dev_id": "M2", "device_enabled": 1})
    assert (await dev(http, running, "M2"))["device_enabled"] == 1


async def test_two_http_evses_share_a_16a_site(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await call(http, running, "cmd=set_params", {"max_total_current": 16000,
                                                 "max_imbalance_cur": 0, "disable_policy": 0})
    await add(http, running, {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Sim-A",
                              "max_charging_cur": 32000})
    await add(http, running, {"dev_type": "evse_ajax", "dev_id": "E3", "name": "Sim-B",
                              "max_charging_cur": 32000, "phase_rotation": 120})
    await add(http, running, {"dev_id": "E1", "device_enabled": 0})
    # Two single-phase cars on different building phases can each have 16 A. The cars
    # draw what they were given in the previous answer. A car drawing what it was given
    # is no reason for a cycle at once: the periodic cycle (awaited here) learns its phase.
    given = {"E2": 0, "E3": 0}
    for _ in range(4):
        s2, a = await call(http, running,
                           f"cmd=set_ajax_evse&dev_id=E2&state=3&current={given['E2']},0,0")
        s3, b = await call(http, running,
                           f"cmd=set_ajax_evse&dev_id=E3&state=3&current={given['E3']},0,0")
        given = {"E2": a["charging_current"], "E3": b["charging_current"]}
        await running.app.manager.wait_cycle()
    assert s2 == s3 == 200
    assert set(a) == {"device_enabled", "charging_enabled", "paused", "charging_current"}
    assert a["charging_enabled"] is True and b["charging_enabled"] is True
    assert a["charging_current"] == 16000
    assert b["charging_current"] == 16000
    e3 = await dev(http, running, "E3")
    assert e3["state"] == 3 and e3["is_evse"] is True
    assert e3["last_set_charging_cur"] == 16000


async def test_grid_meter_overload_reduces_at_once(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await call(http, running, "cmd=set_params", {"max_total_current": 32000,
                                                 "disable_policy": 0, "max_imbalance_cur": 0})
    await add(http, running, {"dev_id": "E1", "device_enabled": 0})
    await add(http, running, {"dev_type": "meter_ajax", "dev_id": "M3", "name": "grid",
                              "role": 3})
    await add(http, running, {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Sim-A",
                              "max_charging_cur": 32000})
    await call(http, running, "cmd=set_ajax_meter&dev_id=M3&current=1000,1000,1000")
    _, a = await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3&current=0,0,0")
    _, a = await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3&current=0,0,0")
    assert a["charging_current"] >= 30000
    # The house now draws 20 A besides the car (car draws 0 so far): 12 A left.
    status, body = await call(http, running, "cmd=set_ajax_meter&dev_id=M3",
                              {"current": [20000, 20000, 20000], "power_w": 13800})
    assert status == 200 and body == "ok"
    _, a = await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3&current=0,0,0")
    assert 6000 <= a["charging_current"] <= 12000
    m3 = await dev(http, running, "M3")
    assert m3["current_l1"] == 20000 and m3["power_w"] == 13800 and m3["role"] == 3


async def test_get_form_of_set_ajax_meter(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await add(http, running, {"dev_type": "meter_ajax", "dev_id": "M3", "name": "feeder"})
    status, body = await call(
        http, running,
        "cmd=set_ajax_meter&dev_id=M3&model=TestModell&import_wh=12345.00&export_wh=23456"
        "&voltage=231,232,233&current=10001,10002,10003&power_va=700&is_va=1")
    assert (status, body) == (200, "ok")
    await wait_for(lambda: running.app.manager.devices["M3"].meter is not None)
    m3 = await dev(http, running, "M3")
    assert m3["import"] == 12345 and m3["export"] == 23456
    assert [m3["voltage_l1"], m3["voltage_l2"], m3["voltage_l3"]] == [231, 232, 233]
    assert [m3["current_l1"], m3["current_l2"], m3["current_l3"]] == [10001, 10002, 10003]
    assert m3["model"] == "TestModell" and m3["is_va"] is True and m3["power_w"] == 700


async def test_stale_pushed_meter_is_a_com_error(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await add(http, running, {"dev_type": "meter_ajax", "dev_id": "M3", "name": "feeder",
                              "role": 3})
    await call(http, running, "cmd=set_ajax_meter&dev_id=M3&current=1000,1000,1000")
    rt = running.app.manager.devices["M3"]
    await wait_for(lambda: not rt.status.com_err, timeout=5)
    assert rt.driver is not None
    rt.driver.stale_after = 0.05  # type: ignore[union-attr]
    await wait_for(lambda: rt.status.com_err, timeout=5)
    m3 = await dev(http, running, "M3")
    assert m3["com_err"] is True and m3["com_errors"] >= 1 and m3["last_error"]


async def test_bad_set_params_changes_nothing(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    _, before = await call(http, running, "cmd=get_params")
    bad = [
        {"max_total_current": -5},
        {"max_total_current": "min(16000,"},
        {"disable_policy": 7},
        {"lb_enabled": "maybe"},
        {"phase_switch_plugged": "maybe"},
        {"phase_switch_cp_s": 0},
        {"max_total_current": 20000, "phase_switch_plugged": True, "phase_switch_cp_s": 601},
        {"phase_switch_plugged": True, "disable_policy": 7},
        {"devices": []},
        {"devices": [{"dev_type": "evse_nonsense"}]},
        {"devices": [{"dev_type": "evse_ajax", "dev_id": "M7"}]},
        {"devices": [{"dev_type": "evse_ajax", "min_charging_cur": 3000}]},
        {"devices": [{"dev_type": "evse_ajax", "phase_rotation": 90}]},
        {"devices": [{"dev_type": "evse_ajax", "group": 5}]},
        {"devices": [{"dev_type": "evse_ajax", "max_charging_cur": "1 +"}]},
        {"devices": [{"dev_id": "E1", "dev_type": "evse_ajax"}]},
        {"devices": [{"dev_type": "evse_ajax", "charging_rules": [{"mode": 17}]}]},
    ]
    for body in bad:
        status, answer = await call(http, running, "cmd=set_params", body)
        assert 400 <= status < 500, (body, answer)
        assert answer["error"]
    async with http.post(running.url("cmd=set_params"), data=b"{not json",
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    _, after = await call(http, running, "cmd=get_params")
    for key in ("time", "cycle_time", "avail_evse_power", "remaining_evse_power"):
        before.pop(key), after.pop(key)
    assert before == after
    assert set(running.app.manager.devices) == {"E1", "M1", "M2"}


async def test_get_params_shape(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    status, p = await call(http, running, "cmd=get_params")
    assert status == 200
    for key in ("max_total_current", "reserve_current", "overdraft_cur", "max_total_evse_current",
                "lb_enabled", "disable_policy", "version", "max_total_evse_power", "dev_meta",
                "cycle_time", "vsn"):
        assert key in p
    assert p["dev_meta"]["evse_powerbrain"]
    assert p["dev_meta"]["meter_ajax"] == "HTTP Input"
    _, types = await call(http, running, "cmd=get_dev_types")
    assert types == p["dev_meta"]
    major_minor = float(".".join(p["version"].split(".")[:2]))
    assert major_minor >= 1.2


async def test_get_devices_and_set_device(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    status, body = await call(http, running, "cmd=set_device",
                              {"devices": [{"dev_type": "evse_ajax", "name": "Sim-X",
                                            "max_charging_cur": 20000}]})
    assert status == 200 and body["dev_id"] == "E2"
    _, devices = await call(http, running, "cmd=get_devices")
    assert [d["dev_id"] for d in devices] == ["E1", "M1", "M2", "E2"]
    assert devices[3]["max_charging_cur"] == 20000
    status, _ = await call(http, running, "cmd=del_device&dev_id=E2")
    assert status == 200
    status, _ = await call(http, running, "cmd=del_device&dev_id=E2")
    assert status == 404


async def test_formula_limit(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await call(http, running, "cmd=set_params", {"disable_policy": 0})
    await add(http, running, {"dev_id": "E1", "device_enabled": 0})
    await add(http, running, {"dev_type": "meter_ajax", "dev_id": "M3", "name": "tenant"})
    await add(http, running, {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Sim-T",
                              "max_charging_cur": "min(16000, 29000 - M3.current)"})
    await call(http, running, "cmd=set_ajax_meter&dev_id=M3&current=20000,20000,20000")
    _, a = await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3")
    _, a = await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3")
    assert a["charging_current"] == 9000


async def test_frozen_grid_meter_is_a_com_error(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    """A gateway that keeps pushing the very same values has lost its meter."""
    await add(http, running, {"dev_type": "meter_ajax", "dev_id": "M3", "name": "grid",
                              "role": 3})
    mgr = running.app.manager
    clock_start = mgr.clock.monotonic()
    import chargebrain.manager.reading as reading

    old = reading.FROZEN_AFTER_S
    reading.FROZEN_AFTER_S = 0.3
    try:
        for i in range(3):  # moving values are fine
            await call(http, running, f"cmd=set_ajax_meter&dev_id=M3&current={1000 + i},0,0")
            await mgr.wait_cycle()
        assert not mgr.devices["M3"].status.com_err
        while mgr.clock.monotonic() - clock_start < 5:
            await call(http, running, "cmd=set_ajax_meter&dev_id=M3&current=4000,4000,4000")
            if mgr.devices["M3"].status.com_err:
                break
        m3 = await dev(http, running, "M3")
        assert m3["com_err"] is True and "unchanged" in m3["last_error"]
        await call(http, running, "cmd=set_ajax_meter&dev_id=M3&current=4100,4000,4000")
        await wait_for(lambda: not mgr.devices["M3"].status.com_err)
    finally:
        reading.FROZEN_AFTER_S = old


async def test_json_body_sent_as_a_form_is_json(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    """`curl -d '{...}'` labels JSON as a form; it is taken as JSON all the same."""
    async with http.post(running.url("cmd=set_params"), data=b'{"max_total_current": 25000}',
                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 200 and await r.json() == "ok"
    assert running.app.manager.site.max_total_current == 25000


async def test_rotated_wallbox_reports_phases_in_its_own_order(
        running: Running, http: aiohttp.ClientSession) -> None:
    await add(http, running, {"dev_type": "evse_ajax", "dev_id": "E2", "phase_rotation": 120})
    await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3&current=16000,0,0")

    async def seen() -> dict[str, Any] | None:
        d = await dev(http, running, "E2")
        return d if d["current_l1"] == 16000 else None

    e2 = await wait_for(seen)
    # Its L1 (the building's L2) is the one phase it draws on, in every field.
    assert e2["phases"] == 1 and (e2["current_l2"], e2["current_l3"]) == (0, 0)


async def test_group_limit_formula_at_or_below_zero_lets_nothing_through(
        running: Running, http: aiohttp.ClientSession) -> None:
    await add(http, running, {"dev_type": "evse_group", "dev_id": "E5",
                              "max_charging_cur": "20000 - 25000"})
    await add(http, running, {"dev_type": "evse_ajax", "dev_id": "E2", "group": 5})
    await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=2")

    async def decided() -> dict[str, Any] | None:
        d = await dev(http, running, "E2")
        return d if d["state"] == 2 and d["reason"] else None

    e2 = await wait_for(decided)
    assert e2["evse"]["current"] == 0 and "group" in e2["reason"]
    # A configured 0 is no limit of its own.
    await add(http, running, {"dev_id": "E5", "max_charging_cur": 0})

    async def charging() -> dict[str, Any] | None:
        _, orders = await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=2")
        return orders if orders["charging_current"] == 16000 else None

    await wait_for(charging)
