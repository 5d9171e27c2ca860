"""An EVSE driver that reads and commands whatever a charger definition describes.

`DefinedEvse` reads the definition's variables through a `DefinitionReader` and turns them
into an `EvseReading`: `state` (mapped to a control-pilot state A..F by the definition),
`current_l1..3` (mA), `power_w`, `import_wh` (the energy counter), `max_current` (what
the wallbox signals, mA), `rfid` (a card shown: reported when it changes), texts for the
model. A command runs the definition's actions: `set_phases` when it asks for a phase
count, then `enable` and `set_current` (the current within the definition's
`min_current`..`max_current`), or `disable`; a wake-up runs `wake_up` in a task of its
own, so that its delays never hold the manager's cycle. `init` runs before the first
reading and again after the wallbox was lost; `keepalive` runs with the readings every
`keepalive_s` (fail-safes and watchdogs that must be fed more often than the manager's
30 s refresh writes).

A state the map does not know, a value that does not fit, a timeout or an exception
answer: each is a `DeviceError`, which the manager takes as a communication error with
the worst-case assumption. Nothing here decides anything about charging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from chargebrain.clock import Clock, RealClock
from chargebrain.core.model import EvseCommand, EvseReading, EvseState
from chargebrain.core.phases import Phases
from chargebrain.devices.defined.reader import DEFAULT_TIMEOUT_S, DefinitionReader, Value
from chargebrain.devices.defined.writer import command_context, run_steps
from chargebrain.devices.errors import DeviceError
from chargebrain.devices.meterdef import ChargerControl, DefinitionValues, MeterDefinition
from chargebrain.devices.modbus_client import ModbusClientAdapter

__all__ = ["CP_TO_STATE", "DefinedEvse"]

log = logging.getLogger("chargebrain.devices")

CP_TO_STATE = {
    "A": EvseState.WAITING,
    "B": EvseState.EV_PRESENT,
    "C": EvseState.CHARGING,
    "D": EvseState.CHARGING_VENT,
    "E": EvseState.ERROR,
    "F": EvseState.ERROR,
}
#: Voltage a current is multiplied with where a wallbox reports currents but no power.
NOMINAL_V = 230.0


class DefinedEvse:
    """One wallbox read and commanded through its charger definition."""

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
    ) -> None:
        if definition.charger is None:
            raise DeviceError(f"{definition.dev_type} describes a meter, not a charger")
        self.control: ChargerControl = definition.charger
        self.clock: Clock = clock or RealClock()
        self._reader = DefinitionReader(
            definition, address, unit_id, what="EVSE", timeout=timeout, clock=self.clock,
            modbus=modbus, session=session)
        self._lock = asyncio.Lock()
        self._ready = False  # init has run since the wallbox was (re)gained
        self._values: dict[str, Value] = {}
        self._command = EvseCommand(enabled=False, current_ma=0)
        self._keepalive_at: float | None = None
        self._rfid = ""
        self._wake: asyncio.Task[None] | None = None

    @property
    def definition(self) -> MeterDefinition:
        return self._reader.definition

    def __repr__(self) -> str:
        return f"DefinedEvse({self.definition.dev_type} at {self._reader.address})"

    async def close(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.cancel()
            with contextlib.suppress(asyncio.CancelledError, DeviceError):
                await self._wake
        await self._reader.close()

    async def __aenter__(self) -> DefinedEvse:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- reading --------------------------------------------------------------------------

    async def read(self) -> EvseReading:
        async with self._lock:
            try:
                await self._prepare()
                values, _ = await self._reader.read()
                self._values = values
                reading = self._reading(values)
                await self._keepalive()
            except DeviceError:
                self._lost()
                raise
            return reading

    def _lost(self) -> None:
        self._ready = False
        self._reader.forget_once()

    async def _prepare(self) -> None:
        if self._ready:
            return
        if self.control.init:
            await run_steps(self._reader, self.control.init, self._context(), "init")
        self._ready = True
        self._keepalive_at = self.clock.monotonic()

    async def _keepalive(self) -> None:
        control = self.control
        if not control.keepalive or control.keepalive_s <= 0:
            return
        now = self.clock.monotonic()
        if self._keepalive_at is not None and now - self._keepalive_at < control.keepalive_s:
            return
        await run_steps(self._reader, control.keepalive, self._context(), "keepalive")
        self._keepalive_at = now

    def _context(self, command: EvseCommand | None = None, phases: int = 0) -> DefinitionValues:
        cmd = command or self._command
        current = self._clamped(cmd.current_ma) if cmd.enabled else 0
        return command_context(self._values, current, cmd.enabled, phases)

    def _clamped(self, current_ma: int) -> int:
        return max(self.control.min_current_ma, min(self.control.max_current_ma, current_ma))

    def _reading(self, values: dict[str, Value]) -> EvseReading:
        cp = values.get("state")
        state = CP_TO_STATE.get(cp) if isinstance(cp, str) else None
        if state is None:
            raise DeviceError(f"{self._reader.where()}: state {cp!r} is not a control-pilot "
                              "state A..F")
        num = {k: v for k, v in values.items() if isinstance(v, float)}
        names = [f"current_l{i}" for i in (1, 2, 3)]
        has_currents = any(n in num for n in names)
        currents = Phases.of([max(0, round(num.get(n, 0.0))) for n in names])
        power = num.get("power_w")
        if power is None and has_currents:
            volts = [num.get(f"voltage_l{i}", NOMINAL_V) for i in (1, 2, 3)]
            power = sum(c / 1000 * v for c, v in zip(currents, volts, strict=True))
        rfid = values.get("rfid")
        text = rfid.strip() if isinstance(rfid, str) else (
            f"{int(rfid)}" if isinstance(rfid, float) and rfid else "")
        shown = text if text and text != self._rfid else ""
        self._rfid = text
        maximum = num.get("max_current")
        model = values.get("type_designation")
        return EvseReading(
            state=state,
            currents=currents,
            power_w=max(0.0, power or 0.0),
            total_energy_wh=num.get("import_wh", 0.0),
            has_meter=has_currents or power is not None,
            max_current_ma=round(maximum) if maximum is not None else None,
            rfid=shown,
            model=model if isinstance(model, str) and model else self.definition.name,
            energy_known="import_wh" in num,
        )

    # -- commanding -----------------------------------------------------------------------

    async def apply(self, command: EvseCommand) -> None:
        control = self.control
        async with self._lock:
            try:
                await self._prepare()
                if command.phases in (1, 3) and control.set_phases:
                    await run_steps(self._reader, control.set_phases,
                                    self._context(command, command.phases), "set_phases")
                if command.enabled and command.current_ma > 0:
                    ctx = self._context(command)
                    if control.enable:
                        await run_steps(self._reader, control.enable, ctx, "enable")
                    await run_steps(self._reader, control.set_current, ctx, "set_current")
                else:
                    await run_steps(self._reader, control.disable, self._context(command),
                                    "disable")
            except DeviceError:
                self._lost()
                raise
            self._command = command
            self._keepalive_at = self.clock.monotonic()
        if command.wake and control.wake_up and (self._wake is None or self._wake.done()):
            self._wake = asyncio.create_task(self._wake_up(command))

    async def _wake_up(self, command: EvseCommand) -> None:
        """Interrupt the control pilot (its steps may wait between writes)."""
        try:  # not under the lock: readings go on between its writes
            await run_steps(self._reader, self.control.wake_up, self._context(command),
                            "wake_up")
        except DeviceError as exc:
            log.info("%s", exc)
