"""A command's phases reach a Power Brain's contactor: the built-in one through its
registers, another one over Modbus TCP (a real server on a loopback port). The
controllers are stepped with explicit time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.core.phases import Phases
from chargebrain.devices.powerbrain import LocalEvse, RemoteEvse
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.powerbrain.hardware import SimCar, SimEvseHardware
from chargebrain.powerbrain.phase_switch import PhaseSwitchSettings
from chargebrain.servers.modbus_tcp import ModbusTcpServers
from tests.conftest import free_ports

ONE_PHASE = EvseCommand(enabled=True, current_ma=16_000, phases=1)
THREE_PHASE = EvseCommand(enabled=True, current_ma=16_000, phases=3)


def run(pb: PowerBrain, seconds: float, dt: float = 0.5) -> None:
    for _ in range(round(seconds / dt)):
        pb.tick(dt)


def charging_controller() -> PowerBrain:
    """A controller that may switch under a plugged car; its car charges on 3 phases."""
    hw = SimEvseHardware()
    pb = PowerBrain(None, hw)
    pb.start()
    pb.banks["evse"].write_words(8083, [0, 0])  # no fail-safe while time is stepped
    pb.configure_phase_switching(PhaseSwitchSettings(plugged=True, cp_off_s=20))
    pb.phase_switch_delay_s = 30.0
    hw.plug(SimCar(max_ma=16_000, phases=3))
    run(pb, 2)
    return pb


async def test_built_in_evse_switches_the_contactor() -> None:
    pb = charging_controller()
    evse = LocalEvse(pb.banks["evse"], "cFos Power Brain")
    await evse.apply(ONE_PHASE)
    assert pb.banks["evse"].get("relay_select") == 1
    assert pb.cp_interrupted
    run(pb, 10)
    await evse.apply(ONE_PHASE)  # the refresh of an unchanged command
    run(pb, 10.5)
    reading = evse.read_now()
    assert reading.state is EvseState.CHARGING
    assert reading.currents == Phases(16_000, 0, 0)
    await evse.apply(THREE_PHASE)
    assert not pb.cp_interrupted  # 21 s after the first switch: held for the delay
    run(pb, 10)
    assert pb.cp_interrupted
    run(pb, 21)
    assert evse.read_now().currents == Phases(16_000, 16_000, 16_000)


@pytest.fixture
async def remote() -> AsyncIterator[tuple[PowerBrain, RemoteEvse]]:
    pb = charging_controller()
    port = free_ports(1)
    server = ModbusTcpServers([pb.banks["evse"]], "127.0.0.1", port)
    await server.start()
    driver = RemoteEvse(f"127.0.0.1:{port}", 1)
    try:
        yield pb, driver
    finally:
        await driver.close()
        await server.stop()


async def test_remote_evse_switches_the_contactor(
        remote: tuple[PowerBrain, RemoteEvse]) -> None:
    pb, driver = remote
    assert (await driver.read()).currents == Phases(16_000, 16_000, 16_000)
    await driver.apply(ONE_PHASE)
    assert pb.banks["evse"].get("relay_select") == 1
    assert pb.banks["evse"].get("disconnect_cp") == 20
    run(pb, 1)
    reading = await driver.read()
    assert reading.state is EvseState.EV_PRESENT  # the car sees an unplug
    assert reading.currents == Phases(0, 0, 0)
    await driver.apply(ONE_PHASE)
    run(pb, 19.5)
    reading = await driver.read()
    assert reading.state is EvseState.CHARGING
    assert reading.currents == Phases(16_000, 0, 0)
    assert reading.power_w == 3680
