"""The offline optimum's taper rows: no car is given more than its battery takes near full.

A car's current near full follows its taper line; the bound keeps each car under a
chord above that line through one cumulative-energy variable per car and interval
(`taper_rows`, used by `sim/optimum.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chargebrain.sim.scenario import CarSpec

TAPER_FLOOR_A = 0.5  # the car takes its last bit at this current (car.py)
TAPER_SLACK_A = 0.05  # a draw ramping down after a taper step, at most this much above


@dataclass(slots=True)
class TaperRows:
    """Rows that keep each car under its taper line; `count` cumulative-energy variables
    follow the current variables (column nvar + m), defined by the equality rows."""

    count: int = 0
    ub_rows: list[np.ndarray] = field(default_factory=list)
    ub_cols: list[np.ndarray] = field(default_factory=list)
    ub_vals: list[np.ndarray] = field(default_factory=list)
    ub_rhs: list[np.ndarray] = field(default_factory=list)
    eq_rows: list[int] = field(default_factory=list)
    eq_cols: list[int] = field(default_factory=list)
    eq_vals: list[float] = field(default_factory=list)


def taper_rows(cars: list[CarSpec], vc: np.ndarray, kwh_per_a: np.ndarray,
                frac: np.ndarray, nvar: int) -> TaperRows:
    """For every car that can reach its taper: with C_m the energy (kWh) it has had before
    its m-th interval (C_1 = 0, C_m+1 = C_m + kWh of interval m), its mean current in
    interval m is at most frac_m × (A − B·C_m): the taper current T at the state of charge
    the interval starts with, T = max × (1 − soc) / (1 − taper_soc), goes through the chord
    of max(T, floor) over 0 ≤ T ≤ max, floor + T × (max − floor) / max, which lies above it,
    plus the ramp slack."""
    out = TaperRows()
    for ci, c in enumerate(cars):
        span = 1.0 - c.taper_soc
        cap = c.capacity_kwh
        if span <= 0 or cap <= 0 or c.soc + c.need_kwh / cap <= c.taper_soc:
            continue
        idx = np.flatnonzero(vc == ci)  # its intervals, in time order
        n = idx.shape[0]
        if n == 0:
            continue
        top = c.max_ma / 1000.0
        if top <= TAPER_FLOOR_A:
            continue
        chord = (top - TAPER_FLOOR_A) / top
        a = TAPER_FLOOR_A + TAPER_SLACK_A + chord * top * (1.0 - c.soc) / span
        b = chord * top / (cap * span)
        first = nvar + out.count  # column of C_1
        # C_1 = 0; C_m+1 − C_m − kWh_m · i_m = 0
        eq0 = out.count
        out.eq_rows.append(eq0)
        out.eq_cols.append(first)
        out.eq_vals.append(1.0)
        for m in range(1, n):
            out.eq_rows += [eq0 + m] * 3
            out.eq_cols += [first + m, first + m - 1, int(idx[m - 1])]
            out.eq_vals += [1.0, -1.0, -float(kwh_per_a[idx[m - 1]])]
        # i_m + frac_m · B · C_m ≤ frac_m · A
        local = np.arange(n)
        out.ub_rows.append(np.concatenate([local, local]))  # rows of this car's block
        out.ub_cols.append(np.concatenate([idx, first + local]))
        out.ub_vals.append(np.concatenate([np.ones(n), frac[idx] * b]))
        out.ub_rhs.append(frac[idx] * a)
        out.count += n
    return out
