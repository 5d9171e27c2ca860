"""The narrow interface between the controller logic and its hardware, and a simulation.

The controller sets the control pilot (current offer, on/off), the contactors and reads
back what the hardware senses: the pilot state the car produces, the cable's capacity,
the currents the attached meter measures, S0 pulses and RFID cards. A real hardware
backend implements the same two protocols; `SimEvseHardware` and `SimS0Input` simulate
a car behind the cable and loads behind the S0 meters.

Simulation state only; no I/O, no clock reads (time comes in as `dt`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol


class CpState(IntEnum):
    """Control pilot state as register 8092 encodes it."""

    A = 0  # no vehicle
    B = 1  # vehicle detected
    C = 2  # charging
    D = 3  # charging with ventilation
    E = 4  # no power
    F = 5  # error


@dataclass(frozen=True, slots=True)
class PilotOutput:
    """What the controller drives: the offered current and the contactors."""

    offered_ma: int  # 0 = no PWM offer (charging not allowed)
    cp_off: bool = False  # CP at 0 V: the car sees an unplug
    one_phase: bool = False  # the 1-phase contactor is in use: the car gets L1 only
    relay2: bool = False


@dataclass(frozen=True, slots=True)
class Sensed:
    """What the hardware measures after a step."""

    cp: CpState
    cable_ma: int  # PP: cable capacity, 0 = no cable
    currents_ma: tuple[int, int, int]  # attached meter, per wallbox phase


class EvseHardware(Protocol):
    def drive(self, out: PilotOutput) -> None: ...

    def step(self, dt: float) -> Sensed: ...

    def take_rfid(self) -> str | None:
        """A card presented to the reader since the last call, if any."""


class S0Hardware(Protocol):
    def pulses(self, dt: float, pulses_per_kwh: int) -> list[float]:
        """Offsets in seconds within the last `dt` at which pulses arrived."""


# --- simulation -------------------------------------------------------------------------


@dataclass
class SimCar:
    """A car behind the cable: draws what it is offered up to its own limits."""

    max_ma: int = 16_000
    phases: int = 3
    need_wh: float | None = None  # None: never full
    cable_ma: int = 32_000
    charged_wh: float = 0.0
    name: str = "car"

    @property
    def phase_mask(self) -> int:
        """The wallbox phases it draws on behind the 3-phase contactor (L1 first)."""
        return (1 << max(1, min(3, self.phases))) - 1

    @property
    def wants_energy(self) -> bool:
        return self.need_wh is None or self.charged_wh < self.need_wh


@dataclass
class SimEvseHardware:
    """Simulated wallbox hardware: contactors, pilot, an attached meter, a card reader."""

    voltage: float = 230.0
    car: SimCar | None = None
    wired_phases: int = 7
    _out: PilotOutput = field(default_factory=lambda: PilotOutput(0))
    _rfids: list[str] = field(default_factory=list)
    _draw: tuple[int, int, int] = (0, 0, 0)

    def plug(self, car: SimCar) -> None:
        self.car = car

    def unplug(self) -> SimCar | None:
        car, self.car = self.car, None
        self._draw = (0, 0, 0)
        return car

    def present_card(self, rfid: str) -> None:
        self._rfids.append(rfid)

    def take_rfid(self) -> str | None:
        return self._rfids.pop(0) if self._rfids else None

    def drive(self, out: PilotOutput) -> None:
        self._out = out

    def step(self, dt: float) -> Sensed:
        car = self.car
        out = self._out
        if car is None:
            self._draw = (0, 0, 0)
            return Sensed(CpState.A, 0, self._draw)
        if out.cp_off:
            self._draw = (0, 0, 0)
            return Sensed(CpState.B, car.cable_ma, self._draw)
        amps = min(out.offered_ma, car.max_ma, car.cable_ma)
        drawing = out.offered_ma >= 6000 and car.wants_energy and amps >= 6000
        if not drawing:
            self._draw = (0, 0, 0)
            return Sensed(CpState.B, car.cable_ma, self._draw)
        phase_mask = 1 if out.one_phase else car.phase_mask
        phase_mask &= self.wired_phases or 7
        draw = tuple(amps if phase_mask & (1 << i) else 0 for i in range(3))
        self._draw = (draw[0], draw[1], draw[2])
        car.charged_wh += sum(self._draw) / 1000.0 * self.voltage * dt / 3600.0
        return Sensed(CpState.C, car.cable_ma, self._draw)


@dataclass
class SimS0Input:
    """A pulse meter behind an S0 input, measuring a load given as a function of time."""

    load_w: Callable[[float], float] = lambda _t: 0.0
    t: float = 0.0
    _fraction: float = 0.0  # pulses accumulated but not yet emitted

    def pulses(self, dt: float, pulses_per_kwh: int) -> list[float]:
        power = max(0.0, self.load_w(self.t))
        self.t += dt
        if power <= 0 or dt <= 0:
            return []
        rate = power * pulses_per_kwh / 3.6e6  # pulses per second
        offsets: list[float] = []
        # The next pulse arrives when the accumulated fraction reaches 1.
        remaining = 1.0 - self._fraction
        t = remaining / rate
        while t <= dt:
            offsets.append(t)
            t += 1.0 / rate
        emitted_until = offsets[-1] if offsets else 0.0
        self._fraction = (self._fraction + rate * dt) % 1.0 if not offsets else rate * (
            dt - emitted_until
        )
        return offsets
