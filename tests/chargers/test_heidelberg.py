"""Heidelberg Energy Control: RTU frames over TCP, input and holding registers, currents in
0.1 A, the watchdog that a silent master lets fire."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.devices.errors import DeviceError, ModbusIOError
from chargebrain.sim.wallboxes.modbus_boxes import Heidelberg
from tests.chargers.conftest import driven


async def test_reads_and_commands_over_rtu() -> None:
    box = Heidelberg(unit=3, now=time.monotonic)
    async with driven(box, "rtu") as (evse, _):
        first = await evse.read()
        assert first.state is EvseState.WAITING and first.energy_known
        assert box.standby == 4 and box.failsafe_ma == 0  # init: no standby, stop when lost
        box.plug(max_ma=32_000)
        await evse.apply(EvseCommand(enabled=True, current_ma=10_400))
        assert box.limit_ma == 10_400  # 104 in 0.1 A
        r = await evse.read()
        assert r.state is EvseState.CHARGING
        assert r.currents.l1 == 10_400 and r.currents.l3 == 10_400
        assert r.max_current_ma == 10_400 and r.power_w == pytest.approx(3 * 230 * 10.4, abs=5)
        await evse.apply(EvseCommand(enabled=True, current_ma=20_000))
        assert box.limit_ma == 16_000  # the box's own maximum
        await evse.apply(EvseCommand(enabled=False, current_ma=0))
        assert box.limit_ma == 0
        assert (await evse.read()).state is EvseState.EV_PRESENT


async def test_watchdog_falls_back_when_the_master_is_silent() -> None:
    now = [0.0]
    box = Heidelberg(unit=1, now=lambda: now[0])
    async with driven(box, "rtu") as (evse, _):
        box.plug()
        await evse.apply(EvseCommand(enabled=True, current_ma=16_000))
        now[0] += 10
        assert (await evse.read()).state is EvseState.CHARGING  # a read feeds the watchdog
        now[0] += 16
        assert box.offered_ma() == 0  # the fail-safe current the definition set: 0


async def test_refused_value_and_silent_box_are_device_errors() -> None:
    box = Heidelberg(unit=1, now=time.monotonic)
    async with driven(box, "rtu", timeout=0.3) as (evse, server):
        await evse.read()
        evse.control = replace(evse.control, min_current_ma=0)  # let 5 A through
        with pytest.raises(ModbusIOError, match="exception 3"):  # 50: the box refuses
            await evse.apply(EvseCommand(enabled=True, current_ma=5000))
        server.silent = True
        with pytest.raises(DeviceError, match="no answer"):
            await evse.read()
