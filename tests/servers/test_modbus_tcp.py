"""The controller over Modbus TCP, with a real pymodbus client on a real socket."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient

from tests.conftest import Running, observe_only, wait_for


@pytest.fixture
async def clients(running: Running) -> AsyncIterator[list[AsyncModbusTcpClient]]:
    await observe_only(running)
    out = []
    for i in range(3):
        c = AsyncModbusTcpClient("127.0.0.1", port=running.modbus_port + i, timeout=2, retries=0)
        assert await c.connect()
        out.append(c)
    yield out
    for c in out:
        c.close()


async def test_fc3_identity_on_each_port(running: Running, clients) -> None:  # type: ignore[no-untyped-def]
    for unit, client in zip((1, 2, 3), clients, strict=True):
        rr = await client.read_holding_registers(8000, count=8, device_id=unit)
        assert not rr.isError()
        assert rr.registers[:8] == [0xCF05, 0, 1, 257, 256, 0, 256, 0]


async def test_fc6_and_fc16_round_trip(running: Running, clients) -> None:  # type: ignore[no-untyped-def]
    evse = clients[0]
    rr = await evse.write_register(8093, 100, device_id=1)
    assert not rr.isError()
    rr = await evse.read_holding_registers(8093, count=2, device_id=1)
    assert rr.registers == [100, 1]
    meter = clients[1]
    rr = await meter.write_registers(8044, [7, 231, 232, 233], device_id=2)
    assert not rr.isError()
    rr = await meter.read_holding_registers(8044, count=4, device_id=2)
    assert rr.registers == [7, 231, 232, 233]
    # The HTTP view sees the same bank.
    assert running.app.powerbrain.banks["meter1"].get("voltage_l3") == 233


async def test_exceptions(running: Running, clients) -> None:  # type: ignore[no-untyped-def]
    evse = clients[0]
    bank = running.app.powerbrain.banks["evse"]
    before = bank.snapshot()
    rr = await evse.read_holding_registers(9000, count=1, device_id=1)
    assert rr.isError() and rr.exception_code == 2
    rr = await evse.read_holding_registers(8046, count=4, device_id=1)  # runs into the gap 8048
    assert rr.isError() and rr.exception_code == 2
    rr = await evse.write_register(8002, 7, device_id=1)  # read-only
    assert rr.isError() and rr.exception_code == 2
    rr = await evse.write_register(8093, 700, device_id=1)  # 70 A
    assert rr.isError() and rr.exception_code == 3
    rr = await evse.write_registers(8093, [100, 5], device_id=1)  # second value invalid
    assert rr.isError() and rr.exception_code == 3
    assert bank.snapshot() == before


async def test_unknown_unit_is_answered(running: Running, clients) -> None:  # type: ignore[no-untyped-def]
    rr = await clients[0].read_holding_registers(8000, count=2, device_id=77)
    assert rr.isError() and rr.exception_code == 0x0B


async def test_evcc_sequence(running: Running, clients) -> None:  # type: ignore[no-untyped-def]
    """What evcc's cFos driver does: probes, status, enable, current, phases, wake-up."""
    evse = clients[0]
    hw = running.app.hardware
    from chargebrain.powerbrain.hardware import SimCar

    async def read(addr: int, count: int) -> list[int]:
        rr = await evse.read_holding_registers(addr, count=count, device_id=1)
        assert not rr.isError(), rr
        return list(rr.registers)

    assert (await read(8112, 1))[0] != 0  # has meter
    assert (await read(8057, 1))[0] != 0  # per-phase currents
    assert (await read(8113, 1))[0] & 0xFF00 is not None
    assert (await read(8092, 1))[0] & 0xFF == 0  # A: no car
    hw.plug(SimCar(max_ma=32_000, phases=3))
    await wait_for(lambda: running.app.powerbrain.banks["evse"].get("charge_pilot_state") == 2)
    for addr, value in ((8094, 1), (8093, 160), (8087, 0)):
        assert not (await evse.write_register(addr, value, device_id=1)).isError()
    await wait_for(lambda: running.app.powerbrain.banks["evse"].get("charging_current") == 160)
    assert (await read(8092, 1))[0] & 0xFF == 2  # C
    assert (await read(8094, 1))[0] & 0xFF == 1
    power = struct.unpack(">I", struct.pack(">HH", *await read(8062, 2)))[0]
    assert 10_500 <= power <= 11_500  # 3 x 16 A x 230 V
    currents = await read(8064, 6)
    amps = [struct.unpack(">I", struct.pack(">HH", *currents[i : i + 2]))[0] for i in (0, 2, 4)]
    assert amps == [160, 160, 160]
    energy = struct.unpack(">Q", struct.pack(">HHHH", *await read(8058, 4)))[0]
    assert energy >= 0
    assert (await read(8096, 15)) == [0] * 15  # no RFID yet: empty
    # Wake-up: CP off for 5 s.
    assert not (await evse.write_register(8086, 5, device_id=1)).isError()
    remaining = (await read(8086, 1))[0]
    assert 1 <= remaining <= 5
    await wait_for(lambda: running.app.powerbrain.banks["evse"].get("charging_current") == 0)


async def test_many_clients_at_once(running: Running) -> None:
    async def one(i: int) -> int:
        c = AsyncModbusTcpClient("127.0.0.1", port=running.modbus_port + i % 3, timeout=3,
                                 retries=0)
        assert await c.connect()
        try:
            n = 0
            for _ in range(20):
                rr = await c.read_holding_registers(8000, count=10, device_id=1 + i % 3)
                assert not rr.isError()
                n += 1
            return n
        finally:
            c.close()

    results = await asyncio.gather(*(one(i) for i in range(12)))
    assert sum(results) == 240


async def test_rfid_read_by_controller(running: Running, clients) -> None:  # type: ignore[no-untyped-def]
    running.app.hardware.present_card("04A1B2C3D4")
    bank = running.app.powerbrain.banks["evse"]
    await wait_for(lambda: bank.get("detected_rfids") == 1)
    rr = await clients[0].read_holding_registers(8096, count=15, device_id=1)
    raw = b"".join(struct.pack(">H", w) for w in rr.registers)
    assert raw.lstrip(b"\0") == b"04A1B2C3D4"  # no NULs after the id
    assert bank.get_str("last_rfid") == "04A1B2C3D4"
