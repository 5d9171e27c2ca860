"""Modbus TCP client adapter: the one module that imports pymodbus's client API.

Every Modbus client in chargebrain (meters described by definitions, remote Power Brain
controllers, wallboxes) talks through `ModbusTcpClientAdapter`, so a pymodbus upgrade touches
only this file. The adapter connects on demand, serialises the requests of concurrent callers
on its one connection, puts a deadline on every call, drops the connection after anything
that could leave it out of step (timeout, cancellation, transport error) and reconnects on
the next call. Every failure surfaces as `ModbusIOError` with a message naming the peer, the
unit and the registers.

This module must never know what the registers mean, and must never let a pymodbus type or
exception escape to its callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from chargebrain.devices.errors import ModbusIOError

__all__ = ["MAX_READ_REGISTERS", "MAX_WRITE_REGISTERS", "ModbusIOError", "ModbusTcpClientAdapter"]

# Protocol limits (Modbus application protocol v1.1b3, FC3/FC4 and FC16).
MAX_READ_REGISTERS = 125
MAX_WRITE_REGISTERS = 123

DEFAULT_PORT = 502

# pymodbus keeps its own response timer; the adapter enforces the real deadline, so the inner
# one only has to be longer than any deadline a caller may ask for.
_INNER_TIMEOUT_S = 3600.0

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


class ModbusTcpClientAdapter:
    """One Modbus TCP connection to `host:port`, shared by any number of unit ids.

    `timeout` is the default deadline of one call in seconds (connecting included);
    every method accepts `timeout=` to override it for that call. `connect_timeout` bounds
    the TCP connect alone (defaults to `timeout`); `delay_after_connect` is waited after each
    new connection, for devices that need a moment before the first request.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        timeout: float = 2.0,
        *,
        connect_timeout: float | None = None,
        delay_after_connect: float = 0.0,
    ) -> None:
        if not host:
            raise ValueError("Modbus host must not be empty")
        if not 0 < port < 65536:
            raise ValueError(f"Modbus port {port} out of range 1..65535")
        if timeout <= 0:
            raise ValueError("Modbus timeout must be positive")
        self._host = host
        self._port = port
        self._timeout = timeout
        self._connect_timeout = connect_timeout if connect_timeout else timeout
        self._delay_after_connect = max(0.0, delay_after_connect)
        self._client: AsyncModbusTcpClient | None = None
        self._lost: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()

    # -- properties -----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    def __repr__(self) -> str:
        return f"ModbusTcpClientAdapter({self._host}:{self._port})"

    # -- connection -----------------------------------------------------------------------

    async def connect(self, *, timeout: float | None = None) -> None:
        """Open the connection now (calls also connect on demand)."""
        deadline = self._deadline(timeout)
        async with self._lock:
            try:
                async with asyncio.timeout(deadline):
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

    async def __aenter__(self) -> ModbusTcpClientAdapter:
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
        """Read registers with function code 3 (holding) or 4 (input)."""
        _check_unit(unit)
        _check_range(address, count, MAX_READ_REGISTERS)
        if function_code not in (3, 4):
            raise ValueError(f"Modbus read function code must be 3 or 4, not {function_code}")
        what = f"read of {count} {'holding' if function_code == 3 else 'input'} register(s) at "
        what += f"{address} (0x{address:04X}) from unit {unit}"

        async def request(client: AsyncModbusTcpClient) -> Any:
            if function_code == 3:
                return await client.read_holding_registers(address, count=count, device_id=unit)
            return await client.read_input_registers(address, count=count, device_id=unit)

        response = await self._call(what, request, timeout)
        registers = list(getattr(response, "registers", None) or [])
        if len(registers) != count:
            raise ModbusIOError(
                f"Modbus {self._peer()}: {what}: answer holds {len(registers)} register(s)"
            )
        return [int(r) & 0xFFFF for r in registers]

    async def write_register(
        self, unit: int, address: int, value: int, *, timeout: float | None = None
    ) -> None:
        """Write one holding register (FC6)."""
        _check_unit(unit)
        _check_range(address, 1, 1)
        _check_value(value)
        what = f"write of register {address} (0x{address:04X}) on unit {unit}"

        async def request(client: AsyncModbusTcpClient) -> Any:
            return await client.write_register(address, value, device_id=unit)

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

        async def request(client: AsyncModbusTcpClient) -> Any:
            return await client.write_registers(address, payload, device_id=unit)

        await self._call(what, request, timeout)

    # -- internals ------------------------------------------------------------------------

    def _peer(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

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

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()

        def on_connection_change(connected: bool) -> None:
            # Called by pymodbus when the peer closes the connection; wakes a waiting request.
            if not connected and not lost.done():
                lost.set_result(None)

        client = AsyncModbusTcpClient(
            self._host,
            port=self._port,
            timeout=_INNER_TIMEOUT_S,
            retries=0,
            reconnect_delay=0,  # 0 disables pymodbus's own background reconnects
            trace_connect=on_connection_change,
        )
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

    async def _call(
        self,
        what: str,
        request: Callable[[AsyncModbusTcpClient], Awaitable[Any]],
        timeout: float | None,
    ) -> Any:
        deadline = self._deadline(timeout)
        async with self._lock:
            try:
                async with asyncio.timeout(deadline):
                    client = await self._ensure_connected()
                    response = await self._race_connection_loss(request(client))
            except TimeoutError:
                self._drop()
                raise ModbusIOError(
                    f"Modbus {self._peer()}: {what}: no answer within {deadline:g} s"
                ) from None
            except ModbusIOError:
                self._drop()
                raise
            except (ModbusException, OSError) as exc:
                self._drop()
                raise ModbusIOError(f"Modbus {self._peer()}: {what}: {exc}") from exc
            except asyncio.CancelledError:
                self._drop()
                raise
        if response is None:
            raise ModbusIOError(f"Modbus {self._peer()}: {what}: empty answer")
        if response.isError():
            code = getattr(response, "exception_code", None)
            if isinstance(code, int):
                raise ModbusIOError(
                    f"Modbus {self._peer()}: {what}: exception {code} ({exception_name(code)})",
                    exception_code=code,
                )
            raise ModbusIOError(f"Modbus {self._peer()}: {what}: error answer {response}")
        return response

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
