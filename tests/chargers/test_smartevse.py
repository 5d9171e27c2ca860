"""SmartEVSE: Modbus RTU on a serial line (a pseudo-terminal) and over TCP, 1/256 units,
a current packed into both bytes of one register."""

from __future__ import annotations

import time

import pytest

from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.devices.defined_evse import DefinedEvse
from chargebrain.sim.wallboxes.modbus_boxes import SmartEvse
from chargebrain.sim.wallboxes.modbus_server import ModbusSimServer
from tests.chargers.conftest import bundled, driven


async def test_on_a_serial_line() -> None:
    box = SmartEvse(unit=1, now=time.monotonic)
    server = ModbusSimServer([box], "rtu")
    device = await server.start_pty()
    evse = DefinedEvse(bundled("evse_smartevse"), f"{device},9600,8,N,1", 1, timeout=1)
    try:
        box.plug(phases=1)
        await evse.apply(EvseCommand(enabled=True, current_ma=9_900))
        assert box.limit_ma == 9000 and box.writes[-1][2] == (9 * 257,)
        r = await evse.read()
        assert r.state is EvseState.CHARGING
        assert r.currents.l1 == pytest.approx(9000, abs=4) and r.currents.l2 == 0
    finally:
        await evse.close()
        await server.stop()


async def test_over_tcp_with_flags_in_the_state_register() -> None:
    box = SmartEvse(unit=1, now=time.monotonic)
    box.energy_wh = 1000
    async with driven(box, "rtu") as (evse, _):
        r = await evse.read()  # 0x0101: flags in the high byte, state A
        assert r.state is EvseState.WAITING
        assert r.total_energy_wh == pytest.approx(1000, abs=4)
        await evse.apply(EvseCommand(enabled=False, current_ma=0))
        assert box.limit_ma == 0
