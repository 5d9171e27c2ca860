"""Modbus TCP framing for the client side, on a plain asyncio protocol.

`ModbusTcpLink` is one TCP connection carrying MBAP frames (7-byte header: transaction id,
protocol id 0, length, unit id; then the PDU). It sends one request and waits for its
answer before the next, as pymodbus's client does: the Modbus TCP implementation guide
lets a simple server handle one transaction at a time. An answer must carry the request's
transaction id and unit id (a request to unit 0 takes any unit's answer); frames of
another protocol id, and answers nobody waits for, are skipped; a length field below 2
closes the connection, since nothing keeps the stream in step any more. When the peer
closes the connection, the request waiting on it fails at once.

The module also builds the request PDUs of function codes 1-6 and 16 and takes their
answers apart. It knows nothing of what the registers mean, and nothing of deadlines:
the caller (`devices.modbus_client`) puts one on every call and drops the link after a
timeout, so a late answer can never be taken for the next request's.

Why not pymodbus here: its client spent about three times the CPU of this module on one
request (transaction manager, framer, PDU objects, its own timer per request), which a
cycle reading hundreds of wallboxes pays twice per wallbox (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import struct

__all__ = [
    "ExceptionAnswer",
    "LinkError",
    "ModbusTcpLink",
    "bits_answer",
    "exception_name",
    "read_request",
    "registers_answer",
    "write_answer",
    "write_coil_request",
    "write_register_request",
    "write_registers_request",
]

_MBAP = struct.Struct(">HHHB")
_READ = struct.Struct(">BHH")


class LinkError(Exception):
    """The connection failed, closed, or an answer made no sense."""


class ExceptionAnswer(Exception):
    """The device answered with a Modbus exception `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class ModbusTcpLink(asyncio.Protocol):
    """One Modbus TCP connection, one request at a time (see the module docstring)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._tid = 0
        self._unit = 0
        self._waiting: asyncio.Future[bytes] | None = None
        self._closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> ModbusTcpLink:
        """Connect to `host:port` (raises OSError when that fails)."""
        loop = asyncio.get_running_loop()
        _transport, link = await loop.create_connection(cls, host, port)
        return link

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._closed

    def close(self) -> None:
        """Close the connection; a request still waiting fails."""
        self._closed = True
        if self._transport is not None:
            self._transport.close()
        self._fail("connection closed")

    async def request(self, unit: int, pdu: bytes) -> bytes:
        """Send `pdu` to `unit`; the answer's PDU (function code first)."""
        transport = self._transport
        if transport is None or self._closed:
            raise LinkError("not connected")
        if self._waiting is not None:
            raise LinkError("a request is already waiting on this connection")
        self._tid = tid = (self._tid + 1) & 0xFFFF
        self._unit = unit
        self._waiting = waiting = asyncio.get_running_loop().create_future()
        transport.write(_MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu)
        try:
            answer: bytes = await waiting
            return answer
        finally:
            self._waiting = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 7:
            tid, protocol, length, unit = _MBAP.unpack_from(buffer)
            if length < 2:
                self._fail("the device's answer lost the framing")
                self.close()
                return
            end = 6 + length
            if len(buffer) < end:
                return
            pdu = bytes(buffer[7:end])
            del buffer[:end]
            waiting = self._waiting
            if protocol != 0 or waiting is None or waiting.done() or tid != self._tid:
                continue  # not an answer to the request waiting now
            if self._unit and unit != self._unit:
                waiting.set_exception(LinkError(
                    f"the request went to unit {self._unit} but unit {unit} answered"))
                continue
            waiting.set_result(pdu)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._fail("connection closed by the device")

    def _fail(self, message: str) -> None:
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_exception(LinkError(message))


# --- request PDUs and their answers ------------------------------------------------------


_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def exception_name(code: int) -> str:
    """Human name of a Modbus exception code."""
    return _EXCEPTION_NAMES.get(code, "unknown exception")


def read_request(function_code: int, address: int, count: int) -> bytes:
    """FC 1, 2 (bits) or 3, 4 (registers): `count` from `address`."""
    return _READ.pack(function_code, address, count)


def write_coil_request(address: int, value: bool) -> bytes:
    """FC5: one coil."""
    return _READ.pack(5, address, 0xFF00 if value else 0)


def write_register_request(address: int, value: int) -> bytes:
    """FC6: one holding register."""
    return _READ.pack(6, address, value)


def write_registers_request(address: int, values: list[int]) -> bytes:
    """FC16: consecutive holding registers."""
    count = len(values)
    return struct.pack(f">BHHB{count}H", 16, address, count, 2 * count, *values)


def _checked(function_code: int, answer: bytes) -> bytes:
    """`answer` if it answers `function_code`; raises ExceptionAnswer or LinkError."""
    if not answer:
        raise LinkError("empty answer")
    if answer[0] == function_code | 0x80:
        if len(answer) < 2:
            raise LinkError("exception answer without a code")
        raise ExceptionAnswer(answer[1])
    if answer[0] != function_code:
        raise LinkError(f"answer with function code {answer[0]} to function code "
                        f"{function_code}")
    return answer


def registers_answer(function_code: int, answer: bytes) -> list[int]:
    """The registers an FC3/FC4 answer holds (as many as its byte count says)."""
    body = _checked(function_code, answer)
    if len(body) < 2 or len(body) - 2 < body[1]:
        raise LinkError("answer shorter than its byte count")
    count = body[1] // 2
    return list(struct.unpack_from(f">{count}H", body, 2))


def bits_answer(function_code: int, answer: bytes) -> list[int]:
    """The bits an FC1/FC2 answer holds (0 or 1 each, whole bytes, lowest bit first)."""
    body = _checked(function_code, answer)
    if len(body) < 2 or len(body) - 2 < body[1]:
        raise LinkError("answer shorter than its byte count")
    return [(byte >> i) & 1 for byte in body[2:2 + body[1]] for i in range(8)]


def write_answer(function_code: int, answer: bytes) -> None:
    """Check that a write (FC 5, 6, 16) was answered as one."""
    _checked(function_code, answer)

