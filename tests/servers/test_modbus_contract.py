"""The Modbus TCP server keeps to the protocol on raw sockets: only FC 3, 6 and 16,
exceptions where the protocol says, frames sent together answered in order, connections
that idle or leave a frame unfinished closed, and a bounded number of them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient

from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.servers.modbus_tcp import ConnectionLimits, ModbusTcpServers, PortInUseError
from tests.conftest import free_ports, wait_for

Frame = tuple[int, int, bytes]  # transaction id, unit id, PDU


def frame(tid: int, unit: int, pdu: bytes, protocol: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1, unit) + pdu


def fc3(address: int, count: int) -> bytes:
    return struct.pack(">BHH", 3, address, count)


def fc6(address: int, value: int) -> bytes:
    return struct.pack(">BHH", 6, address, value)


def fc16(address: int, values: list[int], count: int | None = None) -> bytes:
    n = len(values) if count is None else count
    return struct.pack(f">BHHB{len(values)}H", 16, address, n, 2 * len(values), *values)


async def read_frame(reader: asyncio.StreamReader, timeout: float = 5.0) -> Frame:
    header = await asyncio.wait_for(reader.readexactly(7), timeout)
    tid, protocol, length, unit = struct.unpack(">HHHB", header)
    assert protocol == 0
    return tid, unit, await asyncio.wait_for(reader.readexactly(length - 1), timeout)


async def closed_by_server(reader: asyncio.StreamReader, within: float = 15.0) -> bool:
    """True once the server closed the connection (EOF or reset), within a generous bound."""
    try:
        data = await asyncio.wait_for(reader.read(1024), within)
    except (ConnectionError, OSError):
        return True
    except TimeoutError:
        return False
    return data == b""


async def start_servers(brain: PowerBrain, limits: ConnectionLimits | None = None,
                        host: str = "127.0.0.1", **kwargs: object) -> ModbusTcpServers:
    for _ in range(5):
        servers = ModbusTcpServers([brain.banks["evse"]], host, free_ports(1),
                                   limits=limits, **kwargs)  # type: ignore[arg-type]
        try:
            await servers.start()
        except PortInUseError:
            continue
        return servers
    raise RuntimeError("no free port")


@pytest.fixture
def brain() -> PowerBrain:
    brain = PowerBrain(store=None)
    brain.start()
    return brain


@pytest.fixture
async def server(brain: PowerBrain) -> AsyncIterator[ModbusTcpServers]:
    servers = await start_servers(brain, ConnectionLimits(
        idle_timeout_s=0.5, frame_timeout_s=0.3, max_connections=8))
    yield servers
    await servers.stop()


@contextlib.asynccontextmanager
async def connection(port: int, host: str = "127.0.0.1"
                     ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_only_fc_3_6_16_are_answered_normally(server: ModbusTcpServers) -> None:
    valid = {3: fc3(8092, 2), 6: fc6(8094, 1), 16: fc16(8093, [100, 1])}
    async with connection(server.ports[0]) as (reader, writer):
        for fc in range(1, 128):
            pdu = valid.get(fc, bytes([fc, 0x1F, 0x40, 0x00, 0x01]))
            writer.write(frame(fc, 1, pdu))
            tid, unit, answer = await read_frame(reader)
            assert (tid, unit) == (fc, 1)
            if fc in valid:
                assert answer[0] == fc, answer.hex()
            else:
                assert answer == bytes([0x80 | fc, 0x01]), (fc, answer.hex())
        # Diagnostics (8) and encapsulated transport (43) as their own requests would be.
        for pdu in (b"\x08\x00\x00\x12\x34", b"\x2b\x0e\x01\x00", b"\x11", b"\x07"):
            writer.write(frame(1, 1, pdu))
            assert (await read_frame(reader))[2] == bytes([0x80 | pdu[0], 0x01])


async def test_counts_outside_the_protocol_are_illegal_values(
        server: ModbusTcpServers) -> None:
    cases = [
        fc3(8000, 0), fc3(8000, 126), fc3(8000, 0xFFFF),
        fc16(8093, [], count=0),
        struct.pack(">BHHB", 16, 8000, 124, 248) + b"\0" * 248,  # longer than a frame may be
        struct.pack(">BHHB", 16, 8000, 124, 0),
        struct.pack(">BHHBH", 16, 8093, 1, 3, 100),  # byte count does not match the count
        struct.pack(">BHHBHH", 16, 8093, 1, 2, 100, 1),  # more data than announced
        fc3(8000, 2) + b"\0",  # a PDU of the wrong length
        b"\x03\x1f\x40",
        b"\x06\x1f\x9d",
    ]
    async with connection(server.ports[0]) as (reader, writer):
        for i, pdu in enumerate(cases):
            writer.write(frame(i, 1, pdu))
            tid, _unit, answer = await read_frame(reader)
            assert tid == i
            assert answer == bytes([0x80 | pdu[0], 0x03]), (pdu.hex(), answer.hex())


async def test_the_banks_exceptions_and_units_are_as_before(server: ModbusTcpServers,
                                                            brain: PowerBrain) -> None:
    before = brain.banks["evse"].snapshot()
    cases = [
        (1, fc3(9000, 1), b"\x83\x02"),  # no register
        (1, fc3(8046, 4), b"\x83\x02"),  # runs into the gap at 8048
        (1, fc6(8002, 7), b"\x86\x02"),  # read-only
        (1, fc6(8093, 700), b"\x86\x03"),  # out of range
        (1, fc16(8093, [100, 5]), b"\x90\x03"),  # the second value is out of range
        (77, fc3(8000, 2), b"\x83\x0b"),  # another unit
        (77, b"\x05\x1f\x40\xff\x00", b"\x85\x0b"),
    ]
    async with connection(server.ports[0]) as (reader, writer):
        for unit, pdu, expected in cases:
            writer.write(frame(7, unit, pdu))
            assert await read_frame(reader) == (7, unit, expected)
        for unit in (0, 1, 255):
            writer.write(frame(9, unit, fc3(8000, 2)))
            assert await read_frame(reader) == (9, unit, bytes.fromhex("0304cf050000"))
    assert brain.banks["evse"].snapshot() == before


async def test_a_failure_behind_the_bank_is_exception_04(server: ModbusTcpServers,
                                                         brain: PowerBrain,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    def broken(_register: object, _value: int) -> None:
        raise OSError("disk full")

    brain.banks["evse"].on_write = broken
    async with connection(server.ports[0]) as (reader, writer):
        writer.write(frame(1, 1, fc6(8093, 100)) + frame(2, 1, fc3(8000, 2)))
        assert await read_frame(reader) == (1, 1, b"\x86\x04")
        assert await read_frame(reader) == (2, 1, bytes.fromhex("0304cf050000"))
    assert "disk full" in caplog.text


async def test_a_write_of_the_slave_id_is_answered(server: ModbusTcpServers,
                                                  brain: PowerBrain) -> None:
    async with connection(server.ports[0]) as (reader, writer):
        writer.write(frame(1, 1, fc6(8040, 9)))
        assert await read_frame(reader) == (1, 1, fc6(8040, 9))
        writer.write(frame(2, 1, fc3(8040, 1)))
        assert (await read_frame(reader))[2] == b"\x83\x0b"
        writer.write(frame(3, 9, fc3(8040, 1)))
        assert await read_frame(reader) == (3, 9, b"\x03\x02\x00\x09")
    assert brain.banks["evse"].get("slave_id") == 9


async def test_fifty_requests_in_one_send_get_fifty_answers_in_order(
        server: ModbusTcpServers) -> None:
    requests = []
    for i in range(50):
        # Writes and reads interleaved: each read must see the write just before it.
        pdu = fc6(8093, 60 + i) if i % 2 == 0 else fc3(8093, 1)
        requests.append(frame(1000 + i, 1, pdu))
    async with connection(server.ports[0]) as (reader, writer):
        writer.write(b"".join(requests))
        answers = [await read_frame(reader) for _ in range(50)]
    assert [tid for tid, _, _ in answers] == list(range(1000, 1050))
    for i, (_tid, _unit, pdu) in enumerate(answers):
        value = 60 + i - i % 2
        assert pdu == (fc6(8093, value) if i % 2 == 0 else struct.pack(">BBH", 3, 2, value))


async def test_frames_split_anywhere_are_put_together(server: ModbusTcpServers) -> None:
    data = b"".join(frame(i, 1, fc3(8000, 2)) for i in range(5))
    async with connection(server.ports[0]) as (reader, writer):
        for i in range(0, len(data), 5):
            writer.write(data[i:i + 5])
            await writer.drain()
            await asyncio.sleep(0.01)
        assert [(await read_frame(reader))[0] for _ in range(5)] == list(range(5))


async def test_a_client_that_reads_late_gets_every_answer(brain: PowerBrain) -> None:
    """Far more answers than the socket buffers hold: the server waits for the reader
    instead of dropping or piling them up."""
    servers = await start_servers(brain)
    n = 50_000
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", servers.ports[0]))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(b"".join(frame(i & 0xFFFF, 1, fc3(8000, 32)) for i in range(n)))
        await asyncio.sleep(0.5)
        size = 7 + 2 + 64
        data = await asyncio.wait_for(reader.readexactly(n * size), 60)
        tids = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), size)]
        assert tids == [i & 0xFFFF for i in range(n)]
        assert {data[i + 7:i + 9] for i in range(0, len(data), size)} == {b"\x03\x40"}
    finally:
        writer.close()
        await servers.stop()


async def test_other_protocol_ids_are_dropped(server: ModbusTcpServers) -> None:
    async with connection(server.ports[0]) as (reader, writer):
        writer.write(frame(1, 1, fc3(8000, 2), protocol=7) + frame(2, 1, fc3(8000, 2)))
        assert (await read_frame(reader))[0] == 2


async def test_a_frame_without_function_code_closes_the_connection(
        server: ModbusTcpServers) -> None:
    async with connection(server.ports[0]) as (reader, writer):
        writer.write(struct.pack(">HHHB", 1, 0, 1, 1))
        assert await closed_by_server(reader)


async def test_a_half_frame_is_closed_after_the_frame_timeout(
        server: ModbusTcpServers) -> None:
    async with connection(server.ports[0]) as (reader, writer):
        writer.write(frame(1, 1, fc3(8000, 2))[:9])
        assert await closed_by_server(reader)


async def test_a_frame_sent_byte_by_byte_too_slowly_is_closed(
        server: ModbusTcpServers) -> None:
    """Bytes that keep coming do not keep an unfinished frame alive."""
    data = struct.pack(">HHHB", 1, 0, 200, 1) + b"\x10" * 199
    async with connection(server.ports[0]) as (reader, writer):
        deadline = time.monotonic() + 15
        for byte in data:
            assert time.monotonic() < deadline, "never closed"
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except (ConnectionError, OSError):
                break
            if await closed_by_server(reader, within=0.1):
                break
        else:
            raise AssertionError("the whole slow frame was taken")


async def test_an_idle_connection_is_closed(server: ModbusTcpServers) -> None:
    async with connection(server.ports[0]) as (reader, writer):
        writer.write(frame(1, 1, fc3(8000, 2)))
        await read_frame(reader)
        assert await closed_by_server(reader)
    await wait_for(lambda: server.open_connections() == [0], timeout=10)


async def test_requests_keep_a_connection_open(brain: PowerBrain) -> None:
    """Each request moves the idle deadline: two pauses each shorter than the timeout,
    together longer, and the connection still answers."""
    servers = await start_servers(brain, ConnectionLimits(idle_timeout_s=4.0))
    try:
        async with connection(servers.ports[0]) as (reader, writer):
            for i in range(3):
                writer.write(frame(i, 1, fc3(8000, 2)))
                assert (await read_frame(reader))[0] == i
                if i < 2:
                    await asyncio.sleep(2.5)
    finally:
        await servers.stop()


async def test_a_connection_flood_is_bounded(server: ModbusTcpServers) -> None:
    """40 connections to a port that keeps 8: the ones idle longest are closed, and a
    client that comes afterwards is still served."""
    port = server.ports[0]
    flood = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
    try:
        await wait_for(lambda: server.open_connections()[0] <= 8, timeout=10)
        closed = await asyncio.gather(*(closed_by_server(r, within=15) for r, _ in flood))
        assert sum(closed) >= 32
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=1)
        assert await client.connect()
        try:
            rr = await client.read_holding_registers(8000, count=2, device_id=1)
            assert not rr.isError() and rr.registers == [0xCF05, 0]
        finally:
            client.close()
        assert server.open_connections()[0] <= 8
    finally:
        for _, writer in flood:
            writer.close()


async def test_pymodbus_client_as_evcc_uses_it(brain: PowerBrain) -> None:
    servers = await start_servers(brain)
    client = AsyncModbusTcpClient("127.0.0.1", port=servers.ports[0], timeout=5, retries=0)
    try:
        assert await client.connect()
        rr = await client.read_holding_registers(8092, count=4, device_id=1)
        assert not rr.isError()
        assert not (await client.write_register(8093, 123, device_id=1)).isError()
        assert not (await client.write_registers(8093, [140, 1], device_id=1)).isError()
        rr = await client.read_holding_registers(8093, count=2, device_id=1)
        assert rr.registers == [140, 1]
        rr = await client.read_holding_registers(8093, count=1, device_id=77)
        assert rr.isError() and rr.exception_code == 0x0B
    finally:
        client.close()
        await servers.stop()


async def test_the_bind_address_matters(brain: PowerBrain) -> None:
    servers = await start_servers(brain, host="127.0.0.2")
    try:
        port = servers.ports[0]
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        async with connection(port, "127.0.0.2") as (reader, writer):
            writer.write(frame(1, 1, fc3(8000, 2)))
            assert (await read_frame(reader))[2] == bytes.fromhex("0304cf050000")
    finally:
        await servers.stop()
