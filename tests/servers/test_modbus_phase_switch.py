"""Phase switching as evcc does it: the whole application on real sockets, a pymodbus
client reading 8113 and writing 8087 with function code 6, the setting through
set_params. Where time matters the application runs on a virtual clock."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymodbus.client import AsyncModbusTcpClient

from chargebrain.app import App, Config
from chargebrain.clock import VirtualClock
from chargebrain.powerbrain.hardware import SimCar
from tests.conftest import Running, free_ports, observe_only

STEP_S = 0.25  # the application's controller tick


@dataclass
class Evcc:
    """The application and a Modbus TCP client on the EVSE's port, as evcc connects."""

    running: Running
    client: AsyncModbusTcpClient
    clock: VirtualClock | None = None

    async def read(self, address: int, count: int = 1) -> list[int]:
        rr = await self.client.read_holding_registers(address, count=count, device_id=1)
        assert not rr.isError(), rr
        return list(rr.registers)

    async def write(self, address: int, value: int) -> None:
        rr = await self.client.write_register(address, value, device_id=1)  # FC6
        assert not rr.isError(), rr

    async def currents(self) -> list[int]:
        words = await self.read(8064, 6)
        return [struct.unpack(">I", struct.pack(">HH", *words[i : i + 2]))[0] for i in (0, 2, 4)]

    async def power(self) -> int:
        return int(struct.unpack(">I", struct.pack(">HH", *await self.read(8062, 2)))[0])

    async def status(self) -> int:
        return (await self.read(8092))[0] & 0xFF

    async def advance(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass, the controller ticking as it does; evcc
        polls the status every second (which also keeps the fail-safe away)."""
        assert self.clock is not None
        steps = round(seconds / STEP_S)
        for i in range(steps):
            self.clock.advance(STEP_S)
            for _ in range(3):
                await asyncio.sleep(0)
            if i % 4 == 3:
                await self.status()


async def get_params(running: Running) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(running.url("cmd=get_params")) as resp:
        assert resp.status == 200
        params: dict[str, Any] = await resp.json()
    return params


async def set_params(running: Running, body: dict[str, Any]) -> dict[str, Any]:
    """set_params, then what get_params answers."""
    async with aiohttp.ClientSession() as http, http.post(
            running.url("cmd=set_params"), json=body) as resp:
        assert resp.status == 200, await resp.text()
    return await get_params(running)


async def connect(running: Running) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=running.modbus_port, timeout=2, retries=0)
    assert await client.connect()
    return client


@pytest.fixture
async def evcc(tmp_path: Path) -> AsyncIterator[Evcc]:
    """The application on a virtual clock with its Modbus TCP servers, under evcc."""
    clock = VirtualClock()
    http_port, modbus_port = free_ports(1), free_ports(3)
    app = App(Config(tmp_path / "data", "127.0.0.1", http_port, modbus_port), clock=clock)
    await app.start()
    running = Running(app, f"http://127.0.0.1:{http_port}", modbus_port)
    client = await connect(running)
    try:
        await observe_only(running)
        yield Evcc(running, client, clock)
    finally:
        client.close()
        await app.stop()


async def charging_three_phase(evcc: Evcc) -> None:
    evcc.running.app.hardware.plug(SimCar(max_ma=16_000, phases=3))
    await evcc.write(8094, 1)
    await evcc.write(8093, 160)
    await evcc.advance(1)
    assert await evcc.status() == 2
    assert await evcc.currents() == [160, 160, 160]


async def test_8113_bit_8_follows_the_setting(running: Running) -> None:
    client = await connect(running)
    try:
        assert (await client.read_holding_registers(8113, count=1, device_id=1)).registers[
            0] & 0x100 == 0
        params = await set_params(running, {"phase_switch_plugged": True})
        assert params["phase_switch_plugged"] is True and params["phase_switch_cp_s"] == 120
        rr = await client.read_holding_registers(8113, count=1, device_id=1)
        assert rr.registers[0] & 0x100
        params = await set_params(running, {"phase_switch_plugged": False})
        assert params["phase_switch_plugged"] is False
        rr = await client.read_holding_registers(8113, count=1, device_id=1)
        assert rr.registers[0] & 0x100 == 0
    finally:
        client.close()


async def test_switch_to_one_phase_while_charging(evcc: Evcc) -> None:
    await set_params(evcc.running, {"phase_switch_plugged": True})
    await charging_three_phase(evcc)
    await evcc.write(8087, 1)
    assert (await evcc.read(8087))[0] == 1
    await evcc.advance(1)
    assert await evcc.status() == 1  # B: the pilot is off, the car sees an unplug
    assert 118 <= (await evcc.read(8086))[0] <= 120
    assert await evcc.currents() == [0, 0, 0] and await evcc.power() == 0
    await evcc.advance(60)
    assert await evcc.status() == 1
    assert 58 <= (await evcc.read(8086))[0] <= 60
    await evcc.advance(60)
    assert await evcc.status() == 2
    assert (await evcc.read(8086))[0] == 0
    assert await evcc.currents() == [160, 0, 0]
    assert await evcc.power() == 3680
    assert (await evcc.read(8087))[0] == 1


async def test_without_permission_the_car_keeps_its_phases_until_replugged(
        evcc: Evcc) -> None:
    await charging_three_phase(evcc)
    await evcc.write(8087, 1)
    await evcc.advance(200)
    assert (await evcc.read(8087))[0] == 1
    assert await evcc.status() == 2 and (await evcc.read(8086))[0] == 0
    assert await evcc.currents() == [160, 160, 160]
    hw = evcc.running.app.hardware
    car = hw.unplug()
    assert car is not None
    await evcc.advance(1)
    hw.plug(car)
    await evcc.advance(1)
    assert await evcc.status() == 2
    assert await evcc.currents() == [160, 0, 0]


async def test_the_site_delay_keeps_switches_apart(evcc: Evcc) -> None:
    await set_params(evcc.running, {"phase_switch_plugged": True, "phase_switch_cp_s": 10,
                                    "phase_switch_delay": 60})
    await charging_three_phase(evcc)
    await evcc.write(8087, 1)
    await evcc.advance(11)
    assert await evcc.currents() == [160, 0, 0]
    await evcc.write(8087, 0)  # asked back at once: held for the delay
    await evcc.advance(45)  # 56 s after the first switch
    assert await evcc.status() == 2 and (await evcc.read(8086))[0] == 0
    assert await evcc.currents() == [160, 0, 0]
    await evcc.advance(5)  # 61 s: the pilot goes off for the second switch
    assert await evcc.status() == 1
    assert 1 <= (await evcc.read(8086))[0] <= 10
    await evcc.advance(10)
    assert await evcc.currents() == [160, 160, 160]


async def test_the_setting_survives_a_restart_the_request_does_not(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def started() -> Running:
        http_port, modbus_port = free_ports(1), free_ports(3)
        app = App(Config(data, "127.0.0.1", http_port, modbus_port))
        await app.start()
        return Running(app, f"http://127.0.0.1:{http_port}", modbus_port)

    first = await started()
    try:
        await set_params(first, {"phase_switch_plugged": True, "phase_switch_cp_s": 90})
        client = await connect(first)
        assert not (await client.write_register(8087, 1, device_id=1)).isError()
        client.close()
    finally:
        await first.app.stop()
    second = await started()
    try:
        params = await get_params(second)
        assert params["phase_switch_plugged"] is True and params["phase_switch_cp_s"] == 90
        client = await connect(second)
        rr = await client.read_holding_registers(8113, count=1, device_id=1)
        assert rr.registers[0] & 0x100
        rr = await client.read_holding_registers(8087, count=1, device_id=1)
        assert rr.registers == [0]  # volatile: the 3-phase contactor after a restart
        client.close()
    finally:
        await second.app.stop()
