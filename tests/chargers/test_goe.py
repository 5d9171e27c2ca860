"""go-e Charger, HTTP API v2: the status filter, nrg indexes, force state, phases, and the
current written as amx (amp would wear the flash)."""

from __future__ import annotations

import time

import pytest

from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.devices.defined_evse import DefinedEvse
from chargebrain.devices.errors import DeviceError
from chargebrain.sim.wallboxes.goe import GoE
from tests.chargers.conftest import bundled


async def test_status_commands_and_flash_friendly_current() -> None:
    box = GoE(now=time.monotonic)
    port = await box.start()
    evse = DefinedEvse(bundled("evse_go_e_homeplus_mobile"), f"127.0.0.1:{port}", timeout=1)
    try:
        box.plug(phases=3)
        await evse.apply(EvseCommand(enabled=False, current_ma=0))
        assert box.frc == 1 and (await evse.read()).state is EvseState.EV_PRESENT
        await evse.apply(EvseCommand(enabled=True, current_ma=10_000, phases=1))
        assert (box.frc, box.amp, box.psm, box.flash_writes) == (0, 10, 1, 0)
        r = await evse.read()
        assert r.state is EvseState.CHARGING and r.currents.l1 == 10_000 and r.currents.l2 == 0
        assert r.power_w == 2300
        box.failing = True
        with pytest.raises(DeviceError, match="HTTP status 500"):
            await evse.read()
    finally:
        await evse.close()
        await box.stop()
