"""DefinedMeter details: decoding, request planning, addresses, signs, caching, HTTP quirks."""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from chargebrain.clock import VirtualClock
from chargebrain.core.phases import Phases
from chargebrain.devices.defined_meter import (
    DefinedMeter,
    decode_registers,
    parse_http_base,
    parse_modbus_address,
    plan_register_reads,
    scale,
)
from chargebrain.devices.errors import DeviceError
from chargebrain.devices.meterdef import ValueType, WordOrder, parse_definition
from tests.devices.test_defined_meter import http_server
from tests.devices.test_modbus_client import Recorder

# -- pure functions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spans", "max_registers", "gaps", "expected"),
    [
        ([], 125, False, []),
        ([(0, 2), (2, 2), (4, 1)], 125, False, [(0, 5)]),
        ([(4, 1), (0, 2), (2, 2)], 125, False, [(0, 5)]),  # order does not matter
        ([(0, 2), (3, 2)], 125, False, [(0, 2), (3, 2)]),  # a gap splits without allow_gaps
        ([(0, 2), (3, 2)], 125, True, [(0, 5)]),
        ([(0, 2), (1, 2), (0, 1)], 125, False, [(0, 3)]),  # overlaps and duplicates
        ([(0, 2), (2, 2), (4, 2)], 4, False, [(0, 4), (4, 2)]),  # the size limit splits
        ([(0, 2), (100, 2), (200, 2)], 125, True, [(0, 102), (200, 2)]),
        ([(0, 4), (1, 1)], 125, False, [(0, 4)]),  # contained
    ],
)
def test_plan_register_reads(
    spans: list[tuple[int, int]],
    max_registers: int,
    gaps: bool,
    expected: list[tuple[int, int]],
) -> None:
    assert plan_register_reads(spans, max_registers, gaps) == expected


def f32(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


@pytest.mark.parametrize(
    ("words", "vtype", "order", "raw", "value"),
    [
        ([0xFFFE], ValueType.INT16, WordOrder.HIGH_FIRST, 0xFFFE, -2.0),
        ([0xFFFE], ValueType.UINT16, WordOrder.HIGH_FIRST, 0xFFFE, 65534.0),
        ([0x0001, 0x0002], ValueType.UINT32, WordOrder.HIGH_FIRST, 0x10002, 65538.0),
        ([0x0002, 0x0001], ValueType.UINT32, WordOrder.LOW_FIRST, 0x10002, 65538.0),
        ([0xFFFF, 0xFFFF], ValueType.INT32, WordOrder.HIGH_FIRST, 0xFFFFFFFF, -1.0),
        ([0x7FFF, 0xFFFF], ValueType.INT32, WordOrder.HIGH_FIRST, 0x7FFFFFFF, 2147483647.0),
        (
            [0xFFFF, 0xFFFF, 0xFFFF, 0xFF00],
            ValueType.INT64,
            WordOrder.HIGH_FIRST,
            0xFFFFFFFFFFFFFF00,
            -256.0,
        ),
        ([0, 0, 0x0001, 0x0000], ValueType.UINT64, WordOrder.HIGH_FIRST, 0x10000, 65536.0),
        ([0x0000, 0x0001, 0, 0], ValueType.UINT64, WordOrder.LOW_FIRST, 0x10000, 65536.0),
        (f32(-57.75), ValueType.FLOAT, WordOrder.HIGH_FIRST, 0xC2670000, -57.75),
        (list(reversed(f32(230.5))), ValueType.FLOAT, WordOrder.LOW_FIRST, 0x43668000, 230.5),
        ([0x4142, 0x4300, 0x0000], ValueType.STRING, WordOrder.HIGH_FIRST, 0, "ABC"),
    ],
)
def test_decode_registers(
    words: list[int], vtype: ValueType, order: WordOrder, raw: int, value: float | str
) -> None:
    assert decode_registers(words, vtype, order) == (raw, value)


def test_scale_keeps_decimal_resolutions_exact() -> None:
    assert scale(2305, 0.1) == 230.5
    assert scale(-5775, 0.01) == -57.75
    assert scale(1.5, 1000) == 1500.0
    assert scale(4, -0.5) == -2.0
    assert scale(3, 0.3) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.168.1.5", ("192.168.1.5", 502)),
        ("192.168.1.5:1502", ("192.168.1.5", 1502)),
        (" meter.local:503 ", ("meter.local", 503)),
        ("tcp://10.0.0.1:5020", ("10.0.0.1", 5020)),
        ("[fe80::1]:1502", ("fe80::1", 1502)),
        ("[::1]", ("::1", 502)),
        ("fe80::1", ("fe80::1", 502)),
    ],
)
def test_parse_modbus_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_modbus_address(address) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("COM3", "names a serial line"),
        ("com4,9600,8,N,1", "names a serial line"),
        ("/dev/ttyUSB0", "names a serial line"),
        ("ttyS1", "names a serial line"),
        ("", "empty"),
        ("host:0", "port must be"),
        ("host:http", "port must be"),
        ("[::1", "missing ']'"),
        ("a/b:502", "bad host"),
    ],
)
def test_bad_modbus_addresses(address: str, message: str) -> None:
    with pytest.raises(DeviceError, match=message):
        parse_modbus_address(address)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.168.1.50", "http://192.168.1.50"),
        ("192.168.1.50:8080", "http://192.168.1.50:8080"),
        ("http://shelly.local/", "http://shelly.local"),
        ("https://x:8443/api/", "https://x:8443/api"),
    ],
)
def test_parse_http_base(address: str, expected: str) -> None:
    assert parse_http_base(address) == expected


@pytest.mark.parametrize("address", ["", "ftp://x", "http://", "http://x:99999"])
def test_bad_http_addresses(address: str) -> None:
    with pytest.raises(DeviceError):
        parse_http_base(address)


def test_driver_takes_serial_lines_and_refuses_mqtt_and_bad_units() -> None:
    modbus = parse_definition('{"rtype": 0, "dev_type": "m", "p": {"address": 0}}')
    assert repr(DefinedMeter(modbus, "COM1,19200"))  # a serial line: opened when read
    with pytest.raises(DeviceError, match="serial settings"):
        DefinedMeter(modbus, "/dev/ttyUSB0,9600,9,N,1")
    with pytest.raises(DeviceError, match="unit id"):
        DefinedMeter(modbus, "127.0.0.1", unit_id=300)
    mqtt = parse_definition('{"rtype": 2, "dev_type": "q", "p": {"address": "tele/x"}}')
    with pytest.raises(DeviceError, match="MQTT"):
        DefinedMeter(mqtt, "127.0.0.1")


# -- Modbus behaviour -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def holding_server(blocks: dict[int, list[int]], recorder: Recorder) -> AsyncIterator[int]:
    """Unit 1 with holding registers only where `blocks` puts them (elsewhere: exception 2)."""
    bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
    holding = [SimData(a, values=v, datatype=DataType.REGISTERS) for a, v in blocks.items()]
    dev = SimDevice(
        id=1,
        simdata=(bits, list(bits), holding, [SimData(0, values=[0], datatype=DataType.REGISTERS)]),
        action=recorder.hook,
    )
    server: Any = ModbusTcpServer(dev, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        yield int(server.transport.sockets[0].getsockname()[1])
    finally:
        await server.shutdown()


MIXED = """{
  "rtype": 0, "dev_type": "mixed", "name": "Mixed", "modbus_read": 3,
  %s
  "type_designation": {"address": 20, "type": "string", "length": 3, "once": true},
  "firmware_version": {"address": 24, "type": "uint16", "length": 2, "once": true},
  "current_l1": {"address": 0, "type": "uint16", "resolution": 10},
  "current_l2": {"address": 1, "type": "int16", "resolution": 10},
  "current_l3": {"address": 2, "type": "uint16", "resolution": 10},
  "power_w_l1": {"address": 4, "type": "int32", "order": "lh"},
  "power_w_l2": {"address": 6, "type": "int32", "order": "lh"},
  "power_w_l3": {"address": 8, "type": "float", "reserved": [0x7FC00000]},
  "power_w": {"expr": "power_w_l1 + power_w_l2 + offset"},
  "offset": {"fixed": 0.5},
  "doubled": {"expr": "power_w * 2", "resolution": 0.5},
  "import_wh": {"address": 12, "type": "uint32", "resolution": 100},
  "*temperature": {"address": 16, "type": "int16", "resolution": 0.1},
  "CM.spare": {"address": 17, "type": "uint16", "reserved": [0xFFFF]},
  "inputs": [{"address": 18, "count": 3}],
}"""


def lh32(value: int) -> list[int]:
    value &= 0xFFFFFFFF
    return [value & 0xFFFF, value >> 16]


def mixed_blocks() -> dict[int, list[int]]:
    return {
        # currents: L1 5 A, L2 signed -2 A (already negative), L3 1 A (unsigned)
        0: [500, (-20) & 0xFFFF, 100],
        4: lh32(1150) + lh32(-460) + [0x7FC0, 0x0000],  # L3 power: NaN, reserved
        12: [0x0001, 0x0000],  # 65536 * 100 Wh
        16: [(-55) & 0xFFFF, 0xFFFF, 0b101],
        20: [0x5854, 0x2D31, 0x0000, 0, 0x0103],  # "XT-1", version 1.3
    }


async def test_mixed_types_signs_expressions_and_inputs() -> None:
    recorder = Recorder()
    definition = parse_definition(MIXED % "")
    async with (
        holding_server(mixed_blocks(), recorder) as port,
        DefinedMeter(definition, f"127.0.0.1:{port}") as meter,
    ):
        first = await meter.read()
        texts = meter.texts
        second = await meter.read()
    assert first.power_w == 1150 - 460 + 0.5
    # L1 positive power keeps its sign; L2 was already signed; L3 power reserved -> 0.
    assert first.currents == Phases(5000, -200, 1000)
    assert first.import_wh == 6_553_600.0
    assert first.model == "XT-1"
    assert first.extra == {
        "power_w_l1": 1150.0,
        "power_w_l2": -460.0,
        "power_w_l3": 0.0,
        "offset": 0.5,
        "doubled": 690.5,
        "*temperature": -5.5,
        "CM.spare": 0.0,
        "input1": 1.0,
        "input2": 0.0,
        "input3": 1.0,
    }
    assert texts == {"type_designation": "XT-1", "firmware_version": "1.3"}
    assert second == first
    # Without gaps: 0..2, 4..9, 12..13, 16..18, then 20..22 and 24 only on the first reading.
    first_requests = [(3, 0, 3), (3, 4, 6), (3, 12, 2), (3, 16, 3), (3, 20, 3), (3, 24, 1)]
    assert recorder.requests == first_requests + first_requests[:4]


async def test_allow_gaps_and_max_registers() -> None:
    recorder = Recorder()
    blocks = {0: [500, (-20) & 0xFFFF, 100, 0] + lh32(1150) + lh32(-460) + [0x7FC0, 0] + [0] * 15}
    definition = parse_definition(
        MIXED % '"modbus_allow_gaps": true, "modbus_read_max_registers": 10,'
    )
    async with (
        holding_server(blocks, recorder) as port,
        DefinedMeter(definition, f"127.0.0.1:{port}") as meter,
    ):
        reading = await meter.read()
    assert recorder.requests == [(3, 0, 10), (3, 12, 7), (3, 20, 5)]
    assert reading.currents == Phases(5000, -200, 1000)


async def test_upd_delay_and_delay_accumulated_with_a_virtual_clock() -> None:
    recorder = Recorder()
    clock = VirtualClock()
    definition = parse_definition(
        """{"rtype": 0, "dev_type": "slow", "upd_delay": 1000, "delay_accumulated": true,
        "power_w": {"address": 0, "type": "int16"},
        "import_wh": {"address": 10, "type": "uint16"}}"""
    )
    blocks = {0: [100], 10: [7]}
    async with (
        holding_server(blocks, recorder) as port,
        DefinedMeter(definition, f"127.0.0.1:{port}", clock=clock) as meter,
    ):
        first = await meter.read()
        clock.advance(0.5)
        assert await meter.read() is first  # within upd_delay: the last reading
        clock.advance(0.6)
        second = await meter.read()  # power again, energy kept (less than 3 s)
        clock.advance(2.0)
        third = await meter.read()  # 3.1 s after the first: energy again
    assert first.import_wh == second.import_wh == third.import_wh == 7.0
    assert recorder.requests == [(3, 0, 1), (3, 10, 1), (3, 0, 1), (3, 0, 1), (3, 10, 1)]


async def test_power_va_is_used_when_no_active_power() -> None:
    recorder = Recorder()
    definition = parse_definition(
        '{"rtype": 0, "dev_type": "va", "power_va": {"address": 0, "type": "uint16"}}'
    )
    async with (
        holding_server({0: [1234]}, recorder) as port,
        DefinedMeter(definition, f"127.0.0.1:{port}") as meter,
    ):
        reading = await meter.read()
    assert reading.power_w == 1234.0 and reading.is_va
    assert reading.voltages == (230.0, 230.0, 230.0)  # defaults when the meter has none


async def test_global_reserved_and_nan() -> None:
    recorder = Recorder()
    definition = parse_definition(
        """{"rtype": 0, "dev_type": "r", "reserved": [0x8000],
        "power_w": {"address": 0, "type": "int16"},
        "soc": {"address": 1, "type": "float"},
        "export_wh": {"address": 3, "type": "int16", "reserved": []}}"""
    )
    nan = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    async with (
        holding_server({0: [0x8000, *nan, 0x8000]}, recorder) as port,
        DefinedMeter(definition, f"127.0.0.1:{port}") as meter,
    ):
        reading = await meter.read()
    assert reading.power_w == 0.0  # globally reserved
    assert reading.soc == 0.0  # not a number
    assert reading.export_wh == -32768.0  # the variable's own (empty) list wins


# -- HTTP behaviour ---------------------------------------------------------------------------


def web_app(hits: list[str]) -> web.Application:
    async def text(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path}")
        return web.Response(text="Power: 1234.5 W\nEnergy=98765 Wh\nstate=ok\n")

    async def data(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path}")
        return web.json_response(
            {
                "meters": [
                    {"id": "a", "phase": 1, "p": 100, "i": "2.5", "ok": True},
                    {"id": "b", "phase": 2, "p": -40, "i": 1.0, "ok": False},
                ],
                "io": 6,
                "ver": 0x0205,
                "missing": None,
                "label": "Z",
            }
        )

    async def number(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path}")
        return web.Response(text=" 42.5 ")

    app = web.Application()
    app.router.add_get("/text", text)
    app.router.add_post("/api/data", data)
    app.router.add_get("/n", number)
    return app


HTTP_DEF = """{
  "rtype": 1, "dev_type": "web",
  "power_w": {"address": "/text", "regex": "Power: ([-\\\\d.]+) W"},
  "import_wh": {"address": "GET /text", "regex": "Energy=(\\\\d+)", "resolution": 1},
  "state": {"address": "/text", "regex": "state=\\\\w+", "type": "string"},
  "power_w_l1": {"address": "POST /api/data", "query": "meters[{\\"phase\\": 1}].p"},
  "power_w_l2": {"address": "POST /api/data", "query": "meters[{\\"phase\\": 2}].p"},
  "current_l1": {"address": "POST /api/data", "query": "meters[0].i", "resolution": 1000},
  "current_l2": {"address": "POST /api/data", "query": "meters[1].i", "resolution": 1000},
  "ok_b": {"address": "POST /api/data", "query": "meters[1].ok"},
  "version": {"address": "POST /api/data", "query": "ver", "length": 2},
  "label": {"address": "POST /api/data", "query": "label", "type": "string"},
  "gone": {"address": "POST /api/data", "query": "missing"},
  "plain": {"address": "/n"},
  "inputs": [{"address": "POST /api/data", "query": "io", "count": 3}],
}"""


async def test_http_regex_query_and_inputs() -> None:
    hits: list[str] = []
    definition = parse_definition(HTTP_DEF)
    async with (
        http_server(web_app(hits)) as port,
        DefinedMeter(definition, f"http://127.0.0.1:{port}/") as meter,
    ):
        reading = await meter.read()
        texts = meter.texts
    assert reading.power_w == 1234.5
    assert reading.import_wh == 98765.0
    assert reading.currents == Phases(2500, -1000, 0)  # L2: the power's sign
    assert reading.extra == {
        "power_w_l1": 100.0,
        "power_w_l2": -40.0,
        "ok_b": 0.0,
        "gone": 0.0,
        "plain": 42.5,
        "input1": 0.0,
        "input2": 1.0,
        "input3": 1.0,
    }
    assert texts == {"state": "state=ok", "version": "2.5", "label": "Z"}
    assert sorted(hits) == ["GET /n", "GET /text", "POST /api/data"]  # each path once


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ('{"address": "/nowhere"}', "HTTP status 404"),
        ('{"address": "/text", "query": "a"}', "answer is not JSON"),
        ('{"address": "POST /api/data", "query": "meters[5].p"}', "no element [5]"),
        ('{"address": "POST /api/data", "query": "meters[0]"}', "selects dict, not a number"),
        ('{"address": "POST /api/data", "query": "label"}', "'Z' is not a number"),
        ('{"address": "/text", "regex": "Voltage=(\\\\d+)"}', "does not match"),
        ('{"address": "/text"}', "is not a number"),
    ],
)
async def test_http_errors_are_device_errors(variable: str, message: str) -> None:
    definition = parse_definition(
        '{"rtype": 1, "dev_type": "bad", "x": VAR}'.replace("VAR", variable)
    )
    async with (
        http_server(web_app([])) as port,
        DefinedMeter(definition, f"127.0.0.1:{port}") as meter,
    ):
        with pytest.raises(DeviceError) as caught:
            await meter.read()
    assert message in str(caught.value)
    assert "meter_bad at 127.0.0.1" in str(caught.value)


FORMULA_DEF = """{
  "rtype": 1, "dev_type": "formulas",
  "power_w_l1": {"address": "POST /api/data", "query": "meters[{\\"phase\\": 1}].p"},
  "power_w_l2": {"address": "POST /api/data", "query": "meters[{\\"phase\\": 2}].p"},
  "CM.io": {"address": "POST /api/data", "query": "io"},
  // The whole formula language, over this definition's own variables.
  "power_w": {"expr": "max(Power_W_L1, 0) + (power_w_l2 < 0 ? 0 : power_w_l2)"},
  "export_w": {"expr": "abs(min(power_w_l1 + power_w_l2, 0)) + 0 * power_w"},
  "io_bit1": {"expr": "(CM.io & 2) != 0"},
  "ratio": {"expr": "power_w_l1 / (power_w_l2 - power_w_l2)"},
  "has_io": {"expr": "exists(cm.io) + 2^3"},
}"""


async def test_expressions_are_formulas_over_the_definitions_variables() -> None:
    definition = parse_definition(FORMULA_DEF)
    # Dependencies first: export_w reads power_w.
    assert definition.expr_order.index("power_w") < definition.expr_order.index("export_w")
    async with (
        http_server(web_app([])) as port,
        DefinedMeter(definition, f"127.0.0.1:{port}") as meter,
    ):
        reading = await meter.read()
    assert reading.power_w == 100.0
    assert reading.extra["export_w"] == 0.0
    assert reading.extra["io_bit1"] == 1.0  # io = 6
    assert reading.extra["ratio"] == 0.0  # a zero divisor gives 0, as in every formula
    assert reading.extra["has_io"] == 9.0
