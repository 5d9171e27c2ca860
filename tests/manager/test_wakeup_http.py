"""Waking a sleeping car over real sockets: an HTTP-input EVSE is told in its answer, the
built-in EVSE gets its control pilot switched off (register 8086)."""

from __future__ import annotations

from typing import Any

import aiohttp

from chargebrain.clock import VirtualClock
from chargebrain.manager.wakeup import WAKE_AFTER_S
from chargebrain.powerbrain.hardware import SimCar
from tests.api.test_users import add_evse, call
from tests.conftest import Running, wait_for


async def present(http: aiohttp.ClientSession, running: Running) -> dict[str, Any]:
    """E2 reports a car that is plugged in but draws nothing; the answer."""
    status, body = await call(http, running,
                              "cmd=set_ajax_evse&dev_id=E2&state=2&current=0,0,0")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def offered(http: aiohttp.ClientSession, running: Running) -> dict[str, Any]:
    async def enabled() -> dict[str, Any] | None:
        answer = await present(http, running)
        return answer if answer["charging_enabled"] else None

    return await wait_for(enabled)  # type: ignore[no-any-return]


async def test_http_input_evse_is_told_once_to_wake_the_car(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, clock = virtual
    await add_evse(http, running, "E2", enable_wakeup=True)
    first = await offered(http, running)
    assert first["wake_up"] is False and first["charging_current"] >= 6000

    async def woken() -> bool:
        clock.advance(2.0)  # cycles a second apart, as the car keeps not drawing
        return bool((await present(http, running))["wake_up"])

    await wait_for(woken, timeout=30.0)
    # Handed over once: the following answers do not repeat it.
    for _ in range(3):
        assert (await present(http, running))["wake_up"] is False


async def test_without_enable_wakeup_the_answer_is_the_vendors(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, clock = virtual
    await add_evse(http, running, "E2")
    await offered(http, running)
    for _ in range(int(WAKE_AFTER_S)):
        clock.advance(2.0)
        answer = await present(http, running)
        assert set(answer) == {"device_enabled", "charging_enabled", "paused",
                               "charging_current"}


async def test_built_in_evse_switches_the_pilot_off(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, clock = virtual
    status, body = await call(http, running, "cmd=set_params",
                              {"devices": [{"dev_id": "E1", "enable_wakeup": True}]})
    assert status == 200, body
    # A car that is full: it is offered current but does not take it.
    running.app.hardware.plug(SimCar(need_wh=0.0))

    async def pilot_off_seconds() -> int:
        status, value = await call(http, running, "cmd=modbus&device=evse&read=8086")
        assert status == 200, value
        return int(value)

    async def offered_unused() -> bool:
        clock.advance(1.0)  # the built-in EVSE is polled: let periodic cycles run
        status, dev = await call(http, running, "cmd=get_dev_info")
        assert status == 200
        e1 = next(d for d in dev["devices"] if d["dev_id"] == "E1")
        return bool(e1["state"] == 2 and e1["charging_enabled"])

    await wait_for(offered_unused)
    assert await pilot_off_seconds() == 0

    async def woken() -> bool:
        clock.advance(1.0)
        return await pilot_off_seconds() > 0

    await wait_for(woken, timeout=30.0)
