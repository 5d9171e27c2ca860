"""A simulated wallbox's physical side: the pilot it offers, the car, currents, energy.

`SimWallbox` keeps what a master commanded (a current limit, enabled or not), the
wallbox's fail-safe (a watchdog that, when the master has been silent for too long,
replaces the limit by the fail-safe current), the car behind it (plugged, how much and on
how many phases it draws, whether it wants to charge) and the energy counter. The
register maps of the makers are subclasses (`ModbusDevice`s). Time comes from `now`
(a monotonic clock the caller gives: the simulator's virtual one in scenarios, any in
tests; nothing here reads a clock of its own).

Word helpers turn values into registers as the devices' documentation lays them out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from chargebrain.sim.wallboxes.modbus_server import ModbusException

__all__ = ["SimWallbox", "double_words", "float_words", "str_words", "u32_words"]

IEC_MIN_MA = 6000


def u32_words(value: int, low_first: bool = False) -> list[int]:
    value &= 0xFFFFFFFF
    words = [value >> 16, value & 0xFFFF]
    return words[::-1] if low_first else words


def float_words(value: float) -> list[int]:
    raw = struct.unpack(">I", struct.pack(">f", value))[0]
    return [raw >> 16, raw & 0xFFFF]


def double_words(value: float) -> list[int]:
    raw = struct.unpack(">Q", struct.pack(">d", value))[0]
    return [(raw >> (48 - 16 * i)) & 0xFFFF for i in range(4)]


def str_words(text: str, count: int) -> list[int]:
    data = text.encode("latin-1")[: 2 * count].ljust(2 * count, b"\0")
    return [(data[2 * i] << 8) | data[2 * i + 1] for i in range(count)]


class SimWallbox:
    """The box and the car; subclasses add the maker's interface."""

    dev_type = ""

    def __init__(self, unit: int = 1, *, now: Callable[[], float],
                 voltage: float = 230.0) -> None:
        self.unit = unit
        self.now = now
        self.voltage = voltage
        self.limit_ma = 0  # what the master set (0: nothing)
        self.enabled = True
        self.failsafe_ma = 0
        self.watchdog_s = 0.0  # 0: no watchdog
        self.last_contact = now()
        self.phases = 3  # what the box switches to (1 or 3)
        self.car_plugged = False
        self.car_wants = True
        self.car_max_ma = 16_000
        self.car_phases = 3
        self.energy_wh = 0.0
        self.session_wh = 0.0
        self.rfid = ""
        self.requests = 0
        self.writes: list[tuple[int, int, tuple[int, ...]]] = []  # (func, address, values)
        self.cp_interruptions = 0
        # what the simulator's car shows (plugged, charging, currents), or None: the
        # box's own car model above
        self.sensed: tuple[bool, bool, tuple[int, int, int]] | None = None
        self._t = now()

    # -- the physical side ---------------------------------------------------------------

    def contact(self) -> None:
        """The master talked to the box (any request feeds the watchdog unless the
        maker's watchdog wants a particular register)."""
        self.advance()
        self.requests += 1
        self.last_contact = self.now()

    def fallen_back(self) -> bool:
        """The watchdog expired: the fail-safe current applies."""
        return self.watchdog_s > 0 and self.now() - self.last_contact > self.watchdog_s

    def offered_ma(self) -> int:
        """What the pilot offers the car now (0: charging not allowed)."""
        limit = self.failsafe_ma if self.fallen_back() else self.limit_ma
        if not self.enabled or limit < IEC_MIN_MA:
            return 0
        return limit

    def cp(self) -> str:
        if self.sensed is not None:
            plugged, charging, _ = self.sensed
            if not plugged:
                return "A"
            return "C" if charging and self.offered_ma() >= IEC_MIN_MA else "B"
        if not self.car_plugged:
            return "A"
        return "C" if self.car_wants and self.offered_ma() >= IEC_MIN_MA else "B"

    def sense(self, plugged: bool, charging: bool, currents: tuple[int, int, int]) -> None:
        """The simulator's car: from now on the box measures what it draws."""
        self.advance()
        if plugged and not self.car_plugged:
            self.session_wh = 0.0
        self.car_plugged = plugged
        self.sensed = (plugged, charging, currents)

    def currents_ma(self) -> tuple[int, int, int]:
        if self.cp() != "C":
            return (0, 0, 0)
        if self.sensed is not None:
            return self.sensed[2]
        amps = min(self.offered_ma(), self.car_max_ma)
        phases = min(self.car_phases, self.phases)
        return (amps, amps if phases == 3 else 0, amps if phases == 3 else 0)

    def power_w(self) -> float:
        return sum(self.currents_ma()) / 1000 * self.voltage

    def advance(self) -> None:
        """The energy counters up to now, at the present draw."""
        t = self.now()
        if t > self._t:
            wh = self.power_w() * (t - self._t) / 3600
            self.energy_wh += wh
            self.session_wh += wh
        self._t = t

    def plug(self, max_ma: int = 16_000, phases: int = 3, wants: bool = True) -> None:
        self.advance()
        self.car_plugged, self.car_max_ma, self.car_phases = True, max_ma, phases
        self.car_wants = wants
        self.session_wh = 0.0

    def unplug(self) -> None:
        self.advance()
        self.car_plugged = False
        self.rfid = ""

    def interrupt_cp(self) -> None:
        """A control-pilot interruption: a sleeping car wakes."""
        self.cp_interruptions += 1
        self.car_wants = True

    # -- Modbus (subclasses give the image and take the writes) --------------------------

    def image(self, func: int) -> dict[int, int]:
        """The readable registers (or bits) of function code `func` now."""
        return {}

    def on_write(self, func: int, address: int, values: Sequence[int]) -> None:
        raise ModbusException(2)

    def read(self, func: int, address: int, count: int) -> list[int]:
        self.contact()
        image = self.image(func)
        out: list[int] = []
        for a in range(address, address + count):
            if a not in image:
                raise ModbusException(2)
            out.append(image[a] & 0xFFFF)
        return out

    def write(self, func: int, address: int, values: Sequence[int]) -> None:
        self.contact()
        self.on_write(func, address, values)
        self.writes.append((func, address, tuple(values)))
