"""HTTP-input devices: meters and EVSEs whose values are pushed to us, not read.

`set_ajax_meter` / `set_ajax_evse` (and MQTT) hand in readings; the charging manager
reads the latest one. A reading older than `stale_after` seconds is a communication
error, so a feeder that stops cannot leave an old, harmless-looking value in place.
Nothing here waits for I/O, so the manager takes readings (`latest`) and hands over
commands (`set_command`) synchronously; `read` and `apply` are the same for the driver
protocols.
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

    def fresh(self, mono: float) -> bool:
        """Whether a reading was pushed and is no older than `stale_after` at `mono`."""
        at = self.pushed_at
        return at is not None and mono - at <= self.stale_after

    def _check_fresh(self, mono: float | None = None) -> None:
        if self.pushed_at is None:
            raise DeviceError("no values have been pushed yet")
        age = (self.clock.monotonic() if mono is None else mono) - self.pushed_at
        if age > self.stale_after:
            raise DeviceError(f"no values pushed for {age:.0f} s")


class AjaxMeter(_Pushed):
    def __init__(self, clock: Clock, stale_after: float = DEFAULT_STALE_AFTER_S) -> None:
        super().__init__(clock, stale_after)
        self.last = MeterReading()

    def push(self, reading: MeterReading) -> None:
        self.last = reading
        self.pushed_at = self.clock.monotonic()

    def latest(self, mono: float | None = None) -> MeterReading:
        """The last pushed reading; raises DeviceError if there is none or it is stale
        (at `mono`, the clock's monotonic time, if given)."""
        self._check_fresh(mono)
        return self.last

    async def read(self) -> MeterReading:
        return self.latest()

    async def close(self) -> None:
        return None


class AjaxEvse(_Pushed):
    def __init__(self, clock: Clock, stale_after: float = DEFAULT_STALE_AFTER_S) -> None:
        super().__init__(clock, stale_after)
        self.last = EvseReading()
        self.command = EvseCommand(enabled=False, current_ma=0)
        self.wake_pending = False  # a wake-up not yet handed to the feeder

    def push(self, reading: EvseReading, mono: float | None = None) -> None:
        """Keep `reading`, pushed now (or at `mono`, the clock's monotonic time)."""
        self.last = reading
        self.pushed_at = self.clock.monotonic() if mono is None else mono

    def latest(self, mono: float | None = None) -> EvseReading:
        """The last pushed reading; raises DeviceError if there is none or it is stale
        (at `mono`, the clock's monotonic time, if given)."""
        self._check_fresh(mono)
        reading = self.last
        if reading.rfid:
            self.last = _without_rfid(reading)
        return reading

    async def read(self) -> EvseReading:
        return self.latest()

    def set_command(self, command: EvseCommand) -> None:
        """What the feeder is told in the answer to its next push."""
        self.command = command
        if command.wake:
            self.wake_pending = True

    async def apply(self, command: EvseCommand) -> None:
        self.set_command(command)

    def take_wake(self) -> bool:
        """Whether the feeder should interrupt the control pilot (handed over once)."""
        pending, self.wake_pending = self.wake_pending, False
        return pending

    async def close(self) -> None:
        return None


def _without_rfid(reading: EvseReading) -> EvseReading:
    """An RFID is handed over once; later reads of the same push don't repeat it."""
    return replace(reading, rfid="") if reading.rfid else reading
