"""Everything on a simulated site that does not depend on the load manager, as time series.

Household load, PV and the home battery are drawn once per run from the scenario's seed;
their sum at the grid connection ("base load") is what the EVSEs add to. A group's own
consumers are a household of their own behind its feed, and part of the house's load. The runner and
the offline optimum both build it here, so they see identical loads.

This module must never depend on the EVSEs, the cars or the policy being measured.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from chargebrain.sim.load import PhaseSeries, household_series
from chargebrain.sim.pv import battery_series, pv_series
from chargebrain.sim.scenario import Scenario


@dataclass(frozen=True, slots=True)
class SiteProfile:
    """Per-second series for one run, index = second since the start."""

    duration_s: int
    house_ma: PhaseSeries  # household consumption per phase, ≥ 0
    pv_w: list[float]  # PV production, ≥ 0
    battery_w: list[float]  # + charging, − discharging
    base_ma: PhaseSeries  # house − PV + battery at the connection, per phase, + = import
    # per group with consumers in it: its own and its nested groups' (part of house_ma)
    group_ma: dict[str, PhaseSeries] = field(default_factory=dict)


def sub_rng(seed: int, name: str) -> random.Random:
    """An independent, reproducible generator for one part of the plant."""
    return random.Random(f"{seed}:{name}")


def build_profile(scenario: Scenario, duration_s: int | None = None) -> SiteProfile:
    n = scenario.duration_s if duration_s is None else duration_s
    v = scenario.site.limits.voltage_v
    if scenario.household is not None:
        house = household_series(
            scenario.household, scenario.start_s, n, v, sub_rng(scenario.seed, "household")
        )
    else:
        house = ([0.0] * n, [0.0] * n, [0.0] * n)
    group_ma: dict[str, PhaseSeries] = {}
    for g in scenario.site.groups:
        if g.household is None:
            continue
        own = household_series(g.household, scenario.start_s, n, v,
                               sub_rng(scenario.seed, f"household:{g.id}"))
        house = _plus(house, own)
        for gid in scenario.site.group_chain(g.id):
            group_ma[gid] = _plus(group_ma[gid], own) if gid in group_ma else own
    if scenario.pv is not None:
        pv = pv_series(scenario.pv, scenario.start_s, n, sub_rng(scenario.seed, "pv"))
    else:
        pv = [0.0] * n
    if scenario.battery is not None:
        net = [(house[0][s] + house[1][s] + house[2][s]) * v / 1000.0 - pv[s] for s in range(n)]
        battery = battery_series(scenario.battery, net)
    else:
        battery = [0.0] * n
    # inverters (PV and battery) feed the three phases symmetrically
    k = 1000.0 / (3.0 * v)
    inverter = [(battery[s] - pv[s]) * k for s in range(n)]
    base = tuple([h[s] + inverter[s] for s in range(n)] for h in house)
    return SiteProfile(n, house, pv, battery, (base[0], base[1], base[2]), group_ma)


def _plus(a: PhaseSeries, b: PhaseSeries) -> PhaseSeries:
    return (
        [x + y for x, y in zip(a[0], b[0], strict=True)],
        [x + y for x, y in zip(a[1], b[1], strict=True)],
        [x + y for x, y in zip(a[2], b[2], strict=True)],
    )
