"""Automatic 1/3-phase switching over real sockets: the built-in Power Brain EVSE with a
surplus rule is switched to one phase while the surplus is too small for three, and back
(register 8087); the car behind it draws on one phase, then on three."""

from __future__ import annotations

from typing import Any

import aiohttp

from chargebrain.clock import VirtualClock
from chargebrain.powerbrain.hardware import SimCar
from tests.api.test_users import call
from tests.conftest import Running, wait_for

SURPLUS_RULE = {"mode": 5, "enabled": True, "udur": 0}


async def e1(http: aiohttp.ClientSession, running: Running) -> dict[str, Any]:
    status, info = await call(http, running, "cmd=get_dev_info")
    assert status == 200
    return next(d for d in info["devices"] if d["dev_id"] == "E1")  # type: ignore[no-any-return]


async def relay(http: aiohttp.ClientSession, running: Running) -> int:
    status, value = await call(http, running, "cmd=modbus&device=evse&read=8087")
    assert status == 200, value
    return int(value)


async def test_the_built_in_evse_switches_to_one_phase_and_back_with_the_surplus(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, clock = virtual
    for body in (
        {"phase_switch_plugged": True, "phase_switch_cp_s": 5, "phase_switch_delay": 60},
        {"devices": [{"dev_type": "meter_ajax", "dev_id": "M3", "name": "grid", "role": 3}]},
        {"devices": [{"dev_id": "E1", "phase_switch_auto": True,
                      "charging_rules": [SURPLUS_RULE]}]},
    ):
        status, answer = await call(http, running, "cmd=set_params", body)
        assert status == 200, answer
    running.app.hardware.plug(SimCar(max_ma=16_000, phases=3))
    surplus_w = 2500.0  # too little for three phases at 6 A (4140 W)

    async def step() -> dict[str, Any]:
        """A few seconds on: the grid meter shows the surplus left beside E1's draw."""
        clock.advance(3.0)
        dev = await e1(http, running)
        grid = dev["power_w"] - surplus_w
        status, answer = await call(http, running,
                                    f"cmd=set_ajax_meter&dev_id=M3&power_w={grid}")
        assert status == 200, answer
        return dev

    async def charging_on(phases: int) -> bool:
        dev = await step()
        drawn = [dev["current_l1"], dev["current_l2"], dev["current_l3"]]
        return sum(c > 500 for c in drawn) == phases and dev["current_l1"] >= 6000

    await wait_for(lambda: charging_on(1), timeout=60)
    assert await relay(http, running) == 1
    dev = await e1(http, running)
    assert dev["current_l1"] >= 10_000  # 2.5 kW on one phase: about 10.8 A
    surplus_w = 7000.0  # enough for three phases: back, once 2 min have passed
    await wait_for(lambda: charging_on(3), timeout=60)
    assert await relay(http, running) == 0
