"""Alfen Eve: floats, a 64-bit float energy counter, the state as text, and a current
that is only valid for 60 s unless it is written again."""

from __future__ import annotations

import pytest

from chargebrain.clock import VirtualClock
from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.devices.defined_evse import DefinedEvse
from chargebrain.sim.wallboxes.modbus_boxes import Alfen
from tests.chargers.conftest import bundled, served


async def test_floats_text_state_and_the_validity_time() -> None:
    clock = VirtualClock(start=0)
    box = Alfen(unit=1, now=clock.monotonic)
    async with served(box) as (address, _):
        evse = DefinedEvse(bundled("evse_alfen_evepro"), address, 1, clock=clock, timeout=1)
        box.plug(max_ma=32_000)
        box.energy_wh = 12_345.5
        await evse.apply(EvseCommand(enabled=True, current_ma=13_500))
        r = await evse.read()
        assert r.state is EvseState.CHARGING and r.total_energy_wh == pytest.approx(12_345.5)
        assert r.currents.l1 == 13_500 and r.max_current_ma == 13_500
        for _ in range(6):  # 90 s of readings, the current never written by the manager
            clock.advance(15)
            await evse.read()
        assert box.offered_ma() == 13_500  # the keepalive wrote it again in time
        await evse.apply(EvseCommand(enabled=True, current_ma=8000, phases=1))
        assert box.phases == 1
        await evse.apply(EvseCommand(enabled=False, current_ma=0))
        clock.advance(30)
        await evse.read()
        assert box.limit_ma == 0 and (await evse.read()).state is EvseState.EV_PRESENT
        await evse.close()


async def test_without_keepalive_the_box_falls_back_to_its_safe_current() -> None:
    clock = VirtualClock(start=0)
    box = Alfen(unit=1, now=clock.monotonic)
    box.plug()
    async with served(box) as (address, _):
        evse = DefinedEvse(bundled("evse_alfen_evepro"), address, 1, clock=clock, timeout=1)
        await evse.apply(EvseCommand(enabled=True, current_ma=16_000))
        clock.advance(61)
        assert box.offered_ma() == 6000
        await evse.close()
