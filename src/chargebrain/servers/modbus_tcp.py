"""Modbus TCP server for the controller's three logical devices.

The only module that imports pymodbus's server API (it changed several times in 3.x).
One listening port per logical device (EVSE on N, S0 meter 1 on N+1, S0 meter 2 on N+2),
each answering function codes 3, 6 and 16 through the same register banks and validation
as the HTTP view. Unknown registers and gaps answer exception 02, invalid values 03, an
unknown unit id exception 0B, all without tracebacks in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.server import ModbusTcpServer

from chargebrain.powerbrain.bank import RegisterBank, RegisterError

log = logging.getLogger("chargebrain.modbus")

READ_HOLDING = 3
WRITE_SINGLE = 6
WRITE_MULTIPLE = 16
# Unit ids every device answers besides its configured slave id (TCP convention).
ANY_UNIT = (0, 255)


class PortInUseError(Exception):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is already in use")
        self.port = port


class _BankContext(ModbusServerContext):
    """Answers pymodbus's datastore calls from one register bank."""

    def __init__(self, bank: RegisterBank) -> None:
        # The base initialiser builds a simulator datastore we do not use.
        self.bank = bank
        self.old_simulator = True
        self.simdevices = []
        self._devices = {}

    def _unit_ok(self, device_id: int) -> bool:
        return device_id in ANY_UNIT or device_id == self.bank.get("slave_id")

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | ExcCodes:
        if not self._unit_ok(device_id):
            return ExcCodes.GATEWAY_NO_RESPONSE
        if func_code not in (READ_HOLDING, WRITE_SINGLE, WRITE_MULTIPLE):
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            return self.bank.read_words(address, count)
        except RegisterError as exc:
            return ExcCodes(int(exc.code))

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[Any]
    ) -> ExcCodes | None:
        if not self._unit_ok(device_id):
            return ExcCodes.GATEWAY_NO_RESPONSE
        if func_code not in (WRITE_SINGLE, WRITE_MULTIPLE):
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            self.bank.write_words(address, [int(v) for v in values])
        except RegisterError as exc:
            log.info("Modbus write %d rejected: %s", address, exc.message)
            return ExcCodes(int(exc.code))
        return None

    def device_ids(self) -> list[int]:
        return [self.bank.get("slave_id")]


class ModbusTcpServers:
    """The three listening servers; start() binds all or none."""

    def __init__(self, banks: Sequence[RegisterBank], host: str, first_port: int) -> None:
        self.host = host
        self.ports = [first_port + i for i in range(len(banks))]
        self._banks = list(banks)
        self._servers: list[Any] = []

    async def start(self) -> None:
        try:
            for bank, port in zip(self._banks, self.ports, strict=True):
                server = ModbusTcpServer(
                    _BankContext(bank), address=(self.host, port), ignore_missing_devices=False
                )
                try:
                    await server.serve_forever(background=True)
                except RuntimeError:
                    raise PortInUseError(self.host, port) from None
                self._servers.append(server)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            try:
                await server.shutdown()
            except Exception:
                log.debug("error while closing a Modbus server", exc_info=True)
        await asyncio.sleep(0)
