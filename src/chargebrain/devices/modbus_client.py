"""Modbus client adapters: with `devices.modbus_serial`, the only modules that import
pymodbus's client API.

Every Modbus client in chargebrain (meters and wallboxes described by definitions, remote
Power Brain controllers, `modbus_get`/`modbus_set`) talks through an adapter, so a pymodbus
upgrade touches only these files. `ModbusTcpClientAdapter` reaches `host:port` with Modbus
TCP framing, or with RTU or ASCII frames carried over TCP (a transparent serial gateway);
`devices.modbus_serial.ModbusSerialClientAdapter` opens a serial line (RTU or ASCII).
Modbus TCP framing goes through `devices.modbus_tcp_link` (MBAP frames on a plain asyncio
protocol, a third of pymodbus's CPU per request); RTU and ASCII frames, over TCP or a
serial line, through pymodbus's clients. An adapter connects on demand, serialises the
requests of concurrent callers on its one connection, puts a deadline on every call, drops
the connection after anything that could leave it out of step (timeout, cancellation,
transport error) and reconnects on the next call. Every failure surfaces as `ModbusIOError`
with a message naming the peer, the unit and the registers. Function codes: 1 (coils),
2 (discrete inputs), 3, 4 (registers), 5 (one coil), 6 and 16 (registers).

This module must never know what the registers mean, and must never let a pymodbus type or
exception escape to its callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from chargebrain.devices.errors import ModbusIOError
from chargebrain.devices.modbus_tcp_link import (
    ExceptionAnswer,
    LinkError,
    ModbusTcpLink,
    bits_answer,
    exception_name,
    read_request,
    registers_answer,
    write_answer,
    write_coil_request,
    write_register_request,
    write_registers_request,
)

__all__ = [
    "FRAMINGS",
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "MAX_WRITE_REGISTERS",
    "ModbusClientAdapter",
    "ModbusIOError",
    "ModbusTcpClientAdapter",
]

# Protocol limits (Modbus application protocol v1.1b3, FC3/FC4 and FC16).
MAX_READ_REGISTERS = 125
MAX_WRITE_REGISTERS = 123
MAX_READ_BITS = 2000

#: How requests are framed: "tcp" (MBAP, Modbus TCP), "rtu" and "ascii" (serial framing,
#: on a serial line or carried over TCP).
FRAMINGS = ("tcp", "rtu", "ascii")
_FRAMERS = {"tcp": FramerType.SOCKET, "rtu": FramerType.RTU, "ascii": FramerType.ASCII}

DEFAULT_PORT = 502

# pymodbus keeps its own response timer; the adapter enforces the real deadline, so the inner
# one only has to be longer than any deadline a caller may ask for.
_INNER_TIMEOUT_S = 3600.0

Client = AsyncModbusTcpClient | AsyncModbusSerialClient
#: What decodes a link's answer (function code, answer PDU) into the caller's values.
Decode = Callable[[int, bytes], Any]


class ModbusClientAdapter:
    """One Modbus connection (a TCP connection or a serial line), shared by any number of
    unit ids. The subclasses say how it is made.

    `timeout` is the default deadline of one call in seconds (connecting included);
    every method accepts `timeout=` to override it for that call. `connect_timeout` bounds
    the connect alone (defaults to `timeout`); `delay_after_connect` is waited after each
    new connection, for devices that need a moment before the first request.
    """

    def __init__(
        self,
        timeout: float = 2.0,
        *,
        framing: str = "tcp",
        connect_timeout: float | None = None,
        delay_after_connect: float = 0.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError("Modbus timeout must be positive")
        if framing not in _FRAMERS:
            raise ValueError(f"Modbus framing must be one of {', '.join(FRAMINGS)}")
        self._framing = framing
        self._timeout = timeout
        self._connect_timeout = connect_timeout if connect_timeout else timeout
        self._delay_after_connect = max(0.0, delay_after_connect)
        self._client: Client | ModbusTcpLink | None = None
        # (host, port) when requests go over a ModbusTcpLink rather than pymodbus.
        self._link_address: tuple[str, int] | None = None
        self._lost: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()

    # -- properties -----------------------------------------------------------------------

    @property
    def framing(self) -> str:
        return self._framing

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._peer()})"

    def _make_client(self, on_connection_change: Callable[[bool], None]) -> Client:
        raise TypeError(f"{type(self).__name__} does not say how to connect")

    # -- connection -----------------------------------------------------------------------

    async def connect(self, *, timeout: float | None = None) -> None:
        """Open the connection now (calls also connect on demand)."""
        deadline = self._deadline(timeout)
        async with self._lock:
            try:
                async with asyncio.timeout(deadline):
                    if self._link_address is not None:
                        await self._ensure_link(self._link_address)
                    else:
                        await self._ensure_connected()
            except TimeoutError:
                self._drop()
                raise ModbusIOError(
                    f"Modbus {self._peer()}: no connection within {deadline:g} s"
                ) from None

    async def close(self) -> None:
        """Close the connection; a later call reconnects."""
        async with self._lock:
            self._drop()

    async def __aenter__(self) -> ModbusClientAdapter:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- requests -------------------------------------------------------------------------

    async def read_holding(
        self, unit: int, address: int, count: int, *, timeout: float | None = None
    ) -> list[int]:
        """Read `count` holding registers (FC3) starting at `address`."""
        return await self.read(unit, address, count, function_code=3, timeout=timeout)

    async def read_input(
        self, unit: int, address: int, count: int, *, timeout: float | None = None
    ) -> list[int]:
        """Read `count` input registers (FC4) starting at `address`."""
        return await self.read(unit, address, count, function_code=4, timeout=timeout)

    async def read(
        self,
        unit: int,
        address: int,
        count: int,
        *,
        function_code: int = 3,
        timeout: float | None = None,
    ) -> list[int]:
        """Read registers with function code 3 (holding) or 4 (input), or bits (0 or 1
        each) with function code 1 (coils) or 2 (discrete inputs)."""
        _check_unit(unit)
        if function_code not in (1, 2, 3, 4):
            raise ValueError(f"Modbus read function code must be 1..4, not {function_code}")
        bits = function_code in (1, 2)
        _check_range(address, count, MAX_READ_BITS if bits else MAX_READ_REGISTERS)
        kind = _READ_KINDS[function_code]
        what = f"read of {count} {kind} at {address} (0x{address:04X}) from unit {unit}"

        async def request(client: Client) -> Any:
            if function_code == 3:
                return await client.read_holding_registers(address, count=count, device_id=unit)
            if function_code == 4:
                return await client.read_input_registers(address, count=count, device_id=unit)
            if function_code == 1:
                return await client.read_coils(address, count=count, device_id=unit)
            return await client.read_discrete_inputs(address, count=count, device_id=unit)

        if self._link_address is not None:
            decode = bits_answer if bits else registers_answer
            values = await self._call_link(
                what, unit, read_request(function_code, address, count), decode, timeout)
        else:
            response = await self._call(what, request, timeout)
            values = list(getattr(response, "bits" if bits else "registers", None) or [])
        if bits:
            values = values[:count]
            if len(values) != count:
                raise ModbusIOError(f"Modbus {self._peer()}: {what}: answer holds too few bits")
            return [1 if v else 0 for v in values]
        if len(values) != count:
            raise ModbusIOError(
                f"Modbus {self._peer()}: {what}: answer holds {len(values)} register(s)"
            )
        return [int(r) & 0xFFFF for r in values]

    async def write_coil(
        self, unit: int, address: int, value: bool, *, timeout: float | None = None
    ) -> None:
        """Write one coil (FC5)."""
        _check_unit(unit)
        _check_range(address, 1, 1)
        what = f"write of coil {address} (0x{address:04X}) on unit {unit}"

        async def request(client: Client) -> Any:
            return await client.write_coil(address, bool(value), device_id=unit)

        if self._link_address is not None:
            await self._call_link(what, unit, write_coil_request(address, value), write_answer,
                                  timeout)
            return
        await self._call(what, request, timeout)

    async def write_register(
        self, unit: int, address: int, value: int, *, timeout: float | None = None
    ) -> None:
        """Write one holding register (FC6)."""
        _check_unit(unit)
        _check_range(address, 1, 1)
        _check_value(value)
        what = f"write of register {address} (0x{address:04X}) on unit {unit}"

        async def request(client: Client) -> Any:
            return await client.write_register(address, value, device_id=unit)

        if self._link_address is not None:
            await self._call_link(what, unit, write_register_request(address, value),
                                  write_answer, timeout)
            return
        await self._call(what, request, timeout)

    async def write_registers(
        self, unit: int, address: int, values: Sequence[int], *, timeout: float | None = None
    ) -> None:
        """Write consecutive holding registers (FC16)."""
        _check_unit(unit)
        _check_range(address, len(values), MAX_WRITE_REGISTERS)
        for value in values:
            _check_value(value)
        what = f"write of {len(values)} register(s) at {address} (0x{address:04X}) on unit {unit}"
        payload = list(values)

        async def request(client: Client) -> Any:
            return await client.write_registers(address, payload, device_id=unit)

        if self._link_address is not None:
            await self._call_link(what, unit, write_registers_request(address, payload),
                                  write_answer, timeout)
            return
        await self._call(what, request, timeout)

    # -- internals ------------------------------------------------------------------------

    def _peer(self) -> str:
        raise TypeError(f"{type(self).__name__} does not name its peer")

    def _deadline(self, timeout: float | None) -> float:
        deadline = self._timeout if timeout is None else timeout
        if deadline <= 0:
            raise ValueError("Modbus timeout must be positive")
        return deadline

    def _drop(self) -> None:
        """Forget the connection; anything still in flight on it is abandoned."""
        client, self._client = self._client, None
        lost, self._lost = self._lost, None
        if lost is not None and not lost.done():
            lost.cancel()
        if client is not None:
            client.close()

    async def _ensure_connected(self) -> Client:
        client = self._client
        if client is not None and not isinstance(client, ModbusTcpLink) and client.connected:
            return client
        self._drop()
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()

        def on_connection_change(connected: bool) -> None:
            # Called by pymodbus when the peer closes the connection; wakes a waiting request.
            if not connected and not lost.done():
                lost.set_result(None)

        client = self._make_client(on_connection_change)
        try:
            ok = await asyncio.wait_for(client.connect(), self._connect_timeout)
        except TimeoutError:
            client.close()
            raise ModbusIOError(
                f"Modbus {self._peer()}: no connection within {self._connect_timeout:g} s"
            ) from None
        except (OSError, ModbusException) as exc:
            client.close()
            raise ModbusIOError(f"Modbus {self._peer()}: cannot connect: {exc}") from exc
        except asyncio.CancelledError:
            client.close()
            raise
        if not ok:
            client.close()
            raise ModbusIOError(f"Modbus {self._peer()}: cannot connect (refused or unreachable)")
        self._client = client
        self._lost = lost
        if self._delay_after_connect:
            await asyncio.sleep(self._delay_after_connect)
        return client

    async def _ensure_link(self, address: tuple[str, int]) -> ModbusTcpLink:
        link = self._client
        if isinstance(link, ModbusTcpLink) and link.connected:
            return link
        self._drop()
        try:
            link = await asyncio.wait_for(ModbusTcpLink.open(*address), self._connect_timeout)
        except TimeoutError:
            raise ModbusIOError(
                f"Modbus {self._peer()}: no connection within {self._connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise ModbusIOError(f"Modbus {self._peer()}: cannot connect: {exc}") from exc
        self._client = link
        if self._delay_after_connect:
            await asyncio.sleep(self._delay_after_connect)
        return link

    async def _call_link(
        self, what: str, unit: int, pdu: bytes, decode: Decode, timeout: float | None
    ) -> Any:
        """Send `pdu` over the Modbus TCP link, what `decode` makes of the answer."""
        address = self._link_address
        assert address is not None

        async def request() -> bytes:
            return await (await self._ensure_link(address)).request(unit, pdu)

        answer = await self._locked(what, request, timeout)
        try:
            return decode(pdu[0], answer)
        except ExceptionAnswer as exc:
            raise self._exception(what, exc.code) from None
        except LinkError as exc:
            raise ModbusIOError(f"Modbus {self._peer()}: {what}: {exc}") from None

    async def _call(
        self,
        what: str,
        request: Callable[[Client], Awaitable[Any]],
        timeout: float | None,
    ) -> Any:
        async def call() -> Any:
            return await self._race_connection_loss(request(await self._ensure_connected()))

        response = await self._locked(what, call, timeout)
        if response is None:
            raise ModbusIOError(f"Modbus {self._peer()}: {what}: empty answer")
        if response.isError():
            code = getattr(response, "exception_code", None)
            if isinstance(code, int):
                raise self._exception(what, code)
            raise ModbusIOError(f"Modbus {self._peer()}: {what}: error answer {response}")
        return response

    async def _locked(
        self, what: str, call: Callable[[], Awaitable[Any]], timeout: float | None
    ) -> Any:
        """`call()` alone on the connection within the deadline; anything that could leave
        the connection out of step drops it."""
        deadline = self._deadline(timeout)
        async with self._lock:
            try:
                async with asyncio.timeout(deadline):
                    return await call()
            except TimeoutError:
                self._drop()
                raise ModbusIOError(
                    f"Modbus {self._peer()}: {what}: no answer within {deadline:g} s"
                ) from None
            except ModbusIOError:
                self._drop()
                raise
            except LinkError as exc:
                self._drop()
                raise ModbusIOError(f"Modbus {self._peer()}: {what}: {exc}") from None
            except (ModbusException, OSError) as exc:
                self._drop()
                raise ModbusIOError(f"Modbus {self._peer()}: {what}: {exc}") from exc
            except asyncio.CancelledError:
                self._drop()
                raise

    def _exception(self, what: str, code: int) -> ModbusIOError:
        return ModbusIOError(
            f"Modbus {self._peer()}: {what}: exception {code} ({exception_name(code)})",
            exception_code=code,
        )

    async def _race_connection_loss(self, request: Awaitable[Any]) -> Any:
        """Await `request`, failing at once if the peer closes the connection meanwhile."""
        pending = asyncio.ensure_future(request)
        lost = self._lost
        try:
            if lost is None:
                return await pending
            done, _ = await asyncio.wait({pending, lost}, return_when=asyncio.FIRST_COMPLETED)
            if pending in done:
                return pending.result()
            raise ModbusIOError(f"Modbus {self._peer()}: connection closed by the device")
        finally:
            if not pending.done():
                pending.cancel()


_READ_KINDS = {1: "coil(s)", 2: "discrete input(s)", 3: "holding register(s)",
               4: "input register(s)"}


class ModbusTcpClientAdapter(ModbusClientAdapter):
    """A TCP connection to `host:port`: Modbus TCP, or with `framing` "rtu" or "ascii"
    the serial frames carried over TCP (a transparent RS-485 gateway)."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        timeout: float = 2.0,
        *,
        framing: str = "tcp",
        connect_timeout: float | None = None,
        delay_after_connect: float = 0.0,
    ) -> None:
        if not host:
            raise ValueError("Modbus host must not be empty")
        if not 0 < port < 65536:
            raise ValueError(f"Modbus port {port} out of range 1..65535")
        super().__init__(timeout, framing=framing, connect_timeout=connect_timeout,
                         delay_after_connect=delay_after_connect)
        self._host = host
        self._port = port
        if framing == "tcp":
            self._link_address = (host, port)

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    def _peer(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        framing = "" if self._framing == "tcp" else f" ({self._framing.upper()} over TCP)"
        return f"{host}:{self._port}{framing}"

    def _make_client(self, on_connection_change: Callable[[bool], None]) -> Client:
        return AsyncModbusTcpClient(
            self._host,
            port=self._port,
            framer=_FRAMERS[self._framing],
            timeout=_INNER_TIMEOUT_S,
            retries=0,
            reconnect_delay=0,  # 0 disables pymodbus's own background reconnects
            trace_connect=on_connection_change,
        )


def _check_unit(unit: int) -> None:
    if not 0 <= unit <= 255:
        raise ValueError(f"Modbus unit id {unit} out of range 0..255")


def _check_range(address: int, count: int, limit: int) -> None:
    if not 0 <= address <= 0xFFFF:
        raise ValueError(f"Modbus register address {address} out of range 0..65535")
    if not 1 <= count <= limit:
        raise ValueError(f"Modbus register count {count} out of range 1..{limit}")
    if address + count > 0x10000:
        raise ValueError(f"Modbus registers {address}..{address + count - 1} exceed 65535")


def _check_value(value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"Modbus register value {value} out of range 0..65535")
