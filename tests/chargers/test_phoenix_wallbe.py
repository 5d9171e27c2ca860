"""Phoenix Contact EV-CC and Wallbe: a coil enables charging, the state is a letter,
32-bit values low word first, the current in A (Phoenix) or 0.1 A (Wallbe)."""

from __future__ import annotations

import time

import pytest

from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.devices.errors import DeviceError
from chargebrain.sim.wallboxes.modbus_boxes import Phoenix
from tests.chargers.conftest import driven


@pytest.mark.parametrize(("wallbe", "expected_ma"), [(False, 7000), (True, 7700)])
async def test_coil_letter_state_and_current_units(wallbe: bool, expected_ma: int) -> None:
    box = Phoenix(unit=255, wallbe=wallbe, now=time.monotonic)
    box.energy_wh = 70_000
    async with driven(box) as (evse, _):
        box.plug()
        await evse.apply(EvseCommand(enabled=True, current_ma=7_700))
        assert box.enabled and box.limit_ma == expected_ma
        r = await evse.read()
        assert r.state is EvseState.CHARGING and r.total_energy_wh == 70_000
        assert r.currents.l1 == round(expected_ma / 1000) * 1000  # the box reports whole A
        await evse.apply(EvseCommand(enabled=False, current_ma=0))
        assert not box.enabled
        assert (await evse.read()).state is EvseState.EV_PRESENT


async def test_an_unknown_letter_is_a_device_error() -> None:
    box = Phoenix(unit=255, now=time.monotonic)
    box.cp = lambda: "X"  # type: ignore[method-assign]
    async with driven(box) as (evse, _):
        with pytest.raises(DeviceError, match="map does not know"):
            await evse.read()
