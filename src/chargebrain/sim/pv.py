"""PV production and a home battery for a simulated site, one value per second.

PV follows a day curve between sunrise and sunset (sin^1.5 of the daylight fraction,
scaled to the peak) with random cloud dips that ramp in and out; its inverter feeds the
three phases symmetrically. The home battery balances household load against PV (its own
meter does not see the EVSEs), so it is a fixed series too.

This module must never use global randomness or read a clock.
"""

from __future__ import annotations

import math
import random

from chargebrain.sim.scenario import DAY_S, BatterySpec, PvSpec

CLOUD_RAMP_S = 30.0


def clear_sky_w(spec: PvSpec, tod: float) -> float:
    """Production without clouds at a time of day (seconds after midnight)."""
    if not spec.sunrise_s < tod < spec.sunset_s:
        return 0.0
    x = (tod - spec.sunrise_s) / (spec.sunset_s - spec.sunrise_s)
    return spec.peak_kw * 1000.0 * float(math.sin(math.pi * x) ** 1.5)


def _dip(out: list[float], t: float, length: float, depth: float) -> None:
    """A cloud from `t` for `length` seconds taking `depth` of the production, ramping in
    and out over CLOUD_RAMP_S."""
    lo, hi = max(0, int(t)), min(len(out), int(t + length) + 1)
    for s in range(lo, hi):
        ramp = min(1.0, (s - t) / CLOUD_RAMP_S, (t + length - s) / CLOUD_RAMP_S)
        f = 1.0 - depth * max(0.0, ramp)
        if f < out[s]:
            out[s] = f


def cloud_factors(spec: PvSpec, n: int, rng: random.Random,
                  start_tod: int = 0) -> list[float]:
    """Per second, the fraction of clear-sky production that gets through (1 = no cloud);
    the fixed dips of `clouds.at` on the days of a run starting at `start_tod`."""
    out = [1.0] * n
    c = spec.clouds
    for tod, dur, depth in c.at:
        first = (tod - start_tod) % DAY_S
        for day in range(first, n, DAY_S):
            _dip(out, float(day), max(CLOUD_RAMP_S, float(dur)), depth)
    if c.per_hour <= 0.0:
        return out
    rate = c.per_hour / 3600.0
    t = rng.expovariate(rate)
    while t < n:
        length = max(CLOUD_RAMP_S, rng.expovariate(1.0 / c.mean_duration_s))
        _dip(out, t, length, rng.uniform(c.depth[0], c.depth[1]))
        t += length + rng.expovariate(rate)
    return out


def pv_series(spec: PvSpec, start_tod: int, n: int, rng: random.Random) -> list[float]:
    """PV production in W for each of `n` seconds."""
    clouds = cloud_factors(spec, n, rng, start_tod)
    return [clear_sky_w(spec, (start_tod + s) % DAY_S) * clouds[s] for s in range(n)]


def battery_series(spec: BatterySpec, net_w: list[float]) -> list[float]:
    """Battery power per second (+ charging, − discharging) that pushes `net_w` (house − PV,
    + = import) towards zero within the battery's power and capacity."""
    cap_wh = spec.capacity_kwh * 1000.0
    stored = spec.soc * cap_wh
    p_max = spec.max_power_w
    out = [0.0] * len(net_w)
    for s, net in enumerate(net_w):
        if net < 0.0:  # surplus: charge
            p = min(-net, p_max, (cap_wh - stored) * 3600.0)
        else:  # import: discharge
            p = -min(net, p_max, stored * 3600.0)
        stored += p / 3600.0
        out[s] = p
    return out
