"""Modbus TCP server for the controller's three logical devices, and for other register
maps (the charging manager's SunSpec chain).

One listening port per logical device (EVSE on N, S0 meter 1 on N+1, S0 meter 2 on N+2).
Each connection is cut into MBAP frames (7-byte header: transaction id, protocol id 0,
length, unit id; then the PDU) and every frame is answered by `modbus_pdu.answer` from
the device's register bank (or by the `Responder` a port was given), in the order the
frames came, also when a client sends many at once without waiting. A frame with another
protocol id is dropped unanswered. A frame longer than the protocol allows (a PDU over
253 bytes) is still cut by its length field and answered with an exception; a length
below 2 (no function code) loses the framing, and the connection is closed.

Connections are bounded (`ConnectionLimits`): one that sends no request for
`idle_timeout_s`, or leaves a frame unfinished (or its answers unread) for
`frame_timeout_s`, is closed; at most `max_connections` are open per port, and a new one
beyond that closes the one idle longest. An `AccessList` closes connections from other
addresses at once. Refusals and evictions are logged at most once a minute at INFO, the
rest at DEBUG.

The server is our own rather than pymodbus's: pymodbus's server answers function codes
the controller does not have, drops frames that arrive together and has no timeouts or
connection limit (docs/decisions.md). pymodbus stays the client of RTU and ASCII frames
(devices/modbus_client.py).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chargebrain.powerbrain.bank import RegisterBank
from chargebrain.servers.access import AccessList
from chargebrain.servers.modbus_pdu import answer

log = logging.getLogger("chargebrain.modbus")

_MBAP = struct.Struct(">HHHB")
HEADER_BYTES = 7
# The length field counts the unit id and the PDU (1..253 bytes in the protocol).
MIN_LENGTH = 2
# Answers are written in batches of about this size, so that a client that pipelines
# many requests and reads slowly never makes the server hold more than a batch.
_WRITE_BATCH = 16 * 1024
_LOG_EVERY_S = 60.0

#: Answers one request: (unit id, request PDU) -> answer PDU.
Responder = Callable[[int, bytes], bytes]


class ListenError(Exception):
    """A server could not listen on its address."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {host} port {port}: {reason}")
        self.host = host
        self.port = port


class PortInUseError(ListenError):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port, "in use")
        self.args = (f"port {port} on {host} is already in use",)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a connection may wait and how many there may be, per port."""

    idle_timeout_s: float = 60.0
    frame_timeout_s: float = 10.0
    max_connections: int = 32

    def __post_init__(self) -> None:
        if self.idle_timeout_s <= 0 or self.frame_timeout_s <= 0:
            raise ValueError("Modbus timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError("at least one Modbus connection must be allowed")


class _Throttled:
    """INFO at most once per interval, DEBUG in between, with the count left out."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._quiet = 0

    def log(self, now: float, msg: str, *args: object) -> None:
        if self._last is not None and now - self._last < _LOG_EVERY_S:
            self._quiet += 1
            log.debug(msg, *args)
            return
        if self._quiet:
            msg += f" ({self._quiet} more since the last such message)"
        self._last, self._quiet = now, 0
        log.info(msg, *args)


class _Listener:
    """One port: what answers its requests, its open connections and their limits."""

    def __init__(self, respond: Responder, port: int, limits: ConnectionLimits,
                 access: AccessList | None) -> None:
        self.respond = respond
        self.port = port
        self.limits = limits
        self.access = access
        self.connections: set[_Connection] = set()
        self.server: asyncio.Server | None = None
        self._refused = _Throttled()
        self._evicted = _Throttled()

    def admit(self, conn: _Connection, peer: str, now: float) -> bool:
        if self.access is not None and not self.access.allows(peer):
            self._refused.log(now, "Modbus TCP port %d: refused a connection from %s "
                              "(not in the allowed networks)", self.port, peer)
            return False
        if len(self.connections) >= self.limits.max_connections:
            oldest = min(self.connections, key=lambda c: c.last_request)
            self._evicted.log(now, "Modbus TCP port %d: %d connections open, closed the "
                              "one idle longest (from %s)", self.port, len(self.connections),
                              oldest.peer)
            oldest.close()
        self.connections.add(conn)
        return True

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close()


class _Connection(asyncio.Protocol):
    """One client connection: frames in, answers out, in order."""

    def __init__(self, listener: _Listener) -> None:
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.last_request = 0.0
        self._buffer = b""
        self._pending_since = 0.0  # when the buffer last became non-empty
        self._paused = False  # the client does not read its answers
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if peername else "?"
        now = self.loop.time()
        if not self.listener.admit(self, self.peer, now):
            transport.abort()
            return
        self.transport = transport
        self.last_request = now
        self._timer = self.loop.call_at(now + self.listener.limits.idle_timeout_s,
                                        self._check_deadline)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        fresh = not self._buffer
        self._buffer = self._buffer + data if self._buffer else data
        self._process(fresh)

    def pause_writing(self) -> None:
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is None:
            return
        self._process(False)
        if not self._paused and self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    # --- framing ----------------------------------------------------------------------

    def _process(self, fresh: bool) -> None:
        """Answer every complete frame in the buffer, in order, while the client reads.
        `fresh`: the buffer held nothing before the latest data."""
        buf = self._buffer
        size = len(buf)
        pos = 0
        out: list[bytes] = []
        pending = 0
        respond = self.listener.respond
        while size - pos >= HEADER_BYTES:
            tid, protocol, length, unit = _MBAP.unpack_from(buf, pos)
            if length < MIN_LENGTH:
                log.debug("Modbus TCP port %d: frame length %d from %s, closing",
                          self.listener.port, length, self.peer)
                self._write(out)
                self.close()
                return
            end = pos + 6 + length
            if end > size:
                break
            if protocol == 0:
                pdu = respond(unit, buf[pos + HEADER_BYTES:end])
                out.append(_MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu)
                pending += len(pdu) + HEADER_BYTES
            pos = end
            if pending >= _WRITE_BATCH:
                self._write(out)
                out, pending = [], 0
                if self._paused or self.transport is None:
                    break
        self._write(out)
        if pos:
            self.last_request = self.loop.time()
        if pos < size:
            self._buffer = buf[pos:]
            if pos or fresh:  # what is left started arriving now
                self._pending_since = self.loop.time()
                self._arm(self._pending_since + self.listener.limits.frame_timeout_s)
        else:
            self._buffer = b""

    def _write(self, out: list[bytes]) -> None:
        if out and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    # --- deadlines --------------------------------------------------------------------

    def _deadline(self) -> float:
        limits = self.listener.limits
        if self._buffer:
            return min(self._pending_since + limits.frame_timeout_s,
                       self.last_request + limits.idle_timeout_s)
        return self.last_request + limits.idle_timeout_s

    def _arm(self, when: float) -> None:
        """Make sure the deadline check runs no later than `when`."""
        if self._timer is not None and self._timer.when() <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._check_deadline)

    def _check_deadline(self) -> None:
        """Close the connection if its deadline passed, else look again at the deadline
        (requests move it on without touching the timer)."""
        self._timer = None
        if self.transport is None:
            return
        deadline = self._deadline()
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._check_deadline)
            return
        what = "an unfinished frame" if self._buffer else "no request"
        log.debug("Modbus TCP port %d: closing the connection from %s after %s in time",
                  self.listener.port, self.peer, what)
        self.close()

    # --- closing ----------------------------------------------------------------------

    def close(self) -> None:
        transport = self.transport
        self._forget()
        if transport is not None:
            transport.abort()

    def _forget(self) -> None:
        self.transport = None
        self._buffer = b""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.listener.connections.discard(self)


def bind_failure(exc: OSError) -> str:
    """Why a bind failed, without the address asyncio puts into its message."""
    if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
        return exc.strerror or str(exc)
    return os.strerror(exc.errno)


class ModbusTcpServers:
    """The listening servers, one per bank on consecutive ports; start() binds all or
    none. `access` None admits every client address. `responders` replaces the banks:
    each port answers through its own function (the banks are then not used)."""

    def __init__(self, banks: Sequence[RegisterBank], host: str, first_port: int, *,
                 limits: ConnectionLimits | None = None,
                 access: AccessList | None = None,
                 responders: Sequence[Responder] | None = None) -> None:
        if responders is None:
            responders = [functools.partial(answer, bank) for bank in banks]
        self.host = host
        self.ports = [first_port + i for i in range(len(responders))]
        self.limits = limits or ConnectionLimits()
        self.access = access
        self._listeners = [_Listener(respond, port, self.limits, access)
                           for respond, port in zip(responders, self.ports, strict=True)]

    def open_connections(self) -> list[int]:
        """How many connections each port has open, in port order."""
        return [len(listener.connections) for listener in self._listeners]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for listener in self._listeners:
                try:
                    listener.server = await loop.create_server(
                        functools.partial(_Connection, listener), self.host, listener.port,
                        reuse_address=True)
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise PortInUseError(self.host, listener.port) from None
                    raise ListenError(self.host, listener.port, bind_failure(exc)) from None
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for listener in self._listeners:
            server, listener.server = listener.server, None
            if server is not None:
                server.close()
            listener.close_all()
            if server is not None:
                try:
                    await server.wait_closed()
                except Exception:
                    log.debug("error while closing a Modbus server", exc_info=True)
        await asyncio.sleep(0)
