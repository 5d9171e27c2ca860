"""Vestel EVC04 and Webasto Next: currents in mA at registers with holes between them,
a state made of two registers, and an alive register that must be written (reading does
not feed the fail-safe)."""

from __future__ import annotations

from chargebrain.clock import VirtualClock
from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.devices.defined_evse import DefinedEvse
from chargebrain.sim.wallboxes.vestel import Vestel, WebastoNext
from tests.chargers.conftest import bundled, served


async def test_vestel_alive_register_keeps_the_fail_safe_away() -> None:
    clock = VirtualClock(start=0)
    box = Vestel(unit=255, now=clock.monotonic)
    async with served(box) as (address, _):
        evse = DefinedEvse(bundled("evse_vestel_evc04"), address, 255, clock=clock, timeout=1)
        assert (await evse.read()).state is EvseState.WAITING
        box.plug(max_ma=32_000, phases=1)
        box.energy_wh = 5000
        await evse.apply(EvseCommand(enabled=True, current_ma=20_000))
        for _ in range(12):  # a minute of readings: the keepalive writes 6000 every 5 s
            clock.advance(5)
            r = await evse.read()
        assert r.state is EvseState.CHARGING and r.currents.l1 == 20_000 and r.currents.l2 == 0
        assert r.total_energy_wh >= 5000 and r.power_w == 4600
        assert box.offered_ma() == 20_000
        evse.control = evse.control.__class__(**{
            **{f: getattr(evse.control, f) for f in evse.control.__slots__}, "keepalive": ()})
        clock.advance(25)
        await evse.read()  # reading alone does not feed it
        assert box.offered_ma() == 6000  # the fail-safe current the definition set
        await evse.close()


async def test_webasto_next_state_codes_rfid_and_stop() -> None:
    clock = VirtualClock(start=0)
    box = WebastoNext(unit=255, now=clock.monotonic)
    async with served(box) as (address, _):
        evse = DefinedEvse(bundled("evse_webasto_next"), address, 255, clock=clock, timeout=1)
        box.plug()
        assert (await evse.read()).state is EvseState.EV_PRESENT
        box.rfid = "04A2B3C4"
        await evse.apply(EvseCommand(enabled=True, current_ma=11_000))
        r = await evse.read()
        assert r.state is EvseState.CHARGING and r.rfid == "04A2B3C4"
        assert r.currents.l3 == 11_000 and (await evse.read()).rfid == ""  # shown once
        await evse.apply(EvseCommand(enabled=False, current_ma=0))
        assert box.limit_ma == 0 and (await evse.read()).state is EvseState.EV_PRESENT
        await evse.close()
