"""Small capability protocols that device drivers implement.

A meter can be read; an EVSE can be read and commanded. The charging manager asks only
these questions, whatever the device family; each driver implements what it can do.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from chargebrain.core.model import EvseCommand, EvseReading, MeterReading


@runtime_checkable
class MeterDriver(Protocol):
    async def read(self) -> MeterReading:
        """The current reading; raises DeviceError when the meter cannot be read."""

    async def close(self) -> None: ...


@runtime_checkable
class EvseDriver(Protocol):
    async def read(self) -> EvseReading:
        """The current state; raises DeviceError when the EVSE cannot be read."""

    async def apply(self, command: EvseCommand) -> None:
        """Make the EVSE offer `command`; raises DeviceError on failure."""

    async def close(self) -> None: ...


@runtime_checkable
class EvseReleasable(Protocol):
    """An EVSE that can be left without any limit of ours (an OCPP charge point whose
    charging profile is cleared): what the "cancel limit" disable policy asks."""

    def release(self) -> None:
        """Lift every limit; the next `apply` imposes one again. Never waits for I/O."""
