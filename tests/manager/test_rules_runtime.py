"""Charging rules driving real decisions: HTTP-input EVSEs and meters, through HTTP."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from chargebrain.core.rules import LocalClock
from chargebrain.manager.rules_runtime import local_zone
from chargebrain.manager.state import OVERRIDE_NO_EVSE_RULES
from tests.conftest import Running, observe_only, wait_for


async def call(http: aiohttp.ClientSession, running: Running, query: str,
               body: Any = None) -> tuple[int, Any]:
    if body is None:
        async with http.get(running.url(query)) as resp:
            return resp.status, await resp.json()
    async with http.post(running.url(query), json=body) as resp:
        return resp.status, await resp.json()


async def ok(http: aiohttp.ClientSession, running: Running, query: str,
             body: Any = None) -> Any:
    status, answer = await call(http, running, query, body)
    assert status == 200, (query, body, answer)
    return answer


async def setup_evse(http: aiohttp.ClientSession, running: Running, **settings: Any) -> None:
    """E1 off, HTTP-input EVSE E2 (3 phases, max 16 A); pauses end at once."""
    await ok(http, running, "cmd=set_params", {"min_pause_time": 0, "disable_policy": 0})
    await ok(http, running, "cmd=set_params", {"devices": [{"dev_id": "E1",
                                                             "device_enabled": 0}]})
    dev = {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Sim-R", "max_charging_cur": 16000,
           "used_phases": 7, **settings}
    await ok(http, running, "cmd=set_params", {"devices": [dev]})


async def set_rules(http: aiohttp.ClientSession, running: Running, rules: Any,
                    key: str = "charging_rules") -> None:
    await ok(http, running, "cmd=set_params", {"devices": [{"dev_id": "E2", key: rules}]})


async def push(http: aiohttp.ClientSession, running: Running, extra: str = "") -> int:
    """Push E2 (charging; without a meter its draw counts as what it is offered) and
    return the current it is given once a cycle has seen the push (one that changes
    nothing urgent waits for the periodic cycle, which is not waited for here)."""
    query = f"cmd=set_ajax_evse&dev_id=E2&state=3{extra}"
    await ok(http, running, query)
    await running.app.manager.wait_cycle()
    answer = await ok(http, running, query)
    return int(answer["charging_current"])


async def evse(http: aiohttp.ClientSession, running: Running, dev_id: str = "E2") -> Any:
    info = await ok(http, running, "cmd=get_dev_info")
    return next(d for d in info["devices"] if d["dev_id"] == dev_id)


def minute_now(running: Running) -> int:
    app = running.app
    return LocalClock.at(app.clock.now(), app.rules.tz).dayminute


async def test_time_rule_inside_and_outside_its_window(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    m = minute_now(running)
    await set_rules(http, running, [{"mode": 0, "current": 8000, "time": (m - 30) % 1440,
                                     "dur": 60, "enabled": True}])
    await push(http, running)
    assert await push(http, running) == 8000
    e2 = await evse(http, running)
    assert e2["rule_wish"] == 8000
    assert e2["rule_source"] == "EVSE rule 1 (time, fixed current)"
    # The same rule an hour and a half later: none applies, the car pauses.
    await set_rules(http, running, [{"mode": 0, "current": 8000, "time": (m + 90) % 1440,
                                     "dur": 60}])
    assert await push(http, running) == 0
    e2 = await evse(http, running)
    assert e2["rule_wish"] == 0 and e2["rule_source"] == "EVSE rules: none applies"
    assert e2["charging_enabled"] is False
    # No rules at all: the EVSE maximum.
    await set_rules(http, running, [])
    assert await push(http, running) == 16000
    e2 = await evse(http, running)
    assert e2["rule_wish"] == -1 and e2["rule_source"] == "no rules"


async def test_percentage_rule(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    await set_rules(http, running, [{"mode": 1, "current": 50}])
    await push(http, running)
    assert await push(http, running) == 8000
    assert (await evse(http, running))["rule_wish"] == 8000
    # A disabled first rule is skipped; the second rule applies.
    await set_rules(http, running, [{"mode": 0, "current": 6000, "enabled": False},
                                    {"mode": 1, "current": 75}])
    assert await push(http, running) == 12000


async def grid(http: aiohttp.ClientSession, running: Running, power_w: float) -> None:
    per_phase = round(power_w / 3 / 230 * 1000)
    await ok(http, running, "cmd=set_ajax_meter&dev_id=M3",
             {"power_w": power_w, "current": [per_phase] * 3})


async def test_solar_surplus_rule_and_undercut(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    await ok(http, running, "cmd=set_params", {"devices": [{"dev_type": "meter_ajax",
                                                             "dev_id": "M3", "role": 3}]})
    await set_rules(http, running, [{"mode": 5, "udur": 2}])
    # 6.9 kW feed-in, the car draws nothing: 10 A per phase on three phases.
    await grid(http, running, -6900)
    await push(http, running)
    assert await push(http, running) == 10000
    e2 = await evse(http, running)
    assert e2["rule_wish"] == 10000
    assert e2["rule_source"] == "EVSE rule 1 (solar surplus)"
    values = await ok(http, running, "cmd=get_cm_vars")
    assert values["predefined"]["_surplus"] == 6900
    assert values["predefined"]["_org_surplus"] == 6900
    # A cloud: the house imports. The undercut keeps the minimum for udur (2 s).
    await grid(http, running, 690)
    assert await push(http, running) == 6000
    e2 = await evse(http, running)
    assert e2["rule_wish"] == 6000
    assert e2["rule_source"] == "EVSE rule 1 (solar surplus, undercut)"

    async def paused() -> bool:
        await grid(http, running, 690)
        return await push(http, running) == 0

    await wait_for(paused, timeout=6, interval=0.3)
    e2 = await evse(http, running)
    assert e2["rule_wish"] == 0 and e2["rule_source"] == "EVSE rules: none applies"
    # The sun is back.
    await grid(http, running, -5520)
    assert await push(http, running) == 8000


async def test_surplus_formula_and_start_threshold(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    await ok(http, running, "cmd=set_params", {"devices": [{"dev_type": "meter_ajax",
                                                             "dev_id": "M3", "role": 3}]})
    await set_rules(http, running, [{"mode": 5, "solar": 9000}])
    await grid(http, running, -4140)  # 6 A: below the start threshold of 9 A
    await push(http, running)
    assert await push(http, running) == 0
    await ok(http, running, "cmd=set_params", {"surplus_expr": "CM._org_surplus + 4140"})
    assert await push(http, running) == 12000
    values = await ok(http, running, "cmd=get_cm_vars")
    assert values["predefined"]["_org_surplus"] == 4140
    assert values["predefined"]["_surplus"] == 8280


async def test_production_minus_consumption_without_grid_meter(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    for dev_id, role in (("M3", 2), ("M4", 1)):
        await ok(http, running, "cmd=set_params", {"devices": [{"dev_type": "meter_ajax",
                                                                 "dev_id": dev_id, "role": role}]})
    await ok(http, running, "cmd=set_ajax_meter&dev_id=M3", {"power_w": 9000})
    await ok(http, running, "cmd=set_ajax_meter&dev_id=M4", {"power_w": 2100})
    # Mode 2 = all solar current, mode 5 = surplus (production - consumption).
    await set_rules(http, running, [{"mode": 2}])
    await push(http, running)
    e2 = await evse(http, running)
    assert e2["rule_wish"] == round(9000 * 1000 / 690)
    await set_rules(http, running, [{"mode": 5}])
    assert await push(http, running) == 10000


async def test_formula_rule_reads_cm_variables(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    await ok(http, running, "cmd=set_cm_vars&name=lim&val=7000")
    await set_rules(http, running, [{"expr": "CM.lim"}])
    await push(http, running)
    assert await push(http, running) == 7000
    assert (await evse(http, running))["rule_source"] == "EVSE rule 1 (formula)"
    # A formula variable that depends on one defined after it.
    await ok(http, running, "cmd=set_cm_vars",
             {"vars": [{"name": "lim", "expr": "CM.base + 2000"}, {"name": "base", "expr": 7000}]})
    assert await push(http, running) == 9000
    await ok(http, running, "cmd=set_cm_vars&name=base&val=-2000")
    assert await push(http, running) == 0


async def test_price_level_rules(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    await ok(http, running, "cmd=set_params", {"price_model": 2})
    await set_rules(http, running, [{"mode": 0, "current": 10000, "price_level": -5}])
    await push(http, running)
    assert await push(http, running) == 0  # no price known yet
    await ok(http, running, "cmd=set_cm_vars&name=_set_price_level&val=-6&tmp=1")
    assert await push(http, running) == 10000
    await ok(http, running, "cmd=set_cm_vars",
             {"vars": [{"name": "_set_price_level", "expr": -3}, {"name": "_set_price",
                                                                    "expr": 41.5}]})
    assert await push(http, running) == 0
    values = await ok(http, running, "cmd=get_cm_vars")
    assert values["predefined"]["_price_level"] == -3
    assert values["predefined"]["_price"] == 41.5
    # A fixed price is "normal" (-4): a rule for "normal or cheaper" applies.
    await ok(http, running, "cmd=set_params", {"price_model": 1, "fixed_price": 30})
    await set_rules(http, running, [{"mode": 0, "current": 9000, "price_level": -4}])
    assert await push(http, running) == 9000
    values = await ok(http, running, "cmd=get_cm_vars")
    assert values["predefined"]["_price"] == 30
    assert values["predefined"]["_price_level"] == -4
    # A formula rule can use min_price(): with a fixed price it is that price.
    await set_rules(http, running, [{"expr": "CM._price <= min_price(86400) ? 11000 : 0"}])
    assert await push(http, running) == 11000


async def test_evse_and_user_rules_lower_wins_and_overrides(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    user = await ok(http, running, "cmd=set_user", {
        "name": "Ann", "dev_ids": ["E2"], "rfids": [{"id": "CARD7"}],
        "charging_rules": [{"mode": 0, "current": 7000}]})
    await set_rules(http, running, [{"mode": 0, "current": 12000}])
    await push(http, running)
    status, _ = await call(http, running, "cmd=enter_rfid&rfid=CARD7&dev_id=E2")
    assert status == 200
    assert await push(http, running) == 7000
    e2 = await evse(http, running)
    assert e2["user_id"] == user["id"]
    assert e2["rule_wish"] == 7000 and e2["rule_source"] == "user rule 1 (fixed current)"
    # Override U switches the user's rules off: the EVSE rule is left.
    await ok(http, running, "cmd=override_device&dev_id=E2&flags=U")
    assert await push(http, running) == 12000
    # E as well: no rules at all.
    await ok(http, running, "cmd=override_device&dev_id=E2&flags=E")
    assert await push(http, running) == 16000
    e2 = await evse(http, running)
    assert e2["rule_source"] == ("no rules (EVSE rules overridden, user rules overridden)")
    # Only E: the user's rule.
    await ok(http, running, "cmd=override_device&dev_id=E2&flags=u")
    assert await push(http, running) == 7000
    # The user's rules change: used from the next cycle.
    await ok(http, running, "cmd=set_user", {"id": user["id"],
                                             "charging_rules": [{"mode": 1, "current": 50}]})
    assert await push(http, running) == 8000


async def test_override_e_set_directly_switches_evse_rules_off(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    await set_rules(http, running, [{"mode": 0, "current": 6000}])
    await push(http, running)
    assert await push(http, running) == 6000
    rt = running.app.manager.devices["E2"]
    assert rt.evse is not None
    rt.evse.overrides |= OVERRIDE_NO_EVSE_RULES
    assert await push(http, running) == 16000
    e2 = await evse(http, running)
    assert e2["rule_wish"] == -1 and e2["rule_source"] == "no rules (EVSE rules overridden)"


async def test_rule_set_is_stored_unchanged_and_evaluated(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    crule_set = {
        "rule_set": {"": [
            {"id": 7, "cmt": "night", "ena": True, "days": 0, "ctype": 3, "cexpr": "CM.night",
             "atype": 0, "aexpr": "6000", "time": 0, "dur": 0, "udur": 0, "flags": 2},
            {"id": 8, "cmt": "", "ena": True, "days": 0, "ctype": 0, "cexpr": "",
             "atype": 0, "aexpr": 9000, "time": 0, "dur": 0, "udur": 0, "flags": 0},
        ]},
        "selected_id": "",
        "x_unknown": {"kept": [1, 2]},
    }
    await set_rules(http, running, crule_set, key="crule_set")
    devices = await ok(http, running, "cmd=get_devices")
    e2 = next(d for d in devices if d["dev_id"] == "E2")
    assert e2["crule_set"] == crule_set
    await push(http, running)
    assert await push(http, running) == 9000
    assert (await evse(http, running))["rule_source"].startswith("EVSE rule id 8 (")
    await ok(http, running, "cmd=set_cm_vars&name=night&val=1")
    assert await push(http, running) == 6000
    assert (await evse(http, running))["rule_source"].startswith("EVSE rule id 7")
    # Still stored unchanged after a change of another setting.
    await ok(http, running, "cmd=set_params", {"devices": [{"dev_id": "E2", "prio": 2}]})
    devices = await ok(http, running, "cmd=get_devices")
    assert next(d for d in devices if d["dev_id"] == "E2")["crule_set"] == crule_set


async def test_rules_are_not_evaluated_in_observe_mode(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    await set_rules(http, running, [{"mode": 0, "current": 7000}])
    await push(http, running)
    assert (await evse(http, running))["rule_wish"] == 7000
    await observe_only(running)
    await push(http, running)
    e2 = await evse(http, running)
    assert e2["rule_wish"] == -1
    assert e2["rule_source"] == "observe mode (rules not evaluated)"
    await ok(http, running, "cmd=set_params", {"lb_enabled": True})
    await push(http, running)
    assert (await evse(http, running))["rule_wish"] == 7000


async def test_predefined_variables_and_share_of_total_current(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    await ok(http, running, "cmd=set_params", {"max_total_current": 20000})
    await push(http, running)
    await push(http, running)
    values = await ok(http, running, "cmd=get_cm_vars")
    pre = values["predefined"]
    assert pre["_max_total_current"] == 20000
    assert pre["_max_total_current_prc"] == 100
    assert pre["_dt"] >= 0
    # The writable share: 50 % of 20 A leaves 10 A.
    await ok(http, running, "cmd=set_cm_vars&name=_max_total_current_prc&val=50&tmp=1")

    async def halved() -> bool:
        await push(http, running)
        params = await ok(http, running, "cmd=get_params")
        return bool(params["max_total_cur_prc"] == 50)

    await wait_for(halved, timeout=5, interval=0.1)
    assert await push(http, running) <= 10000
    values = await ok(http, running, "cmd=get_cm_vars")
    assert values["predefined"]["_max_total_current_prc"] == 50
    assert values["predefined"]["_max_total_current"] == 10000


async def test_num_charging(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await setup_evse(http, running)
    await ok(http, running, "cmd=set_cm_vars&name=n&val=CM._num_charging1 * 10")
    await ok(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3&current=8000,8000,8000")
    await ok(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3&current=8000,8000,8000")
    values = await ok(http, running, "cmd=get_cm_vars")
    assert values["predefined"]["_num_charging"] == 1
    assert values["predefined"]["_num_charging1"] == 1
    assert values["vars"] == [{"name": "n", "expr": "CM._num_charging1 * 10", "val": 10,
                               "tmp": False}]


def test_wall_clock_zone_comes_from_tz(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TZ", "Europe/Berlin")
    assert local_zone() == ZoneInfo("Europe/Berlin")
    monkeypatch.setenv("TZ", "Not/AZone")
    assert local_zone() is not None
