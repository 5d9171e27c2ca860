"""The offline optimum of a scenario: an upper bound on the energy any load manager could deliver.

A linear program with perfect foresight over the whole run at a coarse time step. One
variable per car and interval it is plugged in: its mean current per used phase. Subject
to, in every interval and on every building phase: the connection limit (minus the
reserve, unless told otherwise) minus the interval's mean household/PV/battery load; the
EVSE supply line; every group (nested groups count for all their ancestors); the phase
imbalance of the EVSE load; and per car its maximum current (times the fraction of the
interval it is present) and its energy need (capped by the room in its battery).
Maximises delivered energy, weighted very slightly towards earlier delivery to break ties.

It is a bound, not a schedule: the 6 A minimum (and each car's minimum start current) is
relaxed, so are taper, sleep, lag, faults and the per-second variation of the household
load within an interval (averaging constraints that hold every second yields constraints
on the averages, so every real schedule is feasible here). Needs numpy and scipy.

This module must never run the simulator or depend on any policy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from chargebrain.core.phases import rotate_mask
from chargebrain.sim.profile import build_profile
from chargebrain.sim.scenario import Scenario

EARLY_WEIGHT = 1e-3  # the last interval's energy counts this much less than the first's


@dataclass(frozen=True, slots=True)
class OptimumResult:
    step_s: int
    horizon_s: int
    per_car_kwh: Mapping[str, float]  # in one optimal schedule (the total is what is bounded)
    total_kwh: float  # upper bound on the energy deliverable to all cars together
    alone_kwh: Mapping[str, float]  # per car: the bound if it were the only car on the site
    need_kwh: Mapping[str, float]  # per car: its need, capped by the room in its battery
    status: str
    variables: int
    constraints: int
    solve_s: float


def auto_step(scenario: Scenario, horizon_s: int) -> int:
    """60 s, or 300 s when that would make the program large (e.g. 24 h × 40 EVSEs)."""
    car_seconds = sum(
        max(0, min(c.leave_s, horizon_s) - c.arrive_s) for c in scenario.cars
    )
    return 60 if car_seconds / 60 <= 15_000 else 300


def offline_optimum(
    scenario: Scenario,
    *,
    step_s: int | None = None,
    shorten: float | None = None,
    use_reserve: bool = True,
    imbalance: bool = True,
) -> OptimumResult:
    """Solve the bound for `scenario` (only its first `shorten` seconds if given)."""
    t0 = time.perf_counter()
    horizon = scenario.duration_s if shorten is None else max(1, min(scenario.duration_s,
                                                                     int(shorten)))
    step = auto_step(scenario, horizon) if step_s is None else int(step_s)
    if step < 1:
        raise ValueError("step_s must be at least 1")
    site = scenario.site
    lim = site.limits
    volt = lim.voltage_v
    k_count = math.ceil(horizon / step)
    lengths = np.array([min(step, horizon - k * step) for k in range(k_count)], dtype=float)

    profile = build_profile(scenario, horizon)
    base = np.vstack([np.asarray(b, dtype=float) for b in profile.base_ma])  # (3, horizon)
    pad = k_count * step - horizon
    if pad:
        base = np.hstack([base, np.repeat(base[:, -1:], pad, axis=1)])
    # mean base load per interval over the seconds that belong to the run
    sums = base.reshape(3, k_count, step)
    mean_base = np.empty((3, k_count))
    for k in range(k_count):
        mean_base[:, k] = sums[:, k, : int(lengths[k])].mean(axis=1)

    evses = {e.id: e for e in site.evses}
    chains = {e.id: site.group_chain(e.group) for e in site.evses}

    # variables: (car, interval) where the car is present for part of the interval
    var_car: list[int] = []
    var_k: list[int] = []
    var_ub: list[float] = []
    cars = [c for c in scenario.cars if c.arrive_s < horizon]
    car_mask: list[int] = []
    car_phases: list[int] = []
    need: dict[str, float] = {}
    for ci, c in enumerate(cars):
        e = evses[c.evse]
        nph = 1 if min(c.phases, e.used_phases) == 1 else 3
        car_phases.append(nph)
        car_mask.append(rotate_mask(0b001 if nph == 1 else 0b111, e.phase_rotation))
        need[c.id] = max(0.0, min(c.need_kwh, (1.0 - c.soc) * c.capacity_kwh))
        amps = min(c.max_ma, e.max_ma) / 1000.0
        leave = min(c.leave_s, horizon)
        for k in range(c.arrive_s // step, min(k_count, math.ceil(leave / step))):
            lo, hi = k * step, k * step + lengths[k]
            overlap = min(hi, leave) - max(lo, c.arrive_s)
            if overlap > 0:
                var_car.append(ci)
                var_k.append(k)
                var_ub.append(amps * overlap / lengths[k])
    nvar = len(var_car)
    if nvar == 0:
        zero = {c.id: 0.0 for c in cars}
        return OptimumResult(step, horizon, zero, 0.0, zero, need, "no cars", 0, 0,
                             time.perf_counter() - t0)

    vk = np.array(var_k)
    vc = np.array(var_car)
    # kWh per ampere (mean per phase) over the interval
    kwh_per_a = np.array(car_phases)[vc] * volt * lengths[vk] / 3.6e6
    weight = 1.0 - EARLY_WEIGHT * (vk + 0.5) / k_count

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    rhs: list[np.ndarray] = []
    nrow = 0

    def add_block(row_of_var: np.ndarray, coef: np.ndarray, bound: np.ndarray) -> None:
        """Rows `nrow + row_of_var[j]` get `coef[j]` for variable j (row −1 = not in it)."""
        nonlocal nrow
        sel = row_of_var >= 0
        rows.append(row_of_var[sel] + nrow)
        cols.append(np.flatnonzero(sel))
        vals.append(coef[sel])
        rhs.append(bound)
        nrow += bound.shape[0]

    # energy need per car
    add_block(vc, kwh_per_a, np.array([need[c.id] for c in cars]))

    masks = np.array(car_mask)[vc]
    ones = np.ones(nvar)
    usable = lim.max_current_ma - (lim.reserve_ma if use_reserve else 0)
    # the same limits for each car on its own: the tightest one over its phases
    alone_ub = np.array(var_ub)
    for p in range(3):
        on_p = (masks >> p & 1).astype(bool)
        cap = np.clip((usable - mean_base[p]) / 1000.0, 0.0, None)
        add_block(np.where(on_p, vk, -1), ones, cap)
        alone_ub = np.where(on_p, np.minimum(alone_ub, cap[vk]), alone_ub)
        if lim.max_evse_current_ma:
            add_block(np.where(on_p, vk, -1), ones,
                      np.full(k_count, lim.max_evse_current_ma / 1000.0))
            alone_ub = np.where(on_p, np.minimum(alone_ub, lim.max_evse_current_ma / 1000.0),
                                alone_ub)
        for g in site.groups:
            in_g = np.array([g.id in chains[cars[ci].evse] for ci in range(len(cars))])[vc]
            add_block(np.where(on_p & in_g, vk, -1), ones,
                      np.full(k_count, g.max_current_ma / 1000.0))
            alone_ub = np.where(on_p & in_g, np.minimum(alone_ub, g.max_current_ma / 1000.0),
                                alone_ub)
    if imbalance and lim.max_imbalance_ma:
        single = np.array(car_phases)[vc] == 1
        alone_ub = np.where(single, np.minimum(alone_ub, lim.max_imbalance_ma / 1000.0), alone_ub)
    alone = np.bincount(vc, weights=alone_ub * kwh_per_a, minlength=len(cars))
    if imbalance and lim.max_imbalance_ma:
        # EVSE load on phase p minus on phase q ≤ limit, for every ordered pair
        for p in range(3):
            for q in range(3):
                if p == q:
                    continue
                coef = (masks >> p & 1).astype(float) - (masks >> q & 1).astype(float)
                add_block(np.where(coef != 0, vk, -1), coef,
                          np.full(k_count, lim.max_imbalance_ma / 1000.0))

    a_ub = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(nrow, nvar),
    ).tocsr()
    res = linprog(
        c=-(kwh_per_a * weight),
        A_ub=a_ub,
        b_ub=np.concatenate(rhs),
        bounds=np.column_stack([np.zeros(nvar), np.array(var_ub)]),
        method="highs",
    )
    if res.x is None:
        raise RuntimeError(f"offline optimum failed: {res.message}")
    energy = np.clip(res.x, 0.0, None) * kwh_per_a
    per_car = np.bincount(vc, weights=energy, minlength=len(cars))
    return OptimumResult(
        step_s=step,
        horizon_s=horizon,
        per_car_kwh={c.id: float(per_car[i]) for i, c in enumerate(cars)},
        total_kwh=float(per_car.sum()),
        alone_kwh={c.id: min(float(alone[i]), need[c.id]) for i, c in enumerate(cars)},
        need_kwh=need,
        status=str(res.message),
        variables=nvar,
        constraints=nrow,
        solve_s=time.perf_counter() - t0,
    )
