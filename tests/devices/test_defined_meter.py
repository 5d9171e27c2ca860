"""DefinedMeter reading the bundled definitions from real servers on loopback.

An SDM630 and an ABB B23 are played by a pymodbus TCP server, a Shelly 3EM by an aiohttp
web server; readings are compared exactly, in chargebrain units.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from chargebrain.core.model import MeterReading
from chargebrain.core.phases import Phases
from chargebrain.devices.defined_meter import DefinedMeter
from chargebrain.devices.errors import DeviceError, ModbusIOError
from chargebrain.devices.meterdef import MeterDefinition, load_definitions
from chargebrain.devices.modbus_client import ModbusTcpClientAdapter
from tests.devices.test_modbus_client import Recorder

DEFS = load_definitions()
SDM630 = DEFS["meter_sdm630"]
ABB = DEFS["meter_abb_b23_b24"]
SHELLY = DEFS["meter_shelly_3em_http_json"]

# One physical situation, as each meter encodes it: L2 exports a little.
EXPECTED_CURRENTS = Phases(10500, -250, 16000)
EXPECTED_VOLTAGES = (230.5, 231.25, 229.75)


# -- servers ----------------------------------------------------------------------------------


def _bits() -> list[SimData]:
    return [SimData(0, values=[False] * 16, datatype=DataType.BITS)]


def device(
    unit: int,
    recorder: Recorder,
    holding: list[SimData] | None = None,
    inputs: list[SimData] | None = None,
) -> SimDevice:
    empty = [SimData(0, values=[0], datatype=DataType.REGISTERS)]
    return SimDevice(
        id=unit,
        simdata=(_bits(), _bits(), holding or empty, inputs or empty),
        action=recorder.hook,
    )


@contextlib.asynccontextmanager
async def modbus_server(devices: list[SimDevice]) -> AsyncIterator[int]:
    server: Any = ModbusTcpServer(devices, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        yield int(server.transport.sockets[0].getsockname()[1])
    finally:
        await server.shutdown()


@contextlib.asynccontextmanager
async def http_server(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def floats(values: dict[int, float], size: int) -> list[int]:
    """Input-register image with IEEE 754 floats, high word first."""
    regs = [0] * size
    for address, value in values.items():
        hi, lo = struct.unpack(">HH", struct.pack(">f", value))
        regs[address], regs[address + 1] = hi, lo
    return regs


def u32(value: int) -> list[int]:
    value &= 0xFFFFFFFF
    return [value >> 16, value & 0xFFFF]


def u64(value: int) -> list[int]:
    return [(value >> s) & 0xFFFF for s in (48, 32, 16, 0)]


# -- SDM630 -----------------------------------------------------------------------------------


def sdm630_registers() -> list[int]:
    return floats(
        {
            0x00: 230.5,
            0x02: 231.25,
            0x04: 229.75,
            0x06: 10.5,
            0x08: 0.25,
            0x0A: 16.0,
            0x0C: 2415.25,
            0x0E: -57.75,
            0x10: 3680.0,
            0x34: 6037.5,
            0x38: 6100.0,
            0x3C: -120.5,
            0x46: 50.0,
            0x48: 12345.5,
            0x4A: 678.25,
        },
        0x50,
    )


async def test_sdm630_reading_in_one_request() -> None:
    recorder = Recorder()
    image = [SimData(0, values=sdm630_registers(), datatype=DataType.REGISTERS)]
    async with (
        modbus_server([device(3, recorder, inputs=image)]) as port,
        DefinedMeter(SDM630, f"127.0.0.1:{port}", unit_id=3) as meter,
    ):
        reading = await meter.read()
    assert reading == MeterReading(
        power_w=6037.5,
        currents=EXPECTED_CURRENTS,
        voltages=EXPECTED_VOLTAGES,
        import_wh=12_345_500.0,
        export_wh=678_250.0,
        model="SDM630",
        is_va=False,
        soc=None,
        extra={
            "power_w_l1": 2415.25,
            "power_w_l2": -57.75,
            "power_w_l3": 3680.0,
            "power_va": 6100.0,
            "power_var": -120.5,
            "frequency": 50.0,
        },
    )
    # FC4, registers 0x00..0x4B in a single request (gaps allowed by the definition).
    assert recorder.requests == [(4, 0, 0x4C)]


# -- ABB B23 ----------------------------------------------------------------------------------


def abb_holding(export: int = 98_765) -> list[SimData]:
    energy = u64(1_234_567) + u64(export)
    block = [0] * 0x30
    for offset, words in {
        0x00: u32(2305),
        0x02: u32(2312),
        0x04: u32(2297),
        0x0C: u32(1050),
        0x0E: u32(25),
        0x10: u32(1600),
        0x14: u32(603_750),
        0x16: u32(241_525),
        0x18: u32(-5_775),
        0x1A: u32(368_000),
    }.items():
        block[offset : offset + len(words)] = words
    block[0x2C] = 5000
    return [
        SimData(0x5000, values=energy, datatype=DataType.REGISTERS),
        SimData(0x5B00, values=block, datatype=DataType.REGISTERS),
    ]


async def test_abb_b23_reading() -> None:
    recorder = Recorder()
    async with (
        modbus_server([device(1, recorder, holding=abb_holding())]) as port,
        DefinedMeter(ABB, f"127.0.0.1:{port}") as meter,
    ):
        reading = await meter.read()
    assert reading == MeterReading(
        power_w=6037.5,
        currents=EXPECTED_CURRENTS,
        # 0.1 V resolution: 231.25 V is reported as 231.2 V.
        voltages=(230.5, 231.2, 229.7),
        import_wh=12_345_670.0,
        export_wh=987_650.0,
        model="ABB B23/B24",
        extra={
            "power_w_l1": 2415.25,
            "power_w_l2": -57.75,
            "power_w_l3": 3680.0,
            "frequency": 50.0,
        },
    )
    assert sorted(recorder.requests) == [(3, 0x5000, 8), (3, 0x5B00, 0x2D)]


async def test_abb_reserved_value_reads_as_zero() -> None:
    recorder = Recorder()
    async with (
        modbus_server([device(1, recorder, holding=abb_holding(export=2**64 - 1))]) as port,
        DefinedMeter(ABB, f"127.0.0.1:{port}") as meter,
    ):
        reading = await meter.read()
    assert reading.export_wh == 0.0
    assert reading.import_wh == 12_345_670.0


# -- Shelly 3EM -------------------------------------------------------------------------------

SHELLY_STATUS: dict[str, Any] = {
    "wifi_sta": {"connected": True, "ssid": "home", "ip": "192.168.1.50", "rssi": -60},
    "mac": "C45BBE6A1B2C",
    "relays": [{"ison": False}],
    "emeters": [
        {
            "power": 2415.25,
            "pf": 0.98,
            "current": 10.5,
            "voltage": 230.5,
            "is_valid": True,
            "total": 4000.5,
            "total_returned": 10.0,
        },
        {
            "power": -57.75,
            "pf": -0.5,
            "current": 0.25,
            "voltage": 231.25,
            "is_valid": True,
            "total": 3000.25,
            "total_returned": 500.5,
        },
        {
            "power": 3680.0,
            "pf": 1.0,
            "current": 16.0,
            "voltage": 229.75,
            "is_valid": True,
            "total": 5000.0,
            "total_returned": 0.0,
        },
    ],
    "total_power": 6037.5,
    "uptime": 12345,
}


def shelly_app(hits: list[str]) -> web.Application:
    async def status(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path}")
        return web.json_response(SHELLY_STATUS)

    app = web.Application()
    app.router.add_get("/status", status)
    return app


async def test_shelly_3em_reading_over_http() -> None:
    hits: list[str] = []
    async with (
        http_server(shelly_app(hits)) as port,
        DefinedMeter(SHELLY, f"http://127.0.0.1:{port}") as meter,
    ):
        reading = await meter.read()
        again = await meter.read()
        texts = meter.texts
    assert reading == MeterReading(
        power_w=6037.5,  # the sum of the per-phase powers
        currents=EXPECTED_CURRENTS,
        voltages=EXPECTED_VOLTAGES,
        import_wh=12_000.75,
        export_wh=510.5,
        model="Shelly 3EM",
        extra={
            "power_w_l1": 2415.25,
            "power_w_l2": -57.75,
            "power_w_l3": 3680.0,
            "import_wh_l1": 4000.5,
            "import_wh_l2": 3000.25,
            "import_wh_l3": 5000.0,
            "export_wh_l1": 10.0,
            "export_wh_l2": 500.5,
            "export_wh_l3": 0.0,
        },
    )
    assert again == reading
    assert texts["serial"] == "C45BBE6A1B2C"
    assert hits == ["GET /status", "GET /status"]  # one request per reading


async def test_shelly_address_without_scheme() -> None:
    hits: list[str] = []
    async with (
        http_server(shelly_app(hits)) as port,
        DefinedMeter(SHELLY, f"127.0.0.1:{port}") as meter,
    ):
        assert (await meter.read()).power_w == 6037.5


# -- meters that do not answer ----------------------------------------------------------------


@pytest.mark.parametrize("definition", [SDM630, SHELLY], ids=["modbus", "http"])
async def test_closed_port_is_a_device_error(definition: MeterDefinition) -> None:
    meter = DefinedMeter(definition, f"127.0.0.1:{closed_port()}", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(DeviceError) as caught:
        await meter.read()
    assert time.monotonic() - started < 1.5
    assert definition.dev_type in str(caught.value)
    await meter.close()


@pytest.mark.parametrize("definition", [SDM630, SHELLY], ids=["modbus", "http"])
async def test_silent_device_times_out(definition: MeterDefinition) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def swallow(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        meter = DefinedMeter(definition, f"127.0.0.1:{port}", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(DeviceError, match=r"no answer within 0\.3 s"):
            await meter.read()
        assert time.monotonic() - started < 1.5
        await meter.close()
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_missing_registers_are_a_modbus_error() -> None:
    recorder = Recorder()
    image = [SimData(0, values=sdm630_registers(), datatype=DataType.REGISTERS)]
    # The ABB definition asks for holding registers this device does not have.
    async with (
        modbus_server([device(3, recorder, inputs=image)]) as port,
        DefinedMeter(ABB, f"127.0.0.1:{port}", unit_id=3) as meter,
    ):
        with pytest.raises(ModbusIOError) as caught:
            await meter.read()
    assert caught.value.exception_code == 2
    assert "meter_abb_b23_b24 at 127.0.0.1" in str(caught.value)


async def test_meters_share_one_adapter() -> None:
    rec_a, rec_b = Recorder(), Recorder()
    image = [SimData(0, values=sdm630_registers(), datatype=DataType.REGISTERS)]
    async with modbus_server(
        [device(1, rec_a, holding=abb_holding()), device(2, rec_b, inputs=image)]
    ) as port:
        adapter = ModbusTcpClientAdapter("127.0.0.1", port, timeout=2.0)
        abb = DefinedMeter(ABB, f"127.0.0.1:{port}", unit_id=1, modbus=adapter)
        sdm = DefinedMeter(SDM630, f"127.0.0.1:{port}", unit_id=2, modbus=adapter)
        a, b = await asyncio.gather(abb.read(), sdm.read())
        await abb.close()
        assert adapter.connected  # a shared adapter is left open
        assert (await sdm.read()).power_w == 6037.5
        await sdm.close()
        await adapter.close()
    assert a.currents == b.currents == EXPECTED_CURRENTS
    assert len(rec_a.requests) == 2 and len(rec_b.requests) == 2
