"""Household (non-EVSE) consumption of a simulated site, one value per second and phase.

A daily piecewise-linear curve split over the phases, a slow random wander around it, and
appliances switched on at fixed, random or periodic times (a three-phase cooker, a heat
pump, a single-phase kettle). The whole series is drawn up front from a seeded generator,
so a run and the offline optimum see exactly the same load.

This module must never use global randomness or read a clock.
"""

from __future__ import annotations

import math
import random

from chargebrain.sim.scenario import DAY_S, ApplianceSpec, HouseholdSpec

PhaseSeries = tuple[list[float], list[float], list[float]]


def daily_curve(points: tuple[tuple[int, float], ...], start_tod: int, n: int) -> list[float]:
    """Per second of the run, from (time of day, value) points: linear, repeating daily."""
    if not points:
        return [0.0] * n
    if len(points) == 1:
        return [points[0][1]] * n
    # knots over one day, wrapped so interpolation across midnight works
    first_t, first_v = points[0]
    last_t, last_v = points[-1]
    knots = [(last_t - DAY_S, last_v), *points, (first_t + DAY_S, first_v)]
    out = [0.0] * n
    t0 = start_tod % DAY_S
    day_base = -t0  # run second at which the current day's midnight falls
    i = 0
    while i < n:
        # fill this day's seconds from i up to the next midnight
        day_end = min(n, day_base + DAY_S)
        for k in range(len(knots) - 1):
            ta, va = knots[k]
            tb, vb = knots[k + 1]
            lo = max(i, day_base + ta)
            hi = min(day_end, day_base + tb)
            if hi <= lo:
                continue
            slope = (vb - va) / (tb - ta)
            base = va - slope * (day_base + ta)
            for s in range(lo, hi):
                out[s] = base + slope * s
        i = day_end
        day_base += DAY_S
    return out


def appliance_starts(
    app: ApplianceSpec, start_tod: int, n: int, rng: random.Random
) -> list[int]:
    """Run seconds at which the appliance switches on (may start before 0 and still run)."""
    starts: list[int] = []
    if app.every_s:
        t = -rng.randrange(app.every_s)
        while t < n:
            starts.append(t)
            t += app.every_s
    first_day = -1
    last_day = (start_tod + n) // DAY_S + 1
    for day in range(first_day, last_day + 1):
        midnight = day * DAY_S - start_tod
        starts.extend(midnight + t for t in app.at_s)
        lo, hi = app.random_window_s
        for _ in range(app.random_count):
            starts.append(midnight + rng.randrange(lo, max(lo + 1, hi - app.duration_s)))
    return sorted(s for s in starts if s + app.duration_s > 0 and s < n)


def household_series(
    spec: HouseholdSpec, start_tod: int, n: int, voltage_v: float, rng: random.Random
) -> PhaseSeries:
    """Household current per phase in mA for each of `n` seconds."""
    # independent streams per phase and for the appliances, so that a shorter run sees
    # exactly the beginning of a longer one
    phase_rngs = [random.Random(rng.random()) for _ in range(3)]
    app_rngs = [random.Random(rng.random()) for _ in spec.appliances]
    base_w = daily_curve(spec.base_w, start_tod, n)
    ma_per_w = 1000.0 / voltage_v
    out: list[list[float]] = []
    a = math.exp(-1.0 / spec.noise_tau_s)
    b = math.sqrt(1.0 - a * a) * spec.noise_pct / 100.0
    for share, phase_rng in zip(spec.phase_split, phase_rngs, strict=True):
        scale = share * ma_per_w
        series = [w * scale for w in base_w]
        if b > 0.0:
            gauss = phase_rng.gauss
            x = gauss(0.0, spec.noise_pct / 100.0)
            for s in range(n):
                x = a * x + b * gauss(0.0, 1.0)
                v = series[s] * (1.0 + x)
                series[s] = v if v > 0.0 else 0.0
        out.append(series)
    for app, app_rng in zip(spec.appliances, app_rngs, strict=True):
        phases = [p for p in range(3) if app.phase_mask >> p & 1]
        per_phase_ma = app.power_w / len(phases) * ma_per_w
        for start in appliance_starts(app, start_tod, n, app_rng):
            lo, hi = max(0, start), min(n, start + app.duration_s)
            for p in phases:
                series = out[p]
                for s in range(lo, hi):
                    series[s] += per_phase_ma
    return out[0], out[1], out[2]
