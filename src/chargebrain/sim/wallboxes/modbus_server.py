"""A small Modbus server for simulated wallboxes: TCP (MBAP), RTU or ASCII frames over TCP,
and RTU or ASCII frames on a serial line (a pseudo-terminal in the tests).

The device behind it answers function codes 1, 2, 3, 4 (read bits and registers), 5 (one
coil), 6 and 16 (registers) through `ModbusDevice.read` and `ModbusDevice.write`, which
raise `ModbusException` with the exception code to answer (02 illegal data address for a
register it does not have or may only be written, ...). Requests to another unit id are
not answered on a serial line (nobody there) and get exception 0B over TCP. Frames with a
bad CRC or LRC are dropped, as a serial device does.

The simulator's own code, not the controller's server (servers/modbus_tcp.py): it serves
whatever register map a simulated wallbox has, with the framings a real bus has.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Sequence
from typing import Protocol

__all__ = ["ModbusDevice", "ModbusException", "ModbusSimServer", "crc16", "lrc"]


class ModbusException(Exception):
    """The answer is an exception response with `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(f"Modbus exception {code}")
        self.code = code


class ModbusDevice(Protocol):
    unit: int

    def read(self, func: int, address: int, count: int) -> Sequence[int]:
        """Registers (FC3/4) or bits (FC1/2); raises ModbusException."""

    def write(self, func: int, address: int, values: Sequence[int]) -> None:
        """Registers (FC6/16) or one coil (FC5, value 0 or 1); raises ModbusException."""


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def lrc(data: bytes) -> int:
    return (-sum(data)) & 0xFF


def _asleep(device: ModbusDevice | None) -> bool:
    """A device that misses this frame (an RS-485 device waking up): no answer."""
    awake = getattr(device, "awake", None)
    return device is not None and callable(awake) and not awake()


def answer_pdu(device: ModbusDevice, pdu: bytes) -> bytes:
    """The answer PDU of the device to a request PDU."""
    func = pdu[0]
    try:
        if func in (1, 2, 3, 4) and len(pdu) == 5:
            address, count = struct.unpack(">HH", pdu[1:5])
            if not 1 <= count <= (2000 if func < 3 else 125):
                raise ModbusException(3)
            values = list(device.read(func, address, count))
            if func < 3:
                data = bytearray((count + 7) // 8)
                for i, bit in enumerate(values[:count]):
                    if bit:
                        data[i // 8] |= 1 << (i % 8)
                return bytes((func, len(data))) + bytes(data)
            return bytes((func, 2 * count)) + struct.pack(f">{count}H", *values[:count])
        if func in (5, 6) and len(pdu) == 5:
            address, value = struct.unpack(">HH", pdu[1:5])
            if func == 5:
                if value not in (0, 0xFF00):
                    raise ModbusException(3)
                device.write(5, address, [1 if value else 0])
            else:
                device.write(6, address, [value])
            return pdu
        if func == 16 and len(pdu) >= 6:
            address, count, size = struct.unpack(">HHB", pdu[1:6])
            if not 1 <= count <= 123 or size != 2 * count or len(pdu) != 6 + size:
                raise ModbusException(3)
            device.write(16, address, list(struct.unpack(f">{count}H", pdu[6:])))
            return pdu[:5]
        raise ModbusException(1)
    except ModbusException as exc:
        return bytes((func | 0x80, exc.code))


def _rtu_length(buf: bytes) -> int | None:
    """Length of the RTU request at the start of `buf` (None: not enough bytes yet)."""
    if len(buf) < 2:
        return None
    if buf[1] in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None
    return 8


class _Framed(asyncio.Protocol):
    """One connection (or the serial line): frames in, answers out."""

    def __init__(self, server: ModbusSimServer) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (frame := self._take()) is not None:
            out = self.server.handle(frame)
            if out is not None:
                self.server.send(self, out)

    def _take(self) -> bytes | None:
        framing = self.server.framing
        if framing == "tcp":
            if len(self.buf) < 7:
                return None
            length = struct.unpack(">H", self.buf[4:6])[0]
            if len(self.buf) < 6 + length:
                return None
            frame, self.buf = self.buf[: 6 + length], self.buf[6 + length :]
            return frame
        if framing == "rtu":
            need = _rtu_length(self.buf)
            if need is None or len(self.buf) < need:
                return None
            frame, self.buf = self.buf[:need], self.buf[need:]
            return frame
        end = self.buf.find(b"\r\n")
        if end < 0:
            return None
        frame, self.buf = self.buf[:end], self.buf[end + 2 :]
        return frame


class ModbusSimServer:
    """Serves one or more simulated devices (by unit id) over TCP or a serial line."""

    def __init__(self, devices: Sequence[ModbusDevice], framing: str = "tcp") -> None:
        if framing not in ("tcp", "rtu", "ascii"):
            raise ValueError("framing is tcp, rtu or ascii")
        self.devices = {d.unit: d for d in devices}
        self.framing = framing
        self.connections: set[_Framed] = set()
        self.requests = 0  # frames answered (or dropped on purpose)
        self.silent = False  # True: answer nothing (a device that stopped responding)
        self._server: asyncio.Server | None = None
        self._pty: tuple[int, int] | None = None
        self.port = 0

    def handle(self, frame: bytes) -> bytes | None:
        self.requests += 1
        if self.silent:
            return None
        if self.framing == "tcp":
            tid, proto, _length, unit = struct.unpack(">HHHB", frame[:7])
            if proto != 0 or len(frame) < 8:
                return None
            device = self.devices.get(unit)
            if _asleep(device):
                return None
            pdu = answer_pdu(device, frame[7:]) if device else bytes((frame[7] | 0x80, 0x0B))
            return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu
        if self.framing == "rtu":
            if len(frame) < 4 or crc16(frame[:-2]) != struct.unpack("<H", frame[-2:])[0]:
                return None
            device = self.devices.get(frame[0])
            if device is None or _asleep(device):
                return None
            body = bytes((frame[0],)) + answer_pdu(device, frame[1:-2])
            return body + struct.pack("<H", crc16(body))
        if not frame.startswith(b":"):
            return None
        try:
            raw = bytes.fromhex(frame[1:].decode("ascii"))
        except ValueError:
            return None
        if len(raw) < 3 or lrc(raw[:-1]) != raw[-1]:
            return None
        device = self.devices.get(raw[0])
        if device is None or _asleep(device):
            return None
        body = bytes((raw[0],)) + answer_pdu(device, raw[1:-1])
        return b":" + (body + bytes((lrc(body),))).hex().upper().encode() + b"\r\n"

    def send(self, conn: _Framed, data: bytes) -> None:
        if self._pty is not None:
            os.write(self._pty[0], data)
        elif isinstance(conn.transport, asyncio.WriteTransport):
            conn.transport.write(data)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on TCP; the port (a free one when 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Framed(self), host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def start_pty(self) -> str:
        """Serve on a pseudo-terminal (a serial line); the device path a client opens."""
        master, slave = os.openpty()
        os.set_blocking(master, False)
        self._pty = (master, slave)
        loop = asyncio.get_running_loop()
        protocol = _Framed(self)
        loop.add_reader(master, self._pty_readable, protocol)
        return os.ttyname(slave)

    def _pty_readable(self, protocol: _Framed) -> None:
        assert self._pty is not None
        try:
            data = os.read(self._pty[0], 4096)
        except (BlockingIOError, OSError):
            return
        if data:
            protocol.data_received(data)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self._server.wait_closed()
            self._server = None
        if self._pty is not None:
            asyncio.get_running_loop().remove_reader(self._pty[0])
            for fd in self._pty:
                os.close(fd)
            self._pty = None
