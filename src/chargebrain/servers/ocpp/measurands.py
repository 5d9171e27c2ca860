"""What a charge point's meter values say about a connector: currents per phase (mA),
power (W) and the energy register (Wh).

Understood: `Current.Import`, `Power.Active.Import`, `Energy.Active.Import.Register` and
`Voltage`, with any unit prefix (W and kW, Wh and kWh), with or without a phase (L1, L2,
L3 or L1-N, L2-N, L3-N). Phases not reported draw nothing. A charge point that reports
its power but no currents: each phase's power over its voltage (230 V unless reported);
its total power only: spread over the phases it drew on when it last reported them per
phase, or else over as many phases as that power needs at the current it was offered. A
current without a phase is L1's, or shared by as many phases as the power reported with
it needs. Values measured at the car (location EV), signed data and anything else are
ignored. Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from chargebrain.core.phases import Phases
from chargebrain.servers.ocpp.messages import Sample

VOLTAGE = 230.0
_PHASE = {"L1": 0, "L1-N": 0, "L2": 1, "L2-N": 1, "L3": 2, "L3-N": 2}
_LOCATIONS = ("Outlet", "Inlet", "Cable", "")


@dataclass(frozen=True)
class Measured:
    """What one set of samples says; None where it says nothing."""

    currents: Phases | None = None
    power_w: float | None = None
    energy_wh: float | None = None
    phase_mask: int = 0  # phases reported drawing in per-phase values (bit 0 = L1)


def measure(samples: Iterable[Sample], offered_ma: int = 0, phase_hint: int = 0) -> Measured:
    """The meaning of `samples` (one meterValue element). `offered_ma`: the current the
    connector may draw; `phase_hint`: the phases it drew on when last seen per phase."""
    amps: list[float | None] = [None, None, None]
    watts: list[float | None] = [None, None, None]
    volts = [VOLTAGE, VOLTAGE, VOLTAGE]
    amps_total: float | None = None
    watts_total: float | None = None
    energy: float | None = None
    for s in samples:
        if s.value is None or s.location not in _LOCATIONS:
            continue
        index = _PHASE.get(s.phase)
        if s.measurand == "Current.Import" and s.unit == "A":
            if index is not None:
                amps[index] = max(0.0, s.value)
            elif not s.phase:
                amps_total = max(0.0, s.value)
        elif s.measurand == "Power.Active.Import" and s.unit == "W":
            if index is not None:
                watts[index] = max(0.0, s.value)
            elif not s.phase:
                watts_total = max(0.0, s.value)
        elif s.measurand == "Energy.Active.Import.Register" and s.unit == "Wh" and not s.phase:
            energy = max(0.0, s.value)
        elif s.measurand == "Voltage" and s.unit == "V" and index is not None and s.value > 50:
            volts[index] = s.value
    if watts_total is None and any(w is not None for w in watts):
        watts_total = sum(w or 0.0 for w in watts)
    currents: list[float] | None = None
    mask = 0
    if any(a is not None for a in amps):
        currents = [a or 0.0 for a in amps]
        mask = _mask(currents)
    elif amps_total is not None:
        n = _phases_for(watts_total, amps_total * 1000) if watts_total else 1
        currents = [amps_total if i < n else 0.0 for i in range(3)]
    elif any(w is not None for w in watts):
        currents = [(w or 0.0) / v for w, v in zip(watts, volts, strict=True)]
        mask = _mask(currents)
    elif watts_total is not None:
        currents = _spread(watts_total, offered_ma, phase_hint)
    return Measured(
        currents=Phases.of([round(a * 1000) for a in currents]) if currents else None,
        power_w=watts_total if watts_total is not None else (
            sum(a * v for a, v in zip(currents, volts, strict=True)) if currents else None),
        energy_wh=energy, phase_mask=mask)


def _mask(currents: list[float]) -> int:
    return sum(1 << i for i, a in enumerate(currents) if a >= 1.0)


def _phases_for(watts: float, per_phase_ma: float) -> int:
    """How many phases `watts` needs at `per_phase_ma` each (1..3)."""
    if per_phase_ma <= 0:
        return 1
    needed = watts / (VOLTAGE * per_phase_ma / 1000.0)
    return max(1, min(3, math.ceil(needed - 0.15)))


def _spread(watts: float, offered_ma: int, hint: int) -> list[float]:
    """Total power as amperes per phase (see the module's docstring)."""
    if hint & 7:
        used = [i for i in range(3) if hint >> i & 1]
    else:
        used = list(range(_phases_for(watts, offered_ma)))
    each = watts / VOLTAGE / len(used)
    return [each if i in used else 0.0 for i in range(3)]
