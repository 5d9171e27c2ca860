"""HTTP-input devices: meters and EVSEs whose values are pushed to us, not read.

`set_ajax_meter` / `set_ajax_evse` (and MQTT) hand in readings; the charging manager
reads the latest one. A reading older than `stale_after` seconds is a communication
error, so a feeder that stops cannot leave an old, harmless-looking value in place.
"""

from __future__ import annotations

from dataclasses import replace

from chargebrain.clock import Clock
from chargebrain.core.model import EvseCommand, EvseReading, MeterReading
from chargebrain.devices.errors import DeviceError

DEFAULT_STALE_AFTER_S = 30.0


class _Pushed:
    def __init__(self, clock: Clock, stale_after: float) -> None:
        self.clock = clock
        self.stale_after = stale_after
        self.pushed_at: float | None = None

    def _check_fresh(self) -> None:
        if self.pushed_at is None:
            raise DeviceError("no values have been pushed yet")
        age = self.clock.monotonic() - self.pushed_at
        if age > self.stale_after:
            raise DeviceError(f"no values pushed for {age:.0f} s")


class AjaxMeter(_Pushed):
    def __init__(self, clock: Clock, stale_after: float = DEFAULT_STALE_AFTER_S) -> None:
        super().__init__(clock, stale_after)
        self.last = MeterReading()

    def push(self, reading: MeterReading) -> None:
        self.last = reading
        self.pushed_at = self.clock.monotonic()

    async def read(self) -> MeterReading:
        self._check_fresh()
        return self.last

    async def close(self) -> None:
        return None


class AjaxEvse(_Pushed):
    def __init__(self, clock: Clock, stale_after: float = DEFAULT_STALE_AFTER_S) -> None:
        super().__init__(clock, stale_after)
        self.last = EvseReading()
        self.command = EvseCommand(enabled=False, current_ma=0)

    def push(self, reading: EvseReading) -> None:
        self.last = reading
        self.pushed_at = self.clock.monotonic()

    async def read(self) -> EvseReading:
        self._check_fresh()
        reading, self.last = self.last, _without_rfid(self.last)
        return reading

    async def apply(self, command: EvseCommand) -> None:
        self.command = command

    async def close(self) -> None:
        return None


def _without_rfid(reading: EvseReading) -> EvseReading:
    """An RFID is handed over once; later reads of the same push don't repeat it."""
    return replace(reading, rfid="") if reading.rfid else reading
