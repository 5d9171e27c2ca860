"""The built-in driver of KEBA KeContact P20/P30 wallboxes (dev_type `evse_keba_c_x`), over
KEBA's UDP protocol.

The wallbox listens on UDP port 7090 and answers to port 7090 of the sender, whatever
port the request came from, so all KEBA wallboxes share one local socket bound to 7090
(`local_port`), and answers are told apart by the wallbox's address. Requests to one
wallbox are one at a time, at least `GAP_S` apart (the box ignores datagrams that come
too fast). A reading is `report 2` (state, plug, enable, the current it signals) and
`report 3` (voltages, currents in mA, power in mW, energy in 0.1 Wh); a command is
`ena 0|1` and `curr <mA>`, a phase count `x2 0|1`. When first reached the driver sets the
box's fail-safe (`failsafe 60 0 0`): if no command comes for 60 s it stops charging. No
answer within the timeout, `TCH-ERR`, an answer that is not what was asked for: a
`DeviceError`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from chargebrain.clock import Clock, RealClock
from chargebrain.core.model import EvseCommand, EvseReading, EvseState
from chargebrain.core.phases import Phases
from chargebrain.devices.errors import DeviceError

__all__ = ["KEBA_PORT", "KebaEvse"]

KEBA_PORT = 7090
GAP_S = 0.1
FAILSAFE = "failsafe 60 0 0"


class _Socket(asyncio.DatagramProtocol):
    """One local UDP socket shared by the KEBA drivers of an event loop and port."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[tuple[str, int], asyncio.Queue[str]] = {}
        self.users = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        queue = self.waiting.get((str(addr[0]), int(addr[1])))
        if queue is None:
            queue = self.waiting.get((str(addr[0]), KEBA_PORT))  # a real box answers from 7090
        if queue is not None and queue.qsize() < 8:
            queue.put_nowait(data.decode("latin-1", "replace").strip())


_SOCKETS: dict[tuple[int, int], _Socket] = {}


def _parse(address: str) -> tuple[str, int]:
    text = address.strip()
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, str(KEBA_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DeviceError(f"KEBA address {address!r}: expected host or host:port")
    return host, int(port)


class KebaEvse:
    """One KEBA wallbox over UDP."""

    def __init__(self, address: str, *, local_port: int = KEBA_PORT, timeout: float = 2.0,
                 clock: Clock | None = None) -> None:
        self.peer = _parse(address)
        self.local_port = local_port
        self.timeout = timeout
        self.clock: Clock = clock or RealClock()
        self._socket: _Socket | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._sent_at = -1e9
        self._ready = False
        self.gap_s = GAP_S  # least real time between two datagrams to the box

    def __repr__(self) -> str:
        return f"KebaEvse({self.peer[0]}:{self.peer[1]})"

    async def _open(self) -> _Socket:
        if self._socket is not None:
            return self._socket
        loop = asyncio.get_running_loop()
        key = (id(loop), self.local_port)
        sock = _SOCKETS.get(key)
        if sock is None or sock.transport is None:
            sock = _Socket()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: sock, local_addr=("0.0.0.0", self.local_port))
            except OSError as exc:
                raise DeviceError(f"KEBA: cannot listen on UDP port {self.local_port}: "
                                  f"{exc.strerror or exc}") from None
            sock.transport = transport
            if self.local_port:
                _SOCKETS[key] = sock
        sock.users += 1
        sock.waiting[self.peer] = self._queue
        self._socket = sock
        return sock

    async def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is None:
            return
        sock.waiting.pop(self.peer, None)
        sock.users -= 1
        if sock.users <= 0 and sock.transport is not None:
            sock.transport.close()
            sock.transport = None
            for key, known in list(_SOCKETS.items()):
                if known is sock:
                    del _SOCKETS[key]

    async def _ask(self, text: str, expect: str) -> str:
        """Send `text`; the answer that starts as `expect` says (others are dropped)."""
        sock = await self._open()
        assert sock.transport is not None
        wait = self.gap_s - (time.monotonic() - self._sent_at)
        if wait > 0:
            await asyncio.sleep(wait)
        while not self._queue.empty():
            self._queue.get_nowait()  # late answers of earlier requests
        sock.transport.sendto(text.encode(), self.peer)
        self._sent_at = time.monotonic()
        where = f"KEBA at {self.peer[0]}:{self.peer[1]}: {text!r}"
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    answer = await self._queue.get()
                    if answer.startswith(expect) or answer.startswith("TCH-ERR"):
                        break
        except TimeoutError:
            raise DeviceError(f"{where}: no answer within {self.timeout:g} s") from None
        if answer.startswith("TCH-ERR"):
            raise DeviceError(f"{where}: refused ({answer[:60]})")
        return answer

    async def _report(self, number: int) -> dict[str, Any]:
        answer = await self._ask(f"report {number}", "{")
        try:
            data = json.loads(answer)
        except ValueError:
            raise DeviceError(f"KEBA at {self.peer[0]}: report {number} is not JSON") from None
        if not isinstance(data, dict) or str(data.get("ID")) != str(number):
            raise DeviceError(f"KEBA at {self.peer[0]}: asked for report {number}, "
                              f"got {str(data)[:60]}")
        return data

    async def _command(self, text: str) -> None:
        await self._ask(text, "TCH-OK")

    async def _prepare(self) -> None:
        if not self._ready:
            await self._command(FAILSAFE)
            self._ready = True

    async def read(self) -> EvseReading:
        async with self._lock:
            try:
                await self._prepare()
                r2 = await self._report(2)
                r3 = await self._report(3)
                return _reading(r2, r3)
            except DeviceError:
                self._ready = False
                raise

    async def apply(self, command: EvseCommand) -> None:
        async with self._lock:
            try:
                await self._prepare()
                if command.phases in (1, 3):
                    await self._command(f"x2 {1 if command.phases == 3 else 0}")
                if command.enabled and command.current_ma > 0:
                    current = max(6000, min(63_000, command.current_ma))
                    await self._command(f"curr {current}")
                    await self._command("ena 1")
                else:
                    await self._command("ena 0")
            except DeviceError:
                self._ready = False
                raise


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DeviceError(f"KEBA report: {key} is not a number")
    return float(value)


def _reading(r2: dict[str, Any], r3: dict[str, Any]) -> EvseReading:
    state_code = int(_number(r2, "State"))
    plug = int(_number(r2, "Plug"))
    if state_code == 3:
        state = EvseState.CHARGING
    elif state_code == 4:
        state = EvseState.ERROR
    elif plug >= 5:  # plugged on the car's side
        state = EvseState.EV_PRESENT
    elif state_code in (0, 1, 2, 5):
        state = EvseState.WAITING
    else:
        raise DeviceError(f"KEBA report 2: unknown State {state_code}")
    currents = Phases.of([max(0, round(_number(r3, f"I{i}"))) for i in (1, 2, 3)])
    return EvseReading(
        state=state,
        currents=currents,
        power_w=max(0.0, _number(r3, "P") / 1000),
        total_energy_wh=_number(r3, "E total") / 10,
        has_meter=True,
        max_current_ma=round(_number(r2, "Max curr")),
        model="KEBA KeContact",
    )
