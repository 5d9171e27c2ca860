"""Figures of merit for one simulated run: energy, overload, imbalance, PV, flapping, fairness.

Overload is measured on the true currents for every limit (connection phases, EVSE supply
line, each group) and split in two: excursions that start after a rise of the household
load (a "load step") and are over within the reaction budget are the unavoidable reaction
time of any controller that measures before it acts; everything else is misbehaviour.
The EVSEs' phase imbalance is split the same way, its steps being cars whose draw fell of
their own doing (unplugged, done charging).
See docs/simulator.md for every definition. Needs numpy.

This module must never change a run or re-simulate anything; it only reads a RunResult.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chargebrain.sim.optimum import OptimumResult, random_dropouts
from chargebrain.sim.results import RunResult, SessionTrace
from chargebrain.sim.scenario import FaultKind

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

ACTIVE_MA = 500  # a car drawing at least this much per phase counts as charging
# Less than this above a limit is at the limit: sums of float currents that meet a limit
# exactly come out a few 1e-12 mA above it, which no meter would show.
RESOLUTION_MA = 1.0
#: The charging manager's `min_pause_time` (s): a car it paused while charging should not
#: charge again sooner (docs/load-management.md, "Pauses, hysteresis and rotation").
MIN_PAUSE_S = 300
#: A pause that begins during a spell of missing data (a stale or silent meter, an EVSE
#: offline) or this long after it is one "caused by missing data": it may end early.
DATA_FAULT_AFTER_S = 60
#: A pause with a phase switch of its EVSE this close to it (s) belongs to the switch.
SWITCH_SLACK_S = 10


@dataclass(frozen=True, slots=True)
class CarMetrics:
    car_id: str
    evse_id: str
    need_kwh: float  # as the scenario says
    deliverable_kwh: float  # the most it could have taken alone during its stay (see below)
    delivered_kwh: float
    share: float | None  # delivered / deliverable, at most 1; None if nothing was deliverable
    starts: int  # times it started drawing (≥ ACTIVE_MA after less)
    stops: int  # times it stopped drawing while still plugged in
    first_current_s: int | None  # from plug-in to the first second it drew; None = never
    soc_end: float
    plugged_s: int = 0  # how long it was plugged in during the run


@dataclass(frozen=True, slots=True)
class OverloadStats:
    """Time above one limit on one phase; A·s = ∫ (current − limit) dt while above."""

    limit: str  # "site", "evse-line" or "group <id>"
    phase: int  # building phase 1..3
    limit_ma: int
    amp_seconds: float
    excursions: int
    max_excursion_a: float
    longest_s: int
    reaction_amp_seconds: float
    reaction_excursions: int
    misbehaviour_amp_seconds: float
    misbehaviour_excursions: int
    misbehaviour_max_a: float


@dataclass(frozen=True, slots=True)
class Metrics:
    scenario: str
    policy: str
    duration_s: int
    cycles: int
    cars: tuple[CarMetrics, ...]
    need_kwh: float
    deliverable_kwh: float
    delivered_kwh: float
    optimum_kwh: float | None  # the offline optimum's bound, when given
    overload: tuple[OverloadStats, ...]  # every limit × phase
    overload_amp_seconds: float
    reaction_amp_seconds: float
    misbehaviour_amp_seconds: float
    reaction_budget_s: float
    load_steps: int  # load steps found (summed over phases)
    imbalance_amp_seconds: float  # EVSE load: (max − min phase) above max_imbalance
    imbalance_max_a: float
    # ... split as overload is, the steps being cars whose draw fell of their own doing
    # (unplugged, done): the spread they leave behind takes a reaction to mend
    imbalance_reaction_amp_seconds: float
    imbalance_misbehaviour_amp_seconds: float
    imbalance_misbehaviour_excursions: int
    site_imbalance_amp_seconds: float  # the same over everything at the connection
    grid_import_kwh: float
    grid_export_kwh: float
    pv_kwh: float
    pv_self_consumption: float | None  # share of PV used on site; None without PV
    fairness: float | None  # Jain's index of the cars' shares; None without cars
    starts: int
    stops: int
    refused_offers: int
    capped_offers: int
    # EVSEs in "surplus" or "solar" mode: the energy they drew, and the part of it beyond
    # the PV surplus (or production) of the moment, that is from the grid; None without
    sun_kwh: float | None = None
    sun_grid_kwh: float | None = None
    # seconds in which the household alone was above the fuse (not charged to the policy)
    house_over_fuse_s: int = 0
    # cars the policy paused while they charged that it offered current again within
    # MIN_PAUSE_S, pauses that began during missing data aside (quick_restarts)
    quick_restarts: int = 0

    @property
    def car_hours(self) -> float:
        """Hours the cars were plugged in, together."""
        return sum(c.plugged_s for c in self.cars) / 3600.0

    @property
    def sun_grid_share(self) -> float | None:
        """Share of the surplus/solar EVSEs' energy that came from the grid."""
        if self.sun_kwh is None or self.sun_grid_kwh is None or self.sun_kwh <= 0:
            return None
        return self.sun_grid_kwh / self.sun_kwh

    @property
    def misbehaviour_excursions(self) -> int:
        return sum(o.misbehaviour_excursions for o in self.overload)


def default_reaction_budget(run: RunResult) -> float:
    """Two control cycles + the slowest car's lag + the meter delay + one second."""
    sc = run.scenario
    lag = max((c.lag_s for c in sc.cars), default=0.0)
    delay = max(sc.meters.grid.delay_s, sc.meters.evse.delay_s,
                *(e.meter.delay_s for e in sc.site.evses if e.meter is not None))
    return 2.0 * sc.cycle_s + lag + delay + 1.0


def load_steps(base_ma: FloatArray, threshold_ma: float, window_s: int) -> BoolArray:
    """Seconds at which the load has risen by ≥ threshold above its minimum of the last
    `window_s` seconds, as a boolean array."""
    n = base_ma.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    w = max(1, window_s) + 1  # now and the window_s seconds before
    padded = np.concatenate([np.full(w - 1, base_ma[0]), base_ma])
    trailing_min = np.lib.stride_tricks.sliding_window_view(padded, w).min(axis=1)
    return np.asarray(base_ma - trailing_min >= threshold_ma)


def _last_true_index(mask: BoolArray) -> npt.NDArray[np.int64]:
    """For each index, the latest index ≤ it where mask is true (−10⁹ if none)."""
    idx = np.where(mask, np.arange(mask.shape[0]), -(10**9))
    return np.maximum.accumulate(idx) if idx.shape[0] else idx.astype(np.int64)


def overload_stats(
    name: str,
    phase: int,
    current_ma: FloatArray,
    limit_ma: int,
    steps: BoolArray | None,
    budget_s: float,
) -> OverloadStats:
    """Excursions of `current_ma` (one value per second) above `limit_ma`."""
    over = current_ma - limit_ma
    above = over >= RESOLUTION_MA
    if not above.any():
        return OverloadStats(name, phase, limit_ma, 0.0, 0, 0.0, 0, 0.0, 0, 0.0, 0, 0.0)
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive
    pos = np.where(above, over, 0.0)
    cum = np.concatenate([[0.0], np.cumsum(pos)])
    area = (cum[ends] - cum[starts]) / 1000.0  # A·s
    peak = np.maximum.reduceat(pos, starts) / 1000.0
    length = ends - starts
    if steps is not None and steps.any():
        last_step = _last_true_index(steps)[starts]
        reaction = last_step >= ends - budget_s
    else:
        reaction = np.zeros(starts.shape[0], dtype=bool)
    mis = ~reaction
    return OverloadStats(
        limit=name,
        phase=phase,
        limit_ma=limit_ma,
        amp_seconds=float(area.sum()),
        excursions=int(starts.shape[0]),
        max_excursion_a=float(peak.max()),
        longest_s=int(length.max()),
        reaction_amp_seconds=float(area[reaction].sum()),
        reaction_excursions=int(reaction.sum()),
        misbehaviour_amp_seconds=float(area[mis].sum()),
        misbehaviour_excursions=int(mis.sum()),
        misbehaviour_max_a=float(peak[mis].max()) if mis.any() else 0.0,
    )


def car_drops(run: RunResult, threshold_ma: float, tolerance_ma: float = 100.0) -> BoolArray:
    """Seconds at which a car's draw fell by at least `threshold_ma` of its own doing: it
    was unplugged while drawing, or it drew less although its offer still covered what it
    drew before (it was done, or tapering). A fall that follows a lowered offer is
    the policy's doing and does not count."""
    n = run.duration_s
    mask = np.zeros(n, dtype=bool)
    for s in run.sessions:
        drawn = np.frombuffer(s.drawn_ma, dtype=np.float64)
        k = drawn.shape[0]
        if k == 0:
            continue
        end = s.arrive_s + k
        if end < n and drawn[-1] >= threshold_ma:
            mask[end] = True
        if k == 1:
            continue
        offer = np.zeros(k)
        for t, ma in s.offers:
            offer[max(0, t - s.arrive_s):] = ma
        fell = drawn[:-1] - drawn[1:] >= threshold_ma
        own = offer[1:] + tolerance_ma >= drawn[:-1]
        at = np.flatnonzero(fell & own) + 1 + s.arrive_s
        mask[at[at < n]] = True
    return mask


def imbalance_stats(
    phases: FloatArray, limit_ma: int, steps: BoolArray | None, budget_s: float
) -> OverloadStats:
    """Excursions of the spread (largest − smallest phase, per second) of `phases` above
    `limit_ma`, split like overload; none when the limit is off (0)."""
    if limit_ma <= 0 or phases.shape[1] == 0:
        return OverloadStats("imbalance", 0, limit_ma, 0.0, 0, 0.0, 0, 0.0, 0, 0.0, 0, 0.0)
    spread = phases.max(axis=0) - phases.min(axis=0)
    return overload_stats("imbalance", 0, spread, limit_ma, steps, budget_s)


def per_phase_loads(run: RunResult) -> dict[str, FloatArray]:
    """True load per limit: "evse-line" (EVSEs) and "group <id>" (its EVSEs and its own
    consumers) → array (3, seconds) in mA."""
    site = run.scenario.site
    n = run.duration_s
    groups = {g.id: np.zeros((3, n)) for g in site.groups}
    chains = {e.id: site.group_chain(e.group) for e in site.evses}
    for s in run.sessions:
        chain = chains[s.evse_id]
        if not chain or not len(s.drawn_ma):
            continue
        drawn = np.frombuffer(s.drawn_ma, dtype=np.float64)
        lo, hi = s.arrive_s, s.arrive_s + drawn.shape[0]
        for g in chain:
            for p in range(3):
                if s.building_mask >> p & 1:
                    groups[g][p, lo:hi] += drawn
    for g, own in run.profile.group_ma.items():
        groups[g] += np.asarray(own, dtype=np.float64)[:, :n]
    out = {"evse-line": np.vstack([np.frombuffer(a, dtype=np.float64) for a in run.evse_ma])}
    out.update({f"group {g}": arr for g, arr in groups.items()})
    return out


def car_deliverable_kwh(run: RunResult, car_id: str) -> float:
    """The most a car could have taken during its stay in this run at its maximum current,
    up to its need and the room in its battery (site limits ignored; with an offline
    optimum, compute_metrics uses its tighter per-car bound instead)."""
    sc = run.scenario
    spec = sc.car(car_id)
    s = run.session(car_id)
    evse = sc.site.evse(s.evse_id)
    amps = min(spec.max_ma, evse.max_ma) / 1000.0
    stay_h = max(0, s.leave_s - s.arrive_s) / 3600.0
    room = min(spec.need_kwh, (1.0 - spec.soc) * spec.capacity_kwh)
    return max(0.0, min(room, amps * sc.site.limits.voltage_v * s.phase_count * stay_h / 1000.0))


def jain_index(values: list[float]) -> float | None:
    """(Σx)² / (n·Σx²): 1 when all are equal, 1/n when one takes everything."""
    if not values:
        return None
    sq = sum(v * v for v in values)
    if sq == 0.0:
        return 1.0
    return sum(values) ** 2 / (len(values) * sq)


def compute_metrics(
    run: RunResult,
    *,
    reaction_budget_s: float | None = None,
    step_threshold_ma: float = 2000.0,
    step_window_s: int = 30,
    optimum: OptimumResult | None = None,
) -> Metrics:
    """All figures for one run. `reaction_budget_s` defaults to default_reaction_budget(run)."""
    sc = run.scenario
    site = sc.site
    lim = site.limits
    volt = lim.voltage_v
    budget = default_reaction_budget(run) if reaction_budget_s is None else reaction_budget_s
    n = run.duration_s

    grid = np.vstack([np.frombuffer(a, dtype=np.float64) for a in run.grid_ma])
    base = np.vstack([np.asarray(b, dtype=np.float64) for b in run.profile.base_ma])
    loads = per_phase_loads(run)

    overload: list[OverloadStats] = []
    n_steps = 0
    # Seconds in which the household alone is above the fuse: no policy could help it,
    # so its overload there is not charged to the policy (and the run says so).
    house_over = (base > lim.max_current_ma + RESOLUTION_MA)[:, :n]
    for p in range(3):
        steps = load_steps(base[p], step_threshold_ma, step_window_s)
        n_steps += int(np.count_nonzero(np.diff(steps.astype(np.int8), prepend=0) == 1))
        g = np.where(house_over[p], np.minimum(grid[p], lim.max_current_ma), grid[p])
        overload.append(overload_stats("site", p + 1, g, lim.max_current_ma, steps, budget))
    if lim.max_evse_current_ma:
        line = loads["evse-line"]
        for p in range(3):
            overload.append(
                overload_stats("evse-line", p + 1, line[p], lim.max_evse_current_ma, None, budget)
            )
    for g in site.groups:
        arr = loads[f"group {g.id}"]
        own = run.profile.group_ma.get(g.id)
        for p in range(3):
            if own is None:
                overload.append(overload_stats(f"group {g.id}", p + 1, arr[p],
                                               g.max_current_ma, None, budget))
                continue
            # Its own consumers: their rises are load steps (reaction, as at the site),
            # and what they alone put above the group's limit is not the policy's.
            mine = np.asarray(own[p], dtype=np.float64)[:n]
            steps = load_steps(mine, step_threshold_ma, step_window_s)
            x = np.where(mine > g.max_current_ma + RESOLUTION_MA,
                         np.minimum(arr[p], g.max_current_ma), arr[p])
            overload.append(overload_stats(f"group {g.id}", p + 1, x, g.max_current_ma,
                                           steps, budget))

    imbalance = imbalance_stats(loads["evse-line"], lim.max_imbalance_ma,
                                car_drops(run, step_threshold_ma), budget)
    site_imbalance = imbalance_stats(grid, lim.max_imbalance_ma, None, budget)

    power_w = grid.sum(axis=0) * volt / 1000.0
    grid_import = float(np.clip(power_w, 0.0, None).sum() / 3.6e6)
    grid_export = float(np.clip(-power_w, 0.0, None).sum() / 3.6e6)
    pv_kwh = float(np.sum(np.asarray(run.profile.pv_w)) / 3.6e6) if n else 0.0
    self_use = None
    if sc.pv is not None and pv_kwh > 0:
        self_use = max(0.0, 1.0 - grid_export / pv_kwh)

    cars: list[CarMetrics] = []
    for s in run.sessions:
        drawn = np.frombuffer(s.drawn_ma, dtype=np.float64)
        on = drawn >= ACTIVE_MA
        edges = np.diff(on.astype(np.int8), prepend=0)
        first = np.flatnonzero(on)
        if optimum is not None and s.car_id in optimum.alone_kwh:
            deliverable = optimum.alone_kwh[s.car_id]
        else:
            deliverable = car_deliverable_kwh(run, s.car_id)
        share = min(1.0, s.delivered_kwh / deliverable) if deliverable > 1e-3 else None
        cars.append(
            CarMetrics(
                car_id=s.car_id,
                evse_id=s.evse_id,
                need_kwh=s.need_kwh,
                deliverable_kwh=deliverable,
                delivered_kwh=s.delivered_kwh,
                share=share,
                starts=int(np.count_nonzero(edges == 1)),
                stops=int(np.count_nonzero(edges == -1)),
                first_current_s=int(first[0]) if first.shape[0] else None,
                soc_end=s.soc_end,
                plugged_s=s.leave_s - s.arrive_s,
            )
        )
    shares = [c.share for c in cars if c.share is not None]

    sun_kwh, sun_grid_kwh = sun_energy(run)
    return Metrics(
        scenario=sc.name,
        policy=run.policy_name,
        duration_s=n,
        cycles=run.cycles,
        cars=tuple(cars),
        need_kwh=sum(c.need_kwh for c in cars),
        deliverable_kwh=sum(c.deliverable_kwh for c in cars),
        delivered_kwh=sum(c.delivered_kwh for c in cars),
        optimum_kwh=None if optimum is None else optimum.total_kwh,
        overload=tuple(overload),
        overload_amp_seconds=sum(o.amp_seconds for o in overload),
        reaction_amp_seconds=sum(o.reaction_amp_seconds for o in overload),
        misbehaviour_amp_seconds=sum(o.misbehaviour_amp_seconds for o in overload),
        reaction_budget_s=budget,
        load_steps=n_steps,
        imbalance_amp_seconds=imbalance.amp_seconds,
        imbalance_max_a=imbalance.max_excursion_a,
        imbalance_reaction_amp_seconds=imbalance.reaction_amp_seconds,
        imbalance_misbehaviour_amp_seconds=imbalance.misbehaviour_amp_seconds,
        imbalance_misbehaviour_excursions=imbalance.misbehaviour_excursions,
        site_imbalance_amp_seconds=site_imbalance.amp_seconds,
        grid_import_kwh=grid_import,
        grid_export_kwh=grid_export,
        pv_kwh=pv_kwh,
        pv_self_consumption=self_use,
        fairness=jain_index(shares),
        starts=sum(c.starts for c in cars),
        stops=sum(c.stops for c in cars),
        refused_offers=run.refused_offers,
        capped_offers=run.capped_offers,
        sun_kwh=sun_kwh,
        sun_grid_kwh=sun_grid_kwh,
        house_over_fuse_s=int(np.count_nonzero(house_over.any(axis=0))),
        quick_restarts=quick_restarts(run),
    )


def quick_restarts(run: RunResult, pause_s: int = MIN_PAUSE_S) -> int:
    """How often the policy paused a charging car and offered it current again within
    `pause_s`. A pause is an offer falling to 0 while the car drew at least ACTIVE_MA in
    the second before, the car still plugged in; a restart is its next offer above 0,
    before it leaves. Left out: pauses that begin while readings are missing — a scenario
    fault of missing data (a stale or silent meter, an EVSE offline) or a random dropout
    of the grid meter, the PV meter or a group's meter — or within DATA_FAULT_AFTER_S
    after it (a pause caused only by missing readings ends when they are back); and a
    pause in which the car's EVSE switched between one and three phases (the switch
    interrupts the pilot: no pause of the manager's)."""
    sc = run.scenario
    data = (FaultKind.METER_STALE, FaultKind.METER_DROPOUT, FaultKind.EVSE_OFFLINE)
    spells = [(f.start_s, f.end_s + DATA_FAULT_AFTER_S)
              for f in sc.faults if f.kind in data]
    meters = [(sc.meters.grid, "meter:grid"), (sc.meters.pv, "meter:pv")]
    meters += [(g.meter, f"meter:group:{g.id}") for g in sc.site.groups if g.meter is not None]
    for spec, part in meters:
        spells += [(a, b + DATA_FAULT_AFTER_S)
                   for a, b in random_dropouts(spec, sc.seed, part, run.duration_s)]
    count = 0
    for s in run.sessions:
        drawn = s.drawn_ma
        switched = [t for t, _ in s.phase_changes]
        paused_at: int | None = None
        prev = 0
        for t, ma in s.offers:
            if prev > 0 and ma <= 0 and t < s.leave_s:
                i = t - s.arrive_s - 1
                charging = 0 <= i < len(drawn) and drawn[i] >= ACTIVE_MA
                missing = any(a <= t < b for a, b in spells)
                paused_at = t if charging and not missing else None
            elif prev <= 0 < ma and paused_at is not None:
                phase_switch = any(paused_at - SWITCH_SLACK_S <= w <= t + SWITCH_SLACK_S
                                   for w in switched)
                if t - paused_at < pause_s and t < s.leave_s and not phase_switch:
                    count += 1
                paused_at = None
            prev = ma
    return count


def session_phases(s: SessionTrace) -> FloatArray:
    """How many phases the car drew on, one per second of `s.drawn_ma`: `phase_count`
    throughout, except after each of its EVSE's contactor switches (`phase_changes`)."""
    k = len(s.drawn_ma)
    out = np.full(k, float(s.phase_count))
    for t, count in s.phase_changes:
        out[max(0, t - s.arrive_s):] = count
    return out


def sun_energy(run: RunResult) -> tuple[float | None, float | None]:
    """(energy of the EVSEs in surplus or solar mode, the part of it from the grid), kWh.

    Per second, the EVSEs in surplus mode together may use the PV surplus (production
    minus household, battery included), those in solar mode the production; what they
    draw beyond that comes from the grid. (None, None) without such EVSEs."""
    sc = run.scenario
    modes = {e.id: e.mode for e in sc.site.evses if e.from_sun}
    if not modes:
        return None, None
    n = run.duration_s
    volt = sc.site.limits.voltage_v
    drawn_w = {"surplus": np.zeros(n), "solar": np.zeros(n)}
    for s in run.sessions:
        mode = modes.get(s.evse_id)
        if mode is None:
            continue
        drawn = np.frombuffer(s.drawn_ma, dtype=np.float64)
        end = min(n, s.arrive_s + drawn.shape[0])
        drawn_w[mode][s.arrive_s:end] += (drawn[: end - s.arrive_s]
                                          * session_phases(s)[: end - s.arrive_s] * volt / 1e3)
    base_w = np.vstack([np.asarray(b, dtype=np.float64) for b in run.profile.base_ma])
    surplus = np.clip(-base_w.sum(axis=0) * volt / 1e3, 0.0, None)[:n]
    pv = np.asarray(run.profile.pv_w, dtype=np.float64)[:n]
    grid = (np.clip(drawn_w["surplus"] - surplus, 0.0, None).sum()
            + np.clip(drawn_w["solar"] - pv, 0.0, None).sum())
    total = drawn_w["surplus"].sum() + drawn_w["solar"].sum()
    return float(total / 3.6e6), float(grid / 3.6e6)
