"""A charging manager under a master, over real HTTP with a virtual clock: the master's
limit is shared by the EVSEs and named in their reasons, it expires into the fallback
when the master stops writing, and the state a master reads; the master's driver against
it."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from chargebrain.clock import VirtualClock
from chargebrain.core.model import EvseCommand
from chargebrain.devices.cm_slave import CmSlaveEvse, base_url, reading_of
from chargebrain.devices.errors import DeviceError
from chargebrain.manager.cascade import MasterLink
from tests.api.test_users import add_evse, call
from tests.conftest import Running, free_ports, wait_for


async def push(http: aiohttp.ClientSession, running: Running, dev_id: str,
               draw: int) -> dict[str, Any]:
    """A car on `dev_id` drawing `draw` mA on three phases; the wallbox's answer."""
    state = 3 if draw else 2
    status, body = await call(http, running, f"cmd=set_ajax_evse&dev_id={dev_id}"
                              f"&state={state}&current={draw},{draw},{draw}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def reason(http: aiohttp.ClientSession, running: Running, dev_id: str) -> str:
    status, info = await call(http, running, "cmd=get_dev_info")
    assert status == 200
    return next(str(d["reason"]) for d in info["devices"] if d["dev_id"] == dev_id)


async def test_the_master_s_limit_is_shared_and_expires_into_the_fallback(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, clock = virtual
    status, body = await call(http, running, "cmd=set_cm_slave&cur=10000")
    assert status == 409 and "cm_master_enabled" in body["error"]
    status, body = await call(http, running, "cmd=set_params", {
        "cm_master_enabled": True, "cm_master_fallback": 8000, "cm_master_timeout": 60})
    assert status == 200, body
    await add_evse(http, running, "E2", max_charging_cur=32000)
    await add_evse(http, running, "E3", max_charging_cur=32000)

    async def offers(total: int) -> bool:
        a = await push(http, running, "E2", 0)
        b = await push(http, running, "E3", 0)
        return bool(a["charging_current"] + b["charging_current"] == total)

    # No master's write since the start: the fallback, 8 A for both together.
    await wait_for(lambda: offers(8000))
    assert "limited by master (fallback)" in await reason(http, running, "E3") + (
        await reason(http, running, "E2"))
    status, state = await call(http, running, "cmd=set_cm_slave&cur=20000")
    assert status == 200, state
    assert state["enabled"] is True and state["limit"] == 20000 and state["from_master"]
    await wait_for(lambda: offers(20000))
    assert await reason(http, running, "E2") == "limited by master phase L1"
    status, state = await call(http, running, "cmd=get_cm_slave")
    assert state["state"] == 2 and state["max_current"] == 32000 and state["evses"] == 3
    # The master stops writing: after cm_master_timeout the fallback again.
    for _ in range(7):
        clock.advance(10.0)
        await push(http, running, "E2", 0)
        await push(http, running, "E3", 0)
    await wait_for(lambda: offers(8000))
    status, state = await call(http, running, "cmd=get_cm_slave")
    assert state["limit"] == 8000 and state["from_master"] is False
    assert state["master_age"] >= 60


async def test_what_a_master_reads(running: Running, http: aiohttp.ClientSession) -> None:
    await call(http, running, "cmd=set_params", {"cm_master_enabled": True,
                                                 "max_total_current": 40000,
                                                 "max_total_evse_current": 25000})
    await add_evse(http, running, "E2", max_charging_cur=32000)
    await call(http, running, "cmd=set_cm_slave&cur=16000")

    async def charging() -> dict[str, Any] | None:
        offer = (await push(http, running, "E2", 0))["charging_current"]
        await push(http, running, "E2", offer - 200 if offer else 0)
        await running.app.manager.wait_cycle()
        _status, state = await call(http, running, "cmd=get_cm_slave")
        return state if state["state"] == 3 and state["current"][0] > 0 else None

    state = await wait_for(charging)
    assert state["max_current"] == 25000  # the EVSE supply line is below the connection
    assert state["current"] == [15800] * 3 and state["charging"] == 1
    assert state["allocated"] == [16000] * 3  # the master's limit
    assert state["demand"] == [25000] * 3  # the car follows: all the supply line gives
    reading = reading_of(state)
    assert reading.max_current_ma == 25000 and reading.demand_ma == 25000
    assert reading.currents.l2 == 16000  # what it was given: more than it draws yet
    assert reading.limit_ma == 16000
    await call(http, running, "cmd=set_params", {"lb_enabled": False})
    status, state = await call(http, running, "cmd=get_cm_slave")
    with pytest.raises(DeviceError, match="observe"):
        reading_of(state)
    with pytest.raises(DeviceError, match="cm_master_enabled"):
        reading_of({**state, "enabled": False})
    for bad in ("set_cm_slave&cur=-1", "set_cm_slave&cur=2000001", "set_cm_slave",
                "set_cm_slave&cur=abc"):
        status, _ = await call(http, running, "cmd=" + bad)
        assert status == 400
    _status, after = await call(http, running, "cmd=get_cm_slave")
    assert after["limit"] == 16000  # a refused write changes nothing


@pytest.mark.parametrize("change", [
    {"current": [1, 2]}, {"current": [-1, 0, 0]}, {"allocated": None},
    {"demand": [0, 0, float("nan")]}, {"state": float("inf")}, {"power_w": "1"},
    {"max_current": True}, {"enabled": "yes"},
])
def test_a_broken_answer_is_a_device_error(change: dict[str, Any]) -> None:
    good = {"enabled": True, "lb_enabled": True, "state": 3, "current": [0, 0, 0],
            "allocated": [0, 0, 0], "demand": [0, 0, 0], "power_w": 0,
            "max_current": 32000, "limit": 0, "from_master": False}
    assert reading_of(good).limit_ma is None
    with pytest.raises(DeviceError):
        reading_of({**good, **change})


def test_slave_addresses() -> None:
    assert base_url("192.168.1.61") == "http://192.168.1.61:4712"
    assert base_url("192.168.1.61:8080") == "http://192.168.1.61:8080"
    assert base_url("https://slave.local:4712/") == "https://slave.local:4712"
    for bad in ("", "host:port", "host:70000"):
        with pytest.raises(DeviceError):
            base_url(bad)


async def test_the_master_s_driver_writes_a_lost_limit_again(
        running: Running, http: aiohttp.ClientSession) -> None:
    driver = CmSlaveEvse(running.base_url.removeprefix("http://"), timeout=1.0)
    lost = CmSlaveEvse(f"127.0.0.1:{free_ports(1)}", timeout=1.0)
    try:
        with pytest.raises(DeviceError, match="cm_master_enabled"):
            await driver.read()
        await call(http, running, "cmd=set_params", {"cm_master_enabled": True})
        await driver.apply(EvseCommand(True, 10000))
        assert (await driver.read()).limit_ma == 10000
        # The slave restarts (its master's limit gone): the next read writes it again.
        running.app.manager.decider.master = MasterLink()
        assert (await driver.read()).limit_ma == 10000
        assert running.app.manager.decider.master.current_ma == 10000
        await driver.apply(EvseCommand(False, 0))  # paused: 0 for all its EVSEs
        assert running.app.manager.decider.master.current_ma == 0
        with pytest.raises(DeviceError, match=r"127\.0\.0\.1"):
            await lost.read()
    finally:
        await driver.close()
        await lost.close()
