"""Readings and commands exchanged between device drivers and the charging manager.

Plain immutable values in chargebrain's internal units (mA, W, Wh, V, seconds). Drivers
produce readings and consume commands; the core never does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from chargebrain.core.phases import ZERO, Phases


class EvseState(IntEnum):
    """Charging-manager EVSE state as get_dev_info reports it (1..6)."""

    WAITING = 1  # A: no vehicle
    EV_PRESENT = 2  # B: vehicle detected, not charging
    CHARGING = 3  # C
    CHARGING_VENT = 4  # D
    ERROR = 5  # E/F
    OFFLINE = 6  # no communication

    @property
    def plugged(self) -> bool:
        return self in (EvseState.EV_PRESENT, EvseState.CHARGING, EvseState.CHARGING_VENT)

    @property
    def charging(self) -> bool:
        return self in (EvseState.CHARGING, EvseState.CHARGING_VENT)


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One reading of a meter. Currents are signed (negative = export) in mA."""

    power_w: float = 0.0
    currents: Phases = ZERO
    voltages: tuple[float, float, float] = (230.0, 230.0, 230.0)
    import_wh: float = 0.0
    export_wh: float = 0.0
    model: str = ""
    is_va: bool = False
    soc: float | None = None
    # Extra named values a meter definition may provide (user variables, inputs).
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EvseReading:
    """One reading of an EVSE (charge point)."""

    state: EvseState = EvseState.WAITING
    currents: Phases = ZERO  # measured at the EVSE, EVSE phase order, mA
    power_w: float = 0.0
    total_energy_wh: float = 0.0
    has_meter: bool = False  # currents (and power) are measured
    # The current the EVSE reports it is signalling / may deliver (mA), if known.
    max_current_ma: int | None = None
    rfid: str = ""
    model: str = ""
    energy_known: bool = True  # total_energy_wh is a meter reading (else integrate)


#: No meter or EVSE shows more than this of anything (W, mA, V, Wh, %): a reading that
#: does is broken, and sums of such numbers could overflow a float.
PLAUSIBLE_LIMIT = 1e15


def implausible(reading: MeterReading | EvseReading) -> str | None:
    """Why `reading` cannot be true (a number not finite or beyond ±PLAUSIBLE_LIMIT), or
    None if it can. A meter's `extra` values are not looked at: a definition's own
    variables (a serial number, say) may be anything, and nothing adds them up."""
    lim = PLAUSIBLE_LIMIT
    c = reading.currents
    # The usual case in one expression (every reading of every cycle passes here); the
    # names are looked for only when something is wrong. `not x <= lim` is also NaN.
    if isinstance(reading, MeterReading):
        v1, v2, v3 = reading.voltages
        soc = reading.soc
        if (abs(reading.power_w) <= lim and abs(reading.import_wh) <= lim
                and abs(reading.export_wh) <= lim and abs(c.l1) <= lim
                and abs(c.l2) <= lim and abs(c.l3) <= lim and abs(v1) <= lim
                and abs(v2) <= lim and abs(v3) <= lim and (soc is None or abs(soc) <= lim)):
            return None
    else:
        most = reading.max_current_ma
        if (abs(reading.power_w) <= lim and abs(reading.total_energy_wh) <= lim
                and abs(c.l1) <= lim and abs(c.l2) <= lim and abs(c.l3) <= lim
                and (most is None or abs(most) <= lim)):
            return None
    return _first_implausible(reading)


def _first_implausible(reading: MeterReading | EvseReading) -> str | None:
    values: Iterable[tuple[str, float]]
    if isinstance(reading, MeterReading):
        values = [("power_w", reading.power_w), ("import_wh", reading.import_wh),
                  ("export_wh", reading.export_wh),
                  *(("current", c) for c in reading.currents),
                  *(("voltage", v) for v in reading.voltages),
                  *((("soc", reading.soc),) if reading.soc is not None else ())]
    else:
        values = [("power_w", reading.power_w), ("total_energy_wh", reading.total_energy_wh),
                  *(("current", c) for c in reading.currents),
                  *((("max_current_ma", reading.max_current_ma),)
                    if reading.max_current_ma is not None else ())]
    for name, value in values:
        if not abs(value) <= PLAUSIBLE_LIMIT:  # also NaN
            return f"implausible reading: {name} {value!r:.24}"
    return None


@dataclass(frozen=True, slots=True)
class EvseCommand:
    """What the charging manager wants an EVSE to do."""

    enabled: bool
    current_ma: int  # 0 when not enabled
    phases: int = 0  # 1 or 3 to request a phase switch, 0 = leave as is
    wake: bool = False  # interrupt the control pilot once so that a sleeping car wakes up
