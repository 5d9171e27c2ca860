"""The offline optimum of a scenario: an upper bound on the energy any load manager could deliver.

A linear program with perfect foresight over the whole run at a coarse time step. One
variable per car and interval it is plugged in: its mean current per used phase. Subject
to, in every interval and on every building phase: the connection limit (minus the
reserve, unless told otherwise) minus the interval's mean household/PV/battery load; the
EVSE supply line; every group (nested groups count for all their ancestors; a group's
own consumers come off its limit, and the reserve too where its meter measures them); the phase
imbalance of the EVSE load; and per car its maximum current (times the fraction of the
interval it is present) and its energy need (capped by the room in its battery).
Maximises delivered energy, weighted very slightly towards earlier delivery to break ties.

What a car physically cannot draw is modelled, since no manager can change it: its taper
near full (in each interval at most the taper current at the state of charge the interval
starts with, lifted to the charger's 0.5 A floor for the last bit by the chord of
max(taper, 0.5 A), through one cumulative-energy variable per car and interval) and,
while it has the fault, drawing less than offered. It is a bound, not a schedule: the
6 A minimum (and each car's minimum start current) is relaxed, so are sleep, lag, the
other faults and the per-second variation of the household load within an interval
(averaging constraints that hold every second yields constraints on the averages, so
every real schedule is feasible here). EVSEs in surplus (solar) mode together draw at
most the PV surplus (production) of each interval. A car at an EVSE that may switch to
one phase may draw on three phases or on one. While a meter does not tell the house's
load (a fault, or one of the meter's random dropouts, which the bound knows in advance:
`random_dropouts`), the bound keeps room for the highest load of the spell, holds the
cars at most at what they took before, and once a controller knows the meter is blind
(`BLIND_AFTER_S`) gives them nothing. A car drawing a share of its offer takes room for
its offer (a controller must reserve it). Needs numpy and scipy.

This module must never run the simulator or depend on any policy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import coo_matrix, csr_matrix, diags, hstack, identity, vstack

from chargebrain.core.phases import rotate_mask
from chargebrain.sim.meter import Meter, Window
from chargebrain.sim.optimum_taper import taper_rows
from chargebrain.sim.profile import build_profile, sub_rng
from chargebrain.sim.scenario import CarSpec, FaultKind, MeterSpec, Scenario

EARLY_WEIGHT = 1e-3  # the last interval's energy counts this much less than the first's
#: A meter that has told nothing new for this long is known to be stale (the manager's
#: HTTP-input meters); from then on no controller knows the load it measured.
BLIND_AFTER_S = 30


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
    faults: bool = True,
    compliant: bool = False,
    time_limit_s: float = 120.0,
) -> OptimumResult:
    """Solve the bound for `scenario` (only its first `shorten` seconds if given).

    `faults`: the bound knows the scenario's faults (module docstring). `compliant`: a
    mixed-integer program in which each car, in each interval, draws nothing or at least
    its minimum; solved by HiGHS within `time_limit_s`, its total is the solver's upper
    bound (the optimum itself when `status` says so)."""
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
    base = _padded(profile.base_ma, k_count * step)  # (3, intervals × step)
    # mean base load per interval over the seconds that belong to the run
    mean_base = _means(base, k_count, step, lengths)
    group_room: dict[str, np.ndarray] = {}
    group_drops: dict[str, list[Window]] = {}
    for g in site.groups:
        # its own consumers off its limit, and where its meter measures them the reserve
        # a manager keeps under it
        keep = lim.reserve_ma if use_reserve and g.meter is not None else 0
        if g.id in profile.group_ma or keep:
            own = (_means(_padded(profile.group_ma[g.id], k_count * step), k_count, step,
                          lengths) if g.id in profile.group_ma else np.zeros((3, k_count)))
            if faults and g.meter is not None:
                # while its meter is silent, room for the most its consumers drew then
                drops = random_dropouts(g.meter, scenario.seed, f"meter:group:{g.id}", horizon)
                group_drops[g.id] = drops
                if g.id in profile.group_ma:
                    _keep_worst(drops, _padded(profile.group_ma[g.id], horizon), own, step)
            group_room[g.id] = np.clip(g.max_current_ma - keep - own, 0.0, None) / 1000.0

    blind_spells: dict[str, list[Window]] = {"": []}  # per group meter ("": the grid's)
    if faults:
        blind_spells[""] = _blind(scenario, base[:, :horizon], mean_base, step)
        blind_spells.update(group_drops)

    evses = {e.id: e for e in site.evses}
    chains = {e.id: site.group_chain(e.group) for e in site.evses}

    # variables: (car, interval) where the car is present for part of the interval
    var_car: list[int] = []
    var_k: list[int] = []
    var_ub: list[float] = []
    var_frac: list[float] = []  # the part of the interval the car is plugged in
    var_cost: list[float] = []  # room its draw takes: its offer per ampere drawn
    hold: list[tuple[int, int]] = []  # (variable, the one before): at most as much
    floor_a: list[float] = []  # per car: its minimum current (A), for `compliant`
    cars = [c for c in scenario.cars if c.arrive_s < horizon]
    car_mask: list[int] = []
    car_phases: list[int] = []
    need: dict[str, float] = {}
    for ci, c in enumerate(cars):
        e = evses[c.evse]
        nph = min(c.phases, e.used_phases)
        car_phases.append(nph)
        car_mask.append(rotate_mask((1 << nph) - 1, e.phase_rotation))
        need[c.id] = max(0.0, min(c.need_kwh, (1.0 - c.soc) * c.capacity_kwh))
        amps = min(c.max_ma, e.max_ma) / 1000.0
        floor_a.append(min(max(e.min_ma, c.min_start_ma), c.max_ma, e.max_ma) / 1000.0)
        under = _underdraw(scenario, c)
        leave = min(c.leave_s, horizon)
        spells = _offline(scenario, c) if faults else []
        dark = blind_spells[""] + [w for g in chains[c.evse] for w in blind_spells.get(g, [])]
        for k in range(c.arrive_s // step, min(k_count, math.ceil(leave / step))):
            lo, hi = max(k * step, c.arrive_s), min(k * step + lengths[k], leave)
            if hi > lo:
                ub = _drawable_as(amps, lo, hi, under) / lengths[k]
                if any(k * step >= start + BLIND_AFTER_S and hi <= end
                       for start, end in dark):
                    # no meter tells the load above it, and a controller knows it: it
                    # cannot know that any current is safe
                    ub = 0.0
                elif any(k * step >= start and hi <= end for start, end in dark):
                    # not yet known to be blind: it may keep what it gave, not raise it
                    # nor start the car
                    if var_car and var_car[-1] == ci:
                        hold.append((len(var_car), len(var_car) - 1))
                    else:
                        ub = 0.0
                for start, end, fail_safe in spells:
                    inside = min(hi, end) - max(lo, start)
                    if inside > 0 and fail_safe is not None:
                        # the EVSE offers its fail-safe current, whatever a manager says
                        ub = min(ub, ub * (hi - lo - inside) / (hi - lo)
                                 + fail_safe / 1000.0 * inside / lengths[k])
                    elif k * step >= start and hi <= end and var_car and var_car[-1] == ci:
                        # it keeps the current it had: at most what it drew before
                        hold.append((len(var_car), len(var_car) - 1))
                var_car.append(ci)
                var_k.append(k)
                var_ub.append(ub)
                # a car drawing a share of its offer: a controller reserves the offer
                var_cost.append(max([1.0] + [1.0 / f for start, end, f, _ in under
                                             if 0 < f < 1 and start <= lo and hi <= end]))
                var_frac.append((hi - lo) / lengths[k])
    # a three-phase car at an EVSE that may switch to one phase (`phase_switching`) may
    # also draw on its first phase alone: a second variable per interval, on that phase,
    # with the same bounds (that it may draw on both at once, and on the second without
    # its taper, only loosens the bound)
    primary = len(var_car)
    var_phases = [car_phases[ci] for ci in var_car]
    var_mask = [car_mask[ci] for ci in var_car]
    for j in range(primary):
        e = evses[cars[var_car[j]].evse]
        if e.phase_switching and var_phases[j] == 3:
            var_car.append(var_car[j])
            var_k.append(var_k[j])
            var_ub.append(var_ub[j])
            var_frac.append(var_frac[j])
            var_cost.append(var_cost[j])
            var_phases.append(1)
            var_mask.append(rotate_mask(1, e.phase_rotation))
    nvar = len(var_car)
    if nvar == 0:
        zero = {c.id: 0.0 for c in cars}
        return OptimumResult(step, horizon, zero, 0.0, zero, need, "no cars", 0, 0,
                             time.perf_counter() - t0)

    vk = np.array(var_k)
    vc = np.array(var_car)
    # kWh per ampere (mean per phase) over the interval
    phases_v = np.array(var_phases)
    kwh_per_a = phases_v * volt * lengths[vk] / 3.6e6
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

    masks = np.array(var_mask)
    ones = np.array(var_cost)  # room a car's draw takes per ampere: 1 but when it under-draws
    usable = lim.max_current_ma - (lim.reserve_ma if use_reserve else 0)
    # the same limits for each car on its own: the tightest one over its phases
    alone_ub = np.array(var_ub)
    for p in range(3):
        on_p = (masks >> p & 1).astype(bool)
        cap = np.clip((usable - mean_base[p]) / 1000.0, 0.0, None)
        add_block(np.where(on_p, vk, -1), ones, cap)
        alone_ub = np.where(on_p, np.minimum(alone_ub, cap[vk] / ones), alone_ub)
        if lim.max_evse_current_ma:
            add_block(np.where(on_p, vk, -1), ones,
                      np.full(k_count, lim.max_evse_current_ma / 1000.0))
            alone_ub = np.where(on_p, np.minimum(alone_ub, lim.max_evse_current_ma / 1000.0 / ones),
                                alone_ub)
        for g in site.groups:
            in_g = np.array([g.id in chains[cars[ci].evse] for ci in range(len(cars))])[vc]
            room = group_room[g.id][p] if g.id in group_room else np.full(
                k_count, g.max_current_ma / 1000.0)
            add_block(np.where(on_p & in_g, vk, -1), ones, room)
            alone_ub = np.where(on_p & in_g, np.minimum(alone_ub, room[vk] / ones), alone_ub)
    if imbalance and lim.max_imbalance_ma:
        single = phases_v < 3
        alone_ub = np.where(single, np.minimum(alone_ub, lim.max_imbalance_ma / 1000.0), alone_ub)
    alone = np.bincount(vc[:primary], weights=(alone_ub * kwh_per_a)[:primary],
                        minlength=len(cars))
    if imbalance and lim.max_imbalance_ma:
        # EVSE load on phase p minus on phase q ≤ limit, for every ordered pair
        for p in range(3):
            for q in range(3):
                if p == q:
                    continue
                coef = ((masks >> p & 1).astype(float) - (masks >> q & 1).astype(float)) * ones
                add_block(np.where(coef != 0, vk, -1), coef,
                          np.full(k_count, lim.max_imbalance_ma / 1000.0))

    # EVSEs in surplus (solar) mode: together at most the surplus (production) of the
    # interval, in W; the mean over the interval of what holds every second
    sun_modes = {e.id: e.mode for e in site.evses if e.from_sun}
    if sun_modes:
        watts_per_a = phases_v * volt
        pv = np.asarray(profile.pv_w, dtype=float)
        surplus = np.clip(-base[:, :horizon].sum(axis=0) * volt / 1000.0, 0.0, None)
        for mode, series in (("surplus", surplus), ("solar", pv)):
            in_mode = np.array([sun_modes.get(cars[ci].evse) == mode
                                for ci in range(len(cars))])[vc]
            if in_mode.any():
                mean = np.array([series[k * step: k * step + int(lengths[k])].mean()
                                 for k in range(k_count)])
                add_block(np.where(in_mode, vk, -1), watts_per_a, mean)

    if hold:
        pairs = np.array(hold)
        rows.append(np.repeat(np.arange(len(hold)), 2) + nrow)
        cols.append(pairs.reshape(-1))
        vals.append(np.tile([1.0, -1.0], len(hold)))
        rhs.append(np.zeros(len(hold)))
        nrow += len(hold)

    taper = taper_rows(cars, np.where(np.arange(nvar) < primary, vc, -1), kwh_per_a,
                        np.array(var_frac), nvar)
    ncum = taper.count
    for r, cidx, v, b in zip(taper.ub_rows, taper.ub_cols, taper.ub_vals, taper.ub_rhs,
                             strict=True):
        rows.append(r + nrow)
        cols.append(cidx)
        vals.append(v)
        rhs.append(b)
        nrow += b.shape[0]

    ntot = nvar + ncum
    a_ub = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(nrow, ntot),
    ).tocsr()
    a_eq = coo_matrix((taper.eq_vals, (taper.eq_rows, taper.eq_cols)),
                      shape=(ncum, ntot)).tocsr() if ncum else None
    cost = np.concatenate([-(kwh_per_a * weight), np.zeros(ncum)])
    upper = np.concatenate([np.array(var_ub), np.full(ncum, np.inf)])
    b_ub = np.concatenate(rhs)
    bound: float | None = None
    if compliant:
        x, bound, message = _solve_compliant(
            cost, a_ub, b_ub, a_eq, upper, np.array(floor_a)[vc] * np.array(var_frac),
            nvar, time_limit_s)
        nrow += 2 * nvar
    else:
        res = linprog(c=cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq,
                      b_eq=np.zeros(ncum) if ncum else None,
                      bounds=np.column_stack([np.zeros(ntot), upper]), method="highs")
        if res.x is None:
            raise RuntimeError(f"offline optimum failed: {res.message}")
        x, message = res.x, str(res.message)
    energy = np.clip(x[:nvar], 0.0, None) * kwh_per_a
    per_car = np.bincount(vc, weights=energy, minlength=len(cars))
    total = float(per_car.sum())
    if bound is not None:
        # the solver's bound on the weighted objective; the weights are at most 1
        total = max(total, bound)
    return OptimumResult(
        step_s=step,
        horizon_s=horizon,
        per_car_kwh={c.id: float(per_car[i]) for i, c in enumerate(cars)},
        total_kwh=total,
        alone_kwh={c.id: min(float(alone[i]), need[c.id]) for i, c in enumerate(cars)},
        need_kwh=need,
        status=message,
        variables=nvar + ncum,
        constraints=nrow + ncum,
        solve_s=time.perf_counter() - t0,
    )


def _solve_compliant(cost: np.ndarray, a_ub: csr_matrix, b_ub: np.ndarray,
                     a_eq: csr_matrix | None, upper: np.ndarray, floor: np.ndarray,
                     nvar: int, time_limit_s: float) -> tuple[np.ndarray, float, str]:
    """The program with one binary per current variable: i ≤ ub·z and i ≥ floor·z (a car
    draws nothing or at least its minimum). Returns the solution, the solver's upper bound
    on the energy and its status."""
    ntot = cost.shape[0]
    eye = identity(nvar, format="csr")
    zeros = csr_matrix((nvar, ntot - nvar))
    on_off = vstack([
        hstack([eye, zeros, -diags(upper[:nvar])]),  # i − ub·z ≤ 0
        hstack([-eye, zeros, diags(floor)]),  # floor·z − i ≤ 0
    ]).tocsr()
    cons = [LinearConstraint(hstack([a_ub, csr_matrix((a_ub.shape[0], nvar))]).tocsr(),
                             -np.inf, b_ub),
            LinearConstraint(on_off, -np.inf, np.zeros(2 * nvar))]
    if a_eq is not None:
        cons.append(LinearConstraint(hstack([a_eq, csr_matrix((a_eq.shape[0], nvar))]).tocsr(),
                                     0.0, 0.0))
    res = milp(
        c=np.concatenate([cost, np.zeros(nvar)]),
        integrality=np.concatenate([np.zeros(ntot), np.ones(nvar)]),
        bounds=Bounds(np.zeros(ntot + nvar), np.concatenate([upper, np.ones(nvar)])),
        constraints=cons,
        options={"time_limit": time_limit_s, "mip_rel_gap": 1e-3},
    )
    dual = getattr(res, "mip_dual_bound", None)
    if dual is not None and np.isfinite(dual):
        bound = -float(dual)
    elif res.x is not None and res.status == 0:
        bound = -float(res.fun)
    else:
        raise RuntimeError(f"compliant optimum failed: {res.message}")
    x = res.x[:ntot] if res.x is not None else np.zeros(ntot)
    return x, bound, str(res.message)


def _blind(scenario: Scenario, base: np.ndarray, mean_base: np.ndarray,
           step: int) -> list[Window]:
    """The spells in which the grid meter is stale or silent (a fault, or one of its random
    dropouts): a manager cannot see the house then. In their intervals, the bound keeps
    room for the house's highest load of the spell on each phase (in place)."""
    horizon = base.shape[1]
    spells = [(f.start_s, f.end_s) for f in scenario.faults
              if f.kind in (FaultKind.METER_STALE, FaultKind.METER_DROPOUT)
              and f.target == "grid"]
    spells += random_dropouts(scenario.meters.grid, scenario.seed, "meter:grid", horizon)
    _keep_worst(spells, base, mean_base, step)
    return spells


def random_dropouts(spec: MeterSpec, seed: int, part: str, until: int) -> list[Window]:
    """The random dropouts a run's meter (`part`: its random part, e.g. "meter:grid") has
    before `until`: the same spells the runner's meter will have."""
    if spec.dropouts_per_hour <= 0:
        return []
    return Meter(spec, sub_rng(seed, part)).dropout_windows(until)


def _keep_worst(spells: Sequence[Window], load: np.ndarray, means: np.ndarray,
                step: int) -> None:
    """In the intervals of each spell, the mean load per phase is raised to the highest
    load of the spell (in place)."""
    horizon = load.shape[1]
    for start, end in spells:
        lo, hi = max(0, start), min(horizon, end)
        if hi <= lo:
            continue
        worst = load[:, lo:hi].max(axis=1)
        for k in range(lo // step, math.ceil(hi / step)):
            means[:, k] = np.maximum(means[:, k], worst)


def _offline(scenario: Scenario, car: CarSpec) -> list[tuple[int, int, int | None]]:
    """The spells in which the car's EVSE ignores commands: (from s, to s, fail-safe mA
    or None = it keeps the current it had)."""
    return [(f.start_s, f.end_s, f.fail_safe_ma) for f in scenario.faults
            if f.kind is FaultKind.EVSE_OFFLINE and f.target == car.evse]


def _underdraw(scenario: Scenario, car: CarSpec) -> list[tuple[int, int, float, float]]:
    """The car's spells of drawing less than offered: (from s, to s, factor, offset A)."""
    return [(f.start_s, f.end_s, f.factor, f.offset_ma / 1000.0) for f in scenario.faults
            if f.kind in (FaultKind.CAR_UNDERDRAW, FaultKind.CAR_OVERDRAW)
            and f.target == car.id]


def _drawable_as(amps: float, lo: float, hi: float,
                 under: list[tuple[int, int, float, float]]) -> float:
    """Ampere-seconds the car can draw between `lo` and `hi` at most (per used phase)."""
    total = amps * (hi - lo)
    for start, end, factor, offset in under:
        overlap = min(hi, end) - max(lo, start)
        if overlap > 0:
            total -= (amps - max(0.0, amps * factor - offset)) * overlap
    return max(0.0, total)


def _padded(series: Sequence[Sequence[float]], length: int) -> np.ndarray:
    """Three per-second series as an array (3, length), the last second repeated."""
    a = np.vstack([np.asarray(x, dtype=float) for x in series])
    pad = length - a.shape[1]
    return np.hstack([a, np.repeat(a[:, -1:], pad, axis=1)]) if pad > 0 else a[:, :length]


def _means(a: np.ndarray, k_count: int, step: int, lengths: np.ndarray) -> np.ndarray:
    """Per interval, the mean over the seconds of it that belong to the run: (3, k_count)."""
    sums = a.reshape(3, k_count, step)
    out = np.empty((3, k_count))
    for k in range(k_count):
        out[:, k] = sums[:, k, : int(lengths[k])].mean(axis=1)
    return out
