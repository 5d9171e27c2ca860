"""The driver of a device that cannot be built from its stored settings.

A device whose settings refer to something that is not there (a group, a meter, a meter
definition), or whose driver cannot be made, stays in the inventory with what was
stored. Its driver answers every read and write with the reason, so the charging
manager sees it exactly as a device that stopped answering: a communication error with
the worst-case assumption for its load, and the reason in `last_error`.
"""

from __future__ import annotations

from chargebrain.core.model import EvseCommand, EvseReading, MeterReading
from chargebrain.devices.errors import DeviceError


class _Faulty:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def close(self) -> None:
        return None


class FaultyMeter(_Faulty):
    """A meter driver that fails every read with `reason`."""

    async def read(self) -> MeterReading:
        raise DeviceError(self.reason)


class FaultyEvse(_Faulty):
    """An EVSE driver that fails every read and write with `reason`."""

    async def read(self) -> EvseReading:
        raise DeviceError(self.reason)

    async def apply(self, command: EvseCommand) -> None:
        raise DeviceError(self.reason)
