"""Runs a scenario against a policy on a virtual clock and records what happened.

Time advances in fixed steps of one second. At every step, events due (cars plugging in
or leaving, faults starting or ending) are applied first; then, every `cycle_s`, the
policy gets a Snapshot built from the meters (with their delay, noise and faults) and its
Decision is applied to the EVSEs that answer; then every plugged car draws for one second
and the true currents at the connection are recorded. The result holds the true series,
per car what it drew each second, and counters; metrics.py turns it into figures.

This module must never read the real clock for simulated time (wall time is only
measured for reporting), use global randomness, or let the policy see the true plant.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import replace

from chargebrain.core.model import EvseReading, EvseState, MeterReading
from chargebrain.core.phases import Phases, rotate_mask
from chargebrain.sim.car import Car, CarParams
from chargebrain.sim.group_meters import GroupMeters
from chargebrain.sim.meter import Meter, Window
from chargebrain.sim.policy import GRID, PV, Decision, Policy, Snapshot
from chargebrain.sim.profile import build_profile, sub_rng
from chargebrain.sim.results import RunResult, SessionTrace
from chargebrain.sim.scenario import DAY_S, CarSpec, EvseSpec, FaultKind, FaultSpec, Scenario

__all__ = ["DT_S", "RunResult", "SessionTrace", "run_scenario"]

DT_S = 1


class _Point:
    """An EVSE during the run."""

    __slots__ = (
        "evse_mask",
        "idle",
        "live",
        "meter",
        "offer",
        "offline",
        "phases",
        "spec",
        "total_wh",
    )

    def __init__(self, spec: EvseSpec, meter: Meter) -> None:
        self.spec = spec
        self.meter = meter  # its current readings' delay and noise, its energy resolution
        self.offer = 0
        self.offline = False
        self.live: _Live | None = None
        self.total_wh = 0.0
        self.evse_mask = 0b001 if spec.used_phases == 1 else 0b111
        self.phases = spec.used_phases  # what its contactor gives now (1 or 3)
        self.idle = EvseReading(EvseState.WAITING, has_meter=True, max_current_ma=0)


class _Live:
    """A car plugged into an EVSE during the run."""

    __slots__ = (
        "adv",
        "app",
        "car",
        "f1",
        "f2",
        "f3",
        "k0",
        "key",
        "offer",
        "offers",
        "phase_changes",
        "point",
        "reading",
        "spec",
        "trace",
    )

    def __init__(self, spec: CarSpec, car: Car, point: _Point, t: int, delay: int) -> None:
        self.spec = spec
        self.car = car
        self.point = point
        self.offer = point.offer
        self.adv = car.advance
        self.trace: array[float] = array("d")
        self.app = self.trace.append
        self.k0 = t + delay + 1  # trace index of a reading at time t is t - k0
        self.offers: list[tuple[int, int]] = [(t, point.offer)]
        wired = min(car.params.phases, point.spec.used_phases)
        self.phase_changes: list[tuple[int, int]] = (
            [] if car.phase_count == wired else [(t, car.phase_count)])
        mask = rotate_mask(car.phase_mask, point.spec.phase_rotation)
        self.f1 = 1.0 if mask & 1 else 0.0
        self.f2 = 1.0 if mask & 2 else 0.0
        self.f3 = 1.0 if mask & 4 else 0.0
        self.key: tuple[object, ...] = ()
        self.reading = point.idle

    @property
    def evse_id(self) -> str:
        return self.point.spec.id


_CHARGING = EvseState.CHARGING
_PRESENT = EvseState.EV_PRESENT

# event order within one second: leave, fault end, fault start, arrive
_LEAVE, _FAULT_END, _FAULT_START, _ARRIVE = range(4)


def _fault_windows(faults: Sequence[FaultSpec], kind: FaultKind, meter: str) -> list[Window]:
    return [(f.start_s, f.end_s) for f in faults if f.kind is kind and f.target == meter]


def run_scenario(
    scenario: Scenario, policy: Policy, *, shorten: float | None = None
) -> RunResult:
    """Simulate `scenario` with `policy` deciding every `cycle_s`.

    `shorten` runs only the first that many simulated seconds (the scenario's start time
    of day is kept); None runs the whole duration.
    """
    wall0 = time.perf_counter()
    n = scenario.duration_s if shorten is None else max(1, min(scenario.duration_s, int(shorten)))
    site = scenario.site
    volt = site.limits.voltage_v
    profile = build_profile(scenario, n)
    b1, b2, b3 = profile.base_ma
    groups = GroupMeters(scenario, profile)
    metered = bool(groups)
    evse_meter = Meter(scenario.meters.evse, sub_rng(scenario.seed, "meter:evse"))
    points = {e.id: _Point(e, evse_meter if e.meter is None else Meter(
        e.meter, sub_rng(scenario.seed, f"meter:evse:{e.id}"))) for e in site.evses}
    point_list = list(points.values())
    evse_ids = frozenset(points)

    faults = scenario.faults
    grid_meter = Meter(
        scenario.meters.grid,
        sub_rng(scenario.seed, "meter:grid"),
        dropouts=_fault_windows(faults, FaultKind.METER_DROPOUT, GRID),
        stale=_fault_windows(faults, FaultKind.METER_STALE, GRID),
    )
    pv_meter = Meter(
        scenario.meters.pv,
        sub_rng(scenario.seed, "meter:pv"),
        dropouts=_fault_windows(faults, FaultKind.METER_DROPOUT, PV),
        stale=_fault_windows(faults, FaultKind.METER_STALE, PV),
    )

    # true histories; entry i = the second that ended at time i, entry 0 = before the start
    g1: list[float] = [b1[0]]
    g2: list[float] = [b2[0]]
    g3: list[float] = [b3[0]]
    e1s: list[float] = []
    e2s: list[float] = []
    e3s: list[float] = []
    pv_k = 1000.0 / (3.0 * volt)
    pv_hist: list[float] | None = None
    if scenario.pv is not None:
        pv_hist = [profile.pv_w[0] * pv_k] + [w * pv_k for w in profile.pv_w]

    events: list[tuple[int, int, int, object]] = []
    for i, c in enumerate(scenario.cars):
        if c.arrive_s < n:
            events.append((c.arrive_s, _ARRIVE, i, c))
            events.append((min(c.leave_s, n), _LEAVE, i, c))
    for i, f in enumerate(faults):
        if f.kind in (FaultKind.EVSE_OFFLINE, FaultKind.CAR_UNDERDRAW,
                      FaultKind.CAR_OVERDRAW) and f.start_s < n:
            events.append((f.start_s, _FAULT_START, i, f))
            events.append((f.end_s, _FAULT_END, i, f))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    next_event = events[0][0] if events else n + 1
    ev_i = 0

    underdraw: dict[str, tuple[float, int]] = {}
    active: list[_Live] = []
    done: list[SessionTrace] = []
    live_by_car: dict[str, _Live] = {}
    imp_wh = 0.0
    exp_wh = 0.0
    refused = 0
    capped = 0
    cycles = 0
    policy_s = 0.0
    cycle = scenario.cycle_s
    nonzero: set[_Point] = set()
    # readings of EVSEs without a car (or not answering); cars' readings go on top each cycle
    static: dict[str, EvseReading | None] = {p.spec.id: p.idle for p in point_list}
    last_currents: dict[str, int] | None = None
    last_counts = (0, 0)
    wh_per_mas = volt / 3.6e6

    def finish(live: _Live, t: int) -> None:
        car = live.car
        point = live.point
        point.total_wh += car.energy_wh
        point.idle = EvseReading(
            EvseState.WAITING,
            total_energy_wh=math.floor(point.total_wh / point.meter.spec.energy_step_wh)
            * point.meter.spec.energy_step_wh,
            has_meter=True,
            max_current_ma=point.offer,
        )
        point.live = None
        if not point.offline:
            static[point.spec.id] = point.idle
        done.append(
            SessionTrace(
                car_id=live.spec.id,
                evse_id=point.spec.id,
                arrive_s=live.spec.arrive_s,
                leave_s=t,
                phase_count=min(car.params.phases, point.spec.used_phases),
                building_mask=rotate_mask(
                    (1 << min(car.params.phases, point.spec.used_phases)) - 1,
                    point.spec.phase_rotation),
                need_kwh=live.spec.need_kwh,
                delivered_kwh=car.energy_wh / 1000.0,
                soc_start=live.spec.soc,
                soc_end=car.soc,
                drawn_ma=live.trace,
                offers=tuple(live.offers),
                phase_changes=tuple(live.phase_changes),
            )
        )

    def set_offer(point: _Point, value: int, t: int) -> None:
        point.offer = value
        if value:
            nonzero.add(point)
        else:
            nonzero.discard(point)
        live = point.live
        if live is not None:
            live.offer = value
            live.offers.append((t, value))
        elif not point.offline:
            point.idle = replace(point.idle, max_current_ma=value)
            static[point.spec.id] = point.idle

    def handle(t: int, kind: int, payload: object) -> None:
        nonlocal last_currents
        if kind == _ARRIVE:
            assert isinstance(payload, CarSpec)
            point = points[payload.evse]
            car = Car(
                CarParams(
                    capacity_kwh=payload.capacity_kwh,
                    soc=payload.soc,
                    need_kwh=payload.need_kwh,
                    max_ma=payload.max_ma,
                    phases=payload.phases,
                    min_start_ma=payload.min_start_ma,
                    lag_s=payload.lag_s,
                    taper_soc=payload.taper_soc,
                    sleep_after_s=payload.sleep_after_s,
                    wake_after_s=payload.wake_after_s,
                ),
                evse_phases=point.phases,
                voltage_v=volt,
            )
            if payload.id in underdraw:
                car.set_underdraw(*underdraw[payload.id])
            live = _Live(payload, car, point, t, point.meter.spec.delay_s)
            point.live = live
            active.append(live)
            live_by_car[payload.id] = live
        elif kind == _LEAVE:
            assert isinstance(payload, CarSpec)
            live = live_by_car.pop(payload.id)
            active.remove(live)
            finish(live, t)
        else:
            assert isinstance(payload, FaultSpec)
            last_currents = None
            start = kind == _FAULT_START
            if payload.kind is FaultKind.EVSE_OFFLINE:
                point = points[payload.target]
                if start and payload.fail_safe_ma is not None:
                    set_offer(point, min(payload.fail_safe_ma, point.spec.max_ma), t)
                point.offline = start
                static[point.spec.id] = None if start else point.idle
            else:
                factor, offset = (payload.factor, payload.offset_ma) if start else (1.0, 0)
                if start:
                    underdraw[payload.target] = (factor, offset)
                else:
                    underdraw.pop(payload.target, None)
                target = live_by_car.get(payload.target)
                if target is not None:
                    target.car.set_underdraw(factor, offset)

    def snapshot(t: int) -> Snapshot:
        grid = grid_meter.read(t, (g1, g2, g3))
        meters: dict[str, MeterReading | None] = {
            GRID: None
            if grid is None
            else MeterReading(
                power_w=grid.total() * volt / 1000.0,
                currents=grid,
                import_wh=imp_wh,
                export_wh=exp_wh,
            )
        }
        if pv_hist is not None:
            pv = pv_meter.read(t, (pv_hist, pv_hist, pv_hist))
            meters[PV] = (
                None
                if pv is None
                else MeterReading(power_w=pv.total() * volt / 1000.0, currents=pv)
            )
        if metered:
            meters.update(groups.readings(t))
        readings = dict(static)
        for live in active:
            point = live.point
            if point.offline:
                continue
            k = t - live.k0
            cur = live.trace[k] if k >= 0 else 0.0
            meter = point.meter
            if meter.spec.noise_pct > 0.0:
                cur = meter.noisy(cur)
            ma = int(cur + 0.5) if cur > 0.0 else 0
            car = live.car
            state = _CHARGING if car.charging else _PRESENT
            energy_step = meter.spec.energy_step_wh
            energy = (point.total_wh + car.energy_wh) // energy_step * energy_step
            plan = live.spec.plan
            told = plan is not None and t >= plan.at_s
            key = (state, ma, energy, live.offer, told)
            if key != live.key:
                live.key = key
                live.reading = EvseReading(
                    state,
                    Phases.on_mask(ma, car.phase_mask & point.evse_mask),
                    ma * volt * car.phase_count / 1000.0,
                    energy,
                    True,
                    live.offer,
                )
                if told:
                    assert plan is not None
                    live.reading = replace(live.reading, departure=float(plan.departure_s),
                                           req_energy_wh=plan.energy_kwh * 1000.0)
            readings[point.spec.id] = live.reading
        return Snapshot(t, (scenario.start_s + t) % DAY_S, cycles, meters, readings, site)

    def switch(phases: Mapping[str, int], t: int) -> None:
        """EVSEs whose contactor switched: their cars draw on the phases given now."""
        for evse_id, n in phases.items():
            point = points[evse_id]
            if n == point.phases:
                continue
            point.phases = n
            live = point.live
            if live is not None:
                live.car.switch_phases(n)
                live.phase_changes.append((t, live.car.phase_count))
                mask = rotate_mask(live.car.phase_mask, point.spec.phase_rotation)
                live.f1, live.f2, live.f3 = (1.0 if mask & b else 0.0 for b in (1, 2, 4))
                live.key = ()

    def apply(decision: Decision, t: int) -> None:
        nonlocal refused, capped, last_currents, last_counts
        if decision.phases:
            switch(decision.phases, t)
        cur = decision.currents
        if not decision.wake and cur == last_currents:
            # the same command again: nothing changes, the same offers are refused or capped
            refused += last_counts[0]
            capped += last_counts[1]
            return
        refused0, capped0 = refused, capped
        unknown = (cur.keys() | decision.wake) - evse_ids
        if unknown:
            raise ValueError(f"decision names unknown EVSEs: {sorted(unknown)}")
        for evse_id, value in cur.items():
            point = points[evse_id]
            if point.offline:
                continue
            v = int(value)
            if v:
                spec = point.spec
                if v < spec.min_ma:
                    refused += 1
                    v = 0
                elif v > spec.max_ma:
                    capped += 1
                    v = spec.max_ma
            if v != point.offer:
                set_offer(point, v, t)
        for point in [p for p in nonzero if p.spec.id not in cur and not p.offline]:
            set_offer(point, 0, t)
        for evse_id in decision.wake:
            point = points[evse_id]
            if point.live is not None and not point.offline:
                point.live.car.cp_disconnect()
        last_currents = dict(cur)
        last_counts = (refused - refused0, capped - capped0)

    next_cycle = 0
    clock = time.perf_counter
    for t in range(n):
        if t >= next_event:
            while ev_i < len(events) and events[ev_i][0] <= t:
                _, kind, _, payload = events[ev_i]
                handle(t, kind, payload)
                ev_i += 1
            next_event = events[ev_i][0] if ev_i < len(events) else n + 1
        if t == next_cycle:
            next_cycle += cycle
            snap = snapshot(t)
            p0 = clock()
            decision = policy.decide(snap)
            policy_s += clock() - p0
            apply(decision, t)
            cycles += 1
        s1 = s2 = s3 = 0.0
        for live in active:
            drawn = live.adv(1.0, live.offer)
            live.app(drawn)
            if drawn:
                s1 += drawn * live.f1
                s2 += drawn * live.f2
                s3 += drawn * live.f3
        e1s.append(s1)
        e2s.append(s2)
        e3s.append(s3)
        if metered:
            groups.second(t, active)
        x1 = b1[t] + s1
        x2 = b2[t] + s2
        x3 = b3[t] + s3
        g1.append(x1)
        g2.append(x2)
        g3.append(x3)
        p = x1 + x2 + x3
        if p > 0.0:
            imp_wh += p * wh_per_mas
        else:
            exp_wh -= p * wh_per_mas

    for live in list(active):
        finish(live, n)
    order = {c.id: i for i, c in enumerate(scenario.cars)}
    done.sort(key=lambda s: order[s.car_id])
    return RunResult(
        scenario=scenario,
        policy_name=type(policy).__name__,
        duration_s=n,
        grid_ma=(array("d", g1[1:]), array("d", g2[1:]), array("d", g3[1:])),
        evse_ma=(array("d", e1s), array("d", e2s), array("d", e3s)),
        profile=profile,
        sessions=tuple(done),
        cycles=cycles,
        refused_offers=refused,
        capped_offers=capped,
        wall_s=time.perf_counter() - wall0,
        policy_wall_s=policy_s,
        policy_stats=_stats(policy),
    )


def _stats(policy: Policy) -> dict[str, int]:
    stats = getattr(policy, "stats", None)
    return {str(k): int(v) for k, v in stats().items()} if callable(stats) else {}
