"""Shared parts of the charger tests: a simulated wallbox served on loopback, the
bundled definition driving it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from chargebrain.devices.defined_evse import DefinedEvse
from chargebrain.devices.meterdef import MeterDefinition, load_definitions
from chargebrain.sim.wallboxes.base import SimWallbox
from chargebrain.sim.wallboxes.modbus_server import ModbusSimServer

_BUNDLED = load_definitions()


def bundled(dev_type: str) -> MeterDefinition:
    return _BUNDLED[dev_type]


@contextlib.asynccontextmanager
async def served(box: SimWallbox,
                 framing: str = "tcp") -> AsyncIterator[tuple[str, ModbusSimServer]]:
    """The box on a loopback port: (its address for the definition, the server)."""
    server = ModbusSimServer([box], framing)
    port = await server.start()
    prefix = "" if framing == "tcp" else f"{framing}://"
    try:
        yield f"{prefix}127.0.0.1:{port}", server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def driven(box: SimWallbox, framing: str = "tcp",
                 timeout: float = 1.0) -> AsyncIterator[tuple[DefinedEvse, ModbusSimServer]]:
    """The bundled definition of `box` driving it over `framing`."""
    async with served(box, framing) as (address, server):
        evse = DefinedEvse(bundled(box.dev_type), address, box.unit, timeout=timeout)
        try:
            yield evse, server
        finally:
            await evse.close()
