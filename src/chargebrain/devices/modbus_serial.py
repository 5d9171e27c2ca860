"""The Modbus client adapter of a serial line (RS-485 or RS-232), RTU or ASCII framing.

Everything but opening the line is the common adapter's (`devices.modbus_client`): one
connection shared by any number of unit ids, requests serialised, a deadline on every
call, the line dropped after anything that could leave it out of step. pymodbus's serial
client (with pyserial) carries the frames; this module and `devices.modbus_client` are
the only ones that import pymodbus's client API.
"""

from __future__ import annotations

from collections.abc import Callable

from pymodbus.client import AsyncModbusSerialClient

from chargebrain.devices.modbus_client import (
    _FRAMERS,
    _INNER_TIMEOUT_S,
    Client,
    ModbusClientAdapter,
)

__all__ = ["ModbusSerialClientAdapter"]


class ModbusSerialClientAdapter(ModbusClientAdapter):
    """A serial line (RS-485 or RS-232) at `device` (`/dev/ttyUSB0`, `COM3`), RTU or
    ASCII framing. Parity "N", "E" or "O"."""

    def __init__(
        self,
        device: str,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        timeout: float = 2.0,
        *,
        framing: str = "rtu",
    ) -> None:
        if not device:
            raise ValueError("serial device must not be empty")
        if framing == "tcp":
            raise ValueError("a serial line carries RTU or ASCII frames, not Modbus TCP")
        if parity not in ("N", "E", "O") or bytesize not in (7, 8) or stopbits not in (1, 2):
            raise ValueError("serial settings: data bits 7 or 8, parity N, E or O, "
                             "stop bits 1 or 2")
        if not 300 <= baudrate <= 4_000_000:
            raise ValueError(f"baud rate {baudrate} out of range 300..4000000")
        super().__init__(timeout, framing=framing)
        self.device = device
        self.settings = (baudrate, bytesize, parity, stopbits)

    def _peer(self) -> str:
        baud, size, parity, stop = self.settings
        return f"{self.device},{baud},{size},{parity},{stop} ({self._framing.upper()})"

    def _make_client(self, on_connection_change: Callable[[bool], None]) -> Client:
        baud, size, parity, stop = self.settings
        return AsyncModbusSerialClient(
            self.device,
            framer=_FRAMERS[self._framing],
            baudrate=baud,
            bytesize=size,
            parity=parity,
            stopbits=stop,
            timeout=_INNER_TIMEOUT_S,
            retries=0,
            reconnect_delay=0,
            trace_connect=on_connection_change,
        )
