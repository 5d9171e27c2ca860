"""Mennekes Amtron (HCC3): 32-bit values low word first, whole amperes, 0 pauses, currents
estimated from the power."""

from __future__ import annotations

import time

from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.sim.wallboxes.modbus_boxes import Amtron
from tests.chargers.conftest import driven


async def test_low_word_first_whole_amperes_and_estimated_currents() -> None:
    box = Amtron(unit=255, now=time.monotonic)
    async with driven(box) as (evse, _):
        box.plug(phases=1)
        assert (await evse.read()).state is EvseState.EV_PRESENT
        await evse.apply(EvseCommand(enabled=True, current_ma=10_900))
        assert box.limit_ma == 10_000  # whole amperes, rounded down
        r = await evse.read()
        assert r.state is EvseState.CHARGING and r.power_w == 2300
        assert (r.currents.l1, r.currents.l2) == (10_000, 0)
        assert r.max_current_ma == 10_000 and not r.energy_known
        await evse.apply(EvseCommand(enabled=False, current_ma=0))
        assert box.limit_ma == 0
