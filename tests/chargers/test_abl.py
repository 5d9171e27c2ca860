"""ABL eMH1: ASCII frames, a duty cycle for the current, write-only registers, currents
with "no value" codes, and a box that misses the first frame after a pause."""

from __future__ import annotations

import time

from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.sim.wallboxes.modbus_boxes import Abl
from tests.chargers.conftest import driven


async def test_duty_cycle_write_only_registers_and_the_missed_frame() -> None:
    box = Abl(unit=1, now=time.monotonic)
    async with driven(box, "ascii") as (evse, server):
        r = await evse.read()  # the first frame is missed: answered on the retry
        assert r.state is EvseState.WAITING and r.currents.l1 == 0  # 1000 reads as none
        assert server.requests == 2
        box.plug()
        await evse.apply(EvseCommand(enabled=True, current_ma=12_000))
        assert box.duty == 200 and box.offered_ma() == 12_000  # 12 A / 0.06 A
        assert box.writes[0][1:] == (0x0005, (0xA1A1,))  # the outlet on, then the duty
        r = await evse.read()
        assert r.state is EvseState.CHARGING and r.currents.l2 == 12_000
        await evse.apply(EvseCommand(enabled=False, current_ma=0))
        assert box.duty == 1000
        assert (await evse.read()).state is EvseState.EV_PRESENT


async def test_wake_up_switches_the_outlet_off_and_on() -> None:
    box = Abl(unit=1, now=time.monotonic)
    box.wake_drop = False
    async with driven(box, "ascii") as (evse, _):
        box.plug(wants=False)
        evse.control = evse.control.__class__(**{
            **{f: getattr(evse.control, f) for f in evse.control.__slots__},
            "wake_up": tuple(type(s)(register=s.register, value=s.value, type=s.type,
                                     order=s.order, func=s.func, delay_ms=10)
                             for s in evse.control.wake_up)})
        await evse.apply(EvseCommand(enabled=True, current_ma=8000, wake=True))
        assert evse._wake is not None
        await evse._wake
        assert box.cp_interruptions == 1 and not box.outlet_off
        assert (await evse.read()).state is EvseState.CHARGING
