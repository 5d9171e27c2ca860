"""A meter driver that reads whatever a meter definition describes (Modbus, HTTP/JSON or
MQTT/JSON).

`DefinedMeter` reads the definition's variables through a `DefinitionReader`
(`devices/defined/reader.py`: requests, types, resolution, `once`, `expr`) and turns them
into a `MeterReading` in chargebrain units (W, mA, V, Wh). Every failure is a
`DeviceError` naming the meter and what went wrong.

Sign rule: many meters report current magnitudes only. When a phase's current is positive and
the same phase's active power (`power_w_lN`) is negative, the current is negated, so currents
follow the power's direction (negative = export). Missing `power_w` is the sum of the
per-phase powers, else `power_va` (and the reading is flagged as VA).

This module must never import pymodbus, never write to the device, and never decide
anything about charging.
"""

from __future__ import annotations

import asyncio

import aiohttp

from chargebrain.clock import Clock
from chargebrain.core.model import MeterReading
from chargebrain.core.phases import Phases
from chargebrain.devices.defined.decode import decode_registers, plan_register_reads, scale
from chargebrain.devices.defined.links import parse_http_base, parse_modbus_address
from chargebrain.devices.defined.reader import (
    DEFAULT_TIMEOUT_S,
    MQTT_STALE_AFTER_S,
    DefinitionReader,
    Value,
)
from chargebrain.devices.meterdef import MeterDefinition
from chargebrain.devices.modbus_client import ModbusClientAdapter
from chargebrain.devices.topics import TopicFeed

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MQTT_STALE_AFTER_S",
    "DefinedMeter",
    "decode_registers",
    "parse_http_base",
    "parse_modbus_address",
    "plan_register_reads",
    "scale",
]

_MAPPED_VARIABLES = frozenset(
    {
        "power_w",
        "current_l1",
        "current_l2",
        "current_l3",
        "voltage_l1",
        "voltage_l2",
        "voltage_l3",
        "import_wh",
        "export_wh",
        "soc",
    }
)


class DefinedMeter:
    """Reads one meter through its definition.

    `address`: Modbus "host[:port]" (port 502 by default), `rtu://host:port`, a serial
    line; HTTP "http://host:port", "host:port" or "host" (variable paths are appended).
    `unit_id` is the Modbus unit. `timeout` bounds every request (seconds). A `modbus`
    adapter or an aiohttp `session` may be shared between meters; the meter closes only
    what it created itself. An MQTT meter (address "mqtt": the configured broker) reads
    from `topics`.
    """

    def __init__(
        self,
        definition: MeterDefinition,
        address: str,
        unit_id: int = 1,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        clock: Clock | None = None,
        modbus: ModbusClientAdapter | None = None,
        session: aiohttp.ClientSession | None = None,
        topics: TopicFeed | None = None,
    ) -> None:
        self._reader = DefinitionReader(
            definition, address, unit_id, what="meter", timeout=timeout, clock=clock,
            modbus=modbus, session=session, topics=topics)
        self._texts: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._last: tuple[dict[str, Value], MeterReading] | None = None

    @property
    def definition(self) -> MeterDefinition:
        return self._reader.definition

    @property
    def address(self) -> str:
        return self._reader.address

    @property
    def texts(self) -> dict[str, str]:
        """Text variables of the last reading (type_designation, serial, versions, ...)."""
        return dict(self._texts)

    def __repr__(self) -> str:
        return f"DefinedMeter({self.definition.dev_type} at {self.address})"

    async def __aenter__(self) -> DefinedMeter:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release connections this meter opened (shared ones stay open)."""
        await self._reader.close()

    async def read(self) -> MeterReading:
        """Read all variables; raises DeviceError when the meter cannot be read."""
        async with self._lock:
            values, inputs = await self._reader.read()
            if self._last is not None and self._last[0] is values:
                return self._last[1]  # within upd_delay
            reading = self._assemble(values, inputs)
            self._last = (values, reading)
            return reading

    def _assemble(self, values: dict[str, Value], inputs: list[int]) -> MeterReading:
        num = {k: v for k, v in values.items() if isinstance(v, float)}
        self._texts = {k: v for k, v in values.items() if isinstance(v, str)}
        power = num.get("power_w")
        is_va = False
        if power is None:
            phase_powers = [num[f"power_w_l{i}"] for i in (1, 2, 3) if f"power_w_l{i}" in num]
            if phase_powers:
                power = sum(phase_powers)
            elif "power_va" in num:
                power, is_va = num["power_va"], True
            else:
                power = 0.0
        currents: list[int] = []
        for i in (1, 2, 3):
            current = num.get(f"current_l{i}", 0.0)
            phase_power = num.get(f"power_w_l{i}")
            if phase_power is not None and phase_power < 0 < current:
                current = -current
            currents.append(round(current))
        default_voltages = MeterReading().voltages
        voltages = (
            num.get("voltage_l1", default_voltages[0]),
            num.get("voltage_l2", default_voltages[1]),
            num.get("voltage_l3", default_voltages[2]),
        )
        extra = {k: v for k, v in num.items() if k not in _MAPPED_VARIABLES}
        for i, bit in enumerate(inputs, start=1):
            extra[f"input{i}"] = float(bit)
        return MeterReading(
            power_w=power,
            currents=Phases.of(currents),
            voltages=voltages,
            import_wh=num.get("import_wh", 0.0),
            export_wh=num.get("export_wh", 0.0),
            model=self._texts.get("type_designation") or self.definition.name,
            is_va=is_va,
            soc=num.get("soc"),
            extra=extra,
        )
