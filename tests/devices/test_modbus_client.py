"""ModbusTcpClientAdapter against a real pymodbus TCP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from chargebrain.devices.errors import DeviceError, ModbusIOError
from chargebrain.devices.modbus_client import ModbusTcpClientAdapter

HOLDING = list(range(100, 120))  # registers 0..19
INPUT = list(range(500, 510))  # registers 0..9


class Recorder:
    """Server-side hook: records requests, can slow them down or fail them."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, int, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        self.fail_with: ExcCodes | None = None

    async def hook(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests.append((function_code, address, count))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return self.fail_with


def make_device(unit: int, recorder: Recorder) -> SimDevice:
    bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
    return SimDevice(
        id=unit,
        simdata=(
            bits,
            list(bits),
            [SimData(0, values=list(HOLDING), datatype=DataType.REGISTERS)],
            [SimData(0, values=list(INPUT), datatype=DataType.REGISTERS)],
        ),
        action=recorder.hook,
    )


@contextlib.asynccontextmanager
async def modbus_server(device: SimDevice, port: int = 0) -> AsyncIterator[int]:
    server: Any = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield int(server.transport.sockets[0].getsockname()[1])
    finally:
        await server.shutdown()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def server_port(recorder: Recorder) -> AsyncIterator[int]:
    async with modbus_server(make_device(7, recorder)) as port:
        yield port


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_reads_holding_and_input_registers(server_port: int, recorder: Recorder) -> None:
    async with ModbusTcpClientAdapter("127.0.0.1", server_port, timeout=2.0) as client:
        assert await client.read_holding(7, 2, 3) == [102, 103, 104]
        assert await client.read_input(7, 0, 10) == INPUT
        assert await client.read(7, 5, 1, function_code=3) == [105]
        assert client.connected
    assert not client.connected
    assert recorder.requests == [(3, 2, 3), (4, 0, 10), (3, 5, 1)]


async def test_writes_single_and_multiple_registers(server_port: int) -> None:
    async with ModbusTcpClientAdapter("127.0.0.1", server_port) as client:
        await client.write_register(7, 1, 4242)
        await client.write_registers(7, 10, [1, 2, 0xFFFF])
        assert await client.read_holding(7, 0, 3) == [100, 4242, 102]
        assert await client.read_holding(7, 10, 3) == [1, 2, 0xFFFF]


async def test_reads_and_writes_coils_and_reads_discrete_inputs(server_port: int) -> None:
    async with ModbusTcpClientAdapter("127.0.0.1", server_port) as client:
        await client.write_coil(7, 3, True)
        await client.write_coil(7, 12, True)
        assert await client.read(7, 0, 5, function_code=1) == [0, 0, 0, 1, 0]
        assert await client.read(7, 10, 4, function_code=1) == [0, 0, 1, 0]
        await client.write_coil(7, 3, False)
        assert await client.read(7, 3, 1, function_code=1) == [0]
        assert await client.read(7, 0, 9, function_code=2) == [0] * 9


async def test_an_answer_from_another_unit_is_refused() -> None:
    async def other_unit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readexactly(12)  # MBAP header and an FC3 request
        tid, unit = request[0:2], 9
        writer.write(tid + bytes([0, 0, 0, 5, unit, 3, 2, 0, 42]))  # one register: 42
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(other_unit, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = ModbusTcpClientAdapter("127.0.0.1", port, timeout=2.0)
        with pytest.raises(ModbusIOError, match="unit 7 but unit 9 answered"):
            await client.read_holding(7, 0, 1)
        assert not client.connected  # dropped: the stream can no longer be trusted
        await client.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_exception_response_is_a_modbus_io_error(server_port: int) -> None:
    async with ModbusTcpClientAdapter("127.0.0.1", server_port) as client:
        with pytest.raises(ModbusIOError) as caught:
            await client.read_holding(7, 18, 5)  # runs past the last register (19)
        assert caught.value.exception_code == 2
        assert "illegal data address" in str(caught.value)
        assert f"127.0.0.1:{server_port}" in str(caught.value)
        assert isinstance(caught.value, DeviceError)
        # An exception response is a valid answer: the connection stays usable.
        assert await client.read_holding(7, 0, 1) == [100]


async def test_device_failure_code_is_reported(server_port: int, recorder: Recorder) -> None:
    recorder.fail_with = ExcCodes.DEVICE_BUSY
    async with ModbusTcpClientAdapter("127.0.0.1", server_port) as client:
        with pytest.raises(ModbusIOError, match=r"exception 6 \(server device busy\)"):
            await client.read_input(7, 0, 2)


async def test_concurrent_calls_do_not_interleave(server_port: int, recorder: Recorder) -> None:
    recorder.delay = 0.02
    async with ModbusTcpClientAdapter("127.0.0.1", server_port, timeout=5.0) as client:
        results = await asyncio.gather(
            *(client.read_holding(7, i, 2) for i in range(10)),
            *(client.read_input(7, i, 1) for i in range(5)),
            client.write_register(7, 19, 77),
        )
    assert results[:10] == [[100 + i, 101 + i] for i in range(10)]
    assert results[10:15] == [[500 + i] for i in range(5)]
    assert recorder.max_in_flight == 1
    # Requests reach the device one at a time, in the order they were made (the server
    # passes a write through its hook twice: check, then store).
    reads = [r for r in recorder.requests if r[0] in (3, 4)]
    assert reads == [(3, i, 2) for i in range(10)] + [(4, i, 1) for i in range(5)]
    assert {r for r in recorder.requests if r[0] == 6} == {(6, 19, 1)}


async def test_closed_port_raises_quickly() -> None:
    client = ModbusTcpClientAdapter("127.0.0.1", closed_port(), timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ModbusIOError, match="cannot connect"):
        await client.read_holding(1, 0, 1)
    assert time.monotonic() - started < 1.0
    await client.close()


async def test_silent_server_times_out() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def swallow(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # accept, read nothing, answer nothing

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = ModbusTcpClientAdapter("127.0.0.1", port, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ModbusIOError, match=r"no answer within 0\.3 s"):
            await client.read_holding(1, 0, 1)
        assert 0.25 <= time.monotonic() - started < 1.5
        assert not client.connected  # dropped so a late answer cannot be misread
        # A per-call timeout overrides the default.
        started = time.monotonic()
        with pytest.raises(ModbusIOError, match=r"no answer within 0\.1 s"):
            await client.read_holding(1, 0, 1, timeout=0.1)
        assert time.monotonic() - started < 0.3 + 0.5
        await client.close()
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_connection_closed_by_peer_fails_before_the_timeout() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(12)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = ModbusTcpClientAdapter("127.0.0.1", port, timeout=5.0)
        started = time.monotonic()
        with pytest.raises(ModbusIOError, match="connection closed"):
            await client.read_holding(1, 0, 1)
        assert time.monotonic() - started < 2.0
        await client.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_reconnects_after_the_server_restarts(recorder: Recorder) -> None:
    async with modbus_server(make_device(7, recorder)) as port:
        client = ModbusTcpClientAdapter("127.0.0.1", port, timeout=1.0)
        assert await client.read_holding(7, 0, 1) == [100]
    with pytest.raises(ModbusIOError):
        await client.read_holding(7, 0, 1)
    async with modbus_server(make_device(7, recorder), port=port):
        assert await client.read_holding(7, 1, 1) == [101]
    await client.close()


async def test_explicit_connect_and_bad_arguments(server_port: int) -> None:
    client = ModbusTcpClientAdapter("127.0.0.1", server_port)
    await client.connect()
    assert client.connected
    with pytest.raises(ValueError, match="count"):
        await client.read_holding(7, 0, 126)
    with pytest.raises(ValueError, match="unit id"):
        await client.read_holding(256, 0, 1)
    with pytest.raises(ValueError, match="value"):
        await client.write_register(7, 0, 70000)
    with pytest.raises(ValueError, match="function code"):
        await client.read(7, 0, 1, function_code=5)
    await client.close()
    with pytest.raises(ModbusIOError, match=r"no connection|cannot connect"):
        await ModbusTcpClientAdapter("127.0.0.1", closed_port(), timeout=0.5).connect()
