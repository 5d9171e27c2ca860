"""The site simulator with the real charging manager: speed, and the load-management goals.

Speed: 24 simulated hours of the office scenario (40 EVSEs, 74 car stays, the devices
reporting every second: 86 400 reports of 42 readings) with `ManagerPolicy` — the real
ChargingManager fed through its HTTP-input drivers on a virtual clock, running its
periodic cycle every 3 s (the vendor's) and a cycle at once for every push that matters
— against the same run with the trivial fuse-only policy (the simulator's own share),
reported. Then the manager's cost per cycle of its own (the pushes included; goal ≤ 1.5
×) against the core balancer alone (`CorePolicy`, the same inputs without the manager
shell, deciding at every report), against the manager without its rules runtime, and the
cycles run; these three over the same first `PER_CYCLE_H` simulated hours (the same cars
and loads, the policy's time divided by its own decisions: the manager's cycles, the
core's reports).

Goals, measured with the real manager: delivered energy as a share of the offline optimum
(the compliant bound where it is solved; goal ≥ 0.95 in every shipped scenario, 0.90 in
faults, against a bound that knows the faults), Jain's index in the garage (≥ 0.95),
starts plus stops against the equal-split baseline (fewer) and per car-hour at scale
(parking-200, ≤ 2), starts plus stops per delivered kWh against the best baseline that
keeps every fuse (core, equal split, fcfs, fuse-only: those without overload beyond the
reaction budget in the run), the cars the manager paused while they charged and offered
current again within `min_pause_time` (0), overload beyond the reaction budget in every
shipped scenario (0 A·s), and the office with every car announcing its departure plan
(≥ 0.97 of the bound). The goal column says PASS or FAIL for what was measured.

`quick` runs shortened scenarios and says so in every figure's name. This module only
measures; it must never write files or change a scenario to flatter a figure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from bench.common import Figure
from chargebrain.sim.compare import (
    ENERGY_GOAL,
    ENERGY_GOALS,
    SWITCHING_GOAL,
    SWITCHING_GOAL_SCENARIOS,
    run_policy,
    switching_rate,
)
from chargebrain.sim.core_policy import core_balancer
from chargebrain.sim.manager_policy import ManagerPolicy
from chargebrain.sim.metrics import Metrics, compute_metrics
from chargebrain.sim.optimum import OptimumResult, offline_optimum
from chargebrain.sim.policy import FuseOnlyPolicy, Policy
from chargebrain.sim.runner import RunResult, run_scenario
from chargebrain.sim.scenario import Scenario, load_scenario, shipped_scenarios, with_plans

MANAGER_GOAL = 1.5  # one manager cycle against the core balancer alone, same inputs
JAIN_GOAL = 0.95
PLANS_GOAL = 0.97  # the office when every car announces its departure plan
# the baselines run beside the manager; starts + stops per kWh are compared with the best
# of them that keeps every fuse in the run
SWITCHING_BASELINES = ("core", "equal-split", "fcfs", "fuse-only")
QUICK_H = {"home": 14, "apartment-garage": 4, "single-phase-mix": 2, "faults": 2, "office": 2,
           "silent-grid": 1, "silent-evse": 3, "noisy-meters": 3, "solar-two-cars": 5,
           "parking-200": 1, "wallboxes": 0.25, "pv-phases": 5, "group-meters": 3}
PER_CYCLE_H = 2  # simulated hours for the per-cycle comparisons


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _timed(scenario: Scenario, policy: Policy, shorten: float | None) -> tuple[RunResult, float]:
    t0 = time.perf_counter()
    run = run_scenario(scenario, policy, shorten=shorten)
    return run, time.perf_counter() - t0


def _per_cycle_us(run: RunResult) -> float:
    """Policy time per cycle of the policy's own (per call if it has none)."""
    cycles = run.policy_stats.get("manager cycles", run.cycles)
    return 1e6 * run.policy_wall_s / max(1, cycles)


def office_per_cycle_us(office: Scenario) -> tuple[float, float, float]:
    """The manager per cycle with the pushes between its cycles, the manager's cycle
    alone, and the core balancer per call (µs), over the first `PER_CYCLE_H` simulated
    hours of `office`: the goal's figures alone (bench/office_cycle.py runs them)."""
    per = PER_CYCLE_H * 3600.0
    with ManagerPolicy.for_scenario(office) as policy:
        run, _ = _timed(office, policy, per)
        own_s = policy.cycle_wall_s
    core_run, _ = _timed(office, core_balancer(), per)
    cycles = run.policy_stats["manager cycles"]
    return _per_cycle_us(run), 1e6 * own_s / max(1, cycles), _per_cycle_us(core_run)


def speed(quick: bool) -> tuple[list[Figure], RunResult]:
    office = load_scenario("office")
    hours = QUICK_H["office"] if quick else 24
    shorten = None if not quick else hours * 3600.0
    _, fuse_s = _timed(office, FuseOnlyPolicy(), shorten)
    with ManagerPolicy.for_scenario(office) as policy:
        run, wall = _timed(office, policy, shorten)
        cycle_s = policy.cycle_s
    label = (f"sim office {hours} h, real manager, reports every {office.cycle_s} s, "
             f"{cycle_s:g} s cycle")
    stats = run.policy_stats
    figures = [
        Figure(f"{label}: wall (baseline: fuse only)", wall, "s", baseline=fuse_s,
               ratio=wall / fuse_s, goal="report"),
        Figure(f"{label}: manager cycles (baseline: one per report)",
               stats["manager cycles"], "", baseline=run.cycles,
               ratio=stats["manager cycles"] / run.cycles),
        Figure(f"{label}: cycles woken by a push that mattered",
               stats["woken by a push"], "", goal="report"),
    ]
    # Like with like: the three per-cycle figures over the same simulated hours (the
    # same cars, the same load); the quick run's manager run is those hours already.
    per = PER_CYCLE_H * 3600.0
    per_run, cycles_s = run, policy.cycle_wall_s
    if hours != PER_CYCLE_H:
        with ManagerPolicy.for_scenario(office) as same:
            per_run, _ = _timed(office, same, per)
            cycles_s = same.cycle_wall_s
    core_run, _ = _timed(office, core_balancer(), per)
    with ManagerPolicy.for_scenario(office, rules=False) as bare:
        bare_run, _ = _timed(office, bare, per)
    mgr_us, core_us = _per_cycle_us(per_run), _per_cycle_us(core_run)
    bare_us = _per_cycle_us(bare_run)
    own_us = 1e6 * cycles_s / max(1, per_run.policy_stats["manager cycles"])
    figures += [
        Figure("sim office: manager per cycle, pushes included (vs core balancer alone)",
               mgr_us, "µs", baseline=core_us, ratio=mgr_us / core_us,
               goal=f"≤ {MANAGER_GOAL:g} ×: {_verdict(mgr_us <= MANAGER_GOAL * core_us)}"),
        Figure("sim office: manager without rules runtime per cycle (vs core)", bare_us, "µs",
               baseline=core_us, ratio=bare_us / core_us),
        Figure("sim office: the manager's cycle alone, without pushes (vs core)", own_us,
               "µs", baseline=core_us, ratio=own_us / core_us, goal="report"),
    ]
    return figures, run


def _run(scenario: Scenario, shorten: float | None, full_goals: bool,
         done: RunResult | None) -> tuple[Metrics, dict[str, Metrics], float | None]:
    """Our metrics (reusing `done`, a manager run of the same length, if given), the
    baselines' (SWITCHING_BASELINES) and the optimum's bound (the latter two only for
    full_goals)."""
    opt = _bound(scenario, shorten) if full_goals else None
    if done is not None:
        ours = compute_metrics(replace(done, policy_name="manager"), optimum=opt)
    else:
        ours = run_policy("manager", scenario, shorten=shorten, optimum=opt).metrics
    baselines = {name: run_policy(name, scenario, shorten=shorten).metrics
                 for name in SWITCHING_BASELINES} if full_goals else {}
    return ours, baselines, None if opt is None else opt.total_kwh


def _bound(scenario: Scenario, shorten: float | None) -> OptimumResult:
    """The compliant bound where it is solved, else the perfect-foresight one."""
    try:
        return offline_optimum(scenario, shorten=shorten, compliant=True)
    except RuntimeError:  # not solved in time
        return offline_optimum(scenario, shorten=shorten)


def _per_kwh(m: Metrics) -> float:
    """Starts plus stops per delivered kWh (0 when nothing was delivered)."""
    return (m.starts + m.stops) / m.delivered_kwh if m.delivered_kwh > 0 else 0.0


def _switching_figures(tag: str, ours: Metrics, baselines: dict[str, Metrics],
                       judged: Callable[[str, bool], str], sun: bool) -> list[Figure]:
    """Starts + stops per delivered kWh against the best baseline that keeps every fuse
    (no overload beyond the reaction budget), and the manager's quick restarts. Where
    EVSEs charge from the PV surplus (`sun`) the baselines, which ignore surplus mode and
    charge from the grid at once, are no measure: the figure is reported, not judged."""
    figures: list[Figure] = []
    keeping = {n: m for n, m in baselines.items()
               if m.misbehaviour_excursions == 0 and m.delivered_kwh > 0}
    if keeping:
        name = min(keeping, key=lambda n: _per_kwh(keeping[n]))
        mine, best = _per_kwh(ours), _per_kwh(keeping[name])
        figures.append(Figure(
            f"{tag}: starts + stops per kWh, manager vs best fuse-keeping baseline ({name})",
            mine, "per kWh", baseline=best, ratio=mine / best if best else None,
            goal="report (the baselines ignore surplus mode)" if sun
            else judged("≤ baseline", mine <= best)))
    figures.append(Figure(
        f"{tag}: cars paused and restarted within min_pause_time, manager",
        float(ours.quick_restarts), "", goal=f"0: {_verdict(ours.quick_restarts == 0)}"))
    return figures


def _plans_figure(quick: bool, judged: Callable[[str, bool], str]) -> Figure:
    """The office with every car announcing its departure plan, against the bound."""
    office = load_scenario("office")
    shorten = QUICK_H["office"] * 3600.0 if quick else None
    hours = QUICK_H["office"] if quick else office.duration_s / 3600
    opt = _bound(office, shorten)
    ours = run_policy("manager", with_plans(office), shorten=shorten, optimum=opt).metrics
    share = ours.delivered_kwh / opt.total_kwh if opt.total_kwh > 0 else 1.0
    return Figure(f"sim office {hours:g} h, every car with a departure plan: energy / "
                  "offline optimum, manager", share, "share",
                  goal=judged(f"≥ {PLANS_GOAL}", share >= PLANS_GOAL - 5e-4))


def goals(quick: bool, office_run: RunResult) -> list[Figure]:
    """Overload is judged on every run; energy, fairness and switching only on the full
    scenarios they are stated for (a shortened garage is still rotating, a shortened
    office night has not started any van under equal split): shortened, they report."""
    figures: list[Figure] = []

    def judged(goal: str, ok: bool) -> str:
        if quick:
            return f"{goal} on the full run (shortened here: report)"
        return f"{goal}: {_verdict(ok)}"

    for name in sorted(shipped_scenarios()):
        sc = load_scenario(name)
        hours = QUICK_H[name] if quick else sc.duration_s / 3600
        shorten = hours * 3600.0 if quick else None
        tag = f"sim {name} {hours:g} h"
        full_goals = True
        done = office_run if name == "office" else None
        ours, baselines, opt_kwh = _run(sc, shorten, full_goals, done)
        equal = baselines.get("equal-split")
        figures.append(Figure(
            f"{tag}: overload beyond reaction budget, manager", ours.misbehaviour_amp_seconds,
            "A·s", goal=f"0: {_verdict(ours.misbehaviour_excursions == 0)}"))
        if not full_goals or equal is None or opt_kwh is None:
            continue
        share = ours.delivered_kwh / opt_kwh if opt_kwh > 0 else 1.0
        goal = ENERGY_GOALS.get(name, ENERGY_GOAL)
        figures.append(Figure(
            f"{tag}: energy / offline optimum, manager", share, "share",
            baseline=equal.delivered_kwh / opt_kwh if opt_kwh > 0 else None,
            goal=judged(f"≥ {goal}", share >= goal - 5e-4) + " (baseline: equal split)"))
        rate = switching_rate(ours)
        if name in SWITCHING_GOAL_SCENARIOS and rate is not None:
            figures.append(Figure(
                f"{tag}: starts + stops per car-hour, manager", rate, "per car-hour",
                goal=judged(f"≤ {SWITCHING_GOAL:g}", rate <= SWITCHING_GOAL)))
        if name == "apartment-garage":
            jain = ours.fairness if ours.fairness is not None else 1.0
            figures.append(Figure(
                f"{tag}: Jain's index, manager", jain, "",
                baseline=equal.fairness,
                goal=judged(f"≥ {JAIN_GOAL}", jain >= JAIN_GOAL) + " (baseline: equal split)"))
        sun = any(e.from_sun for e in sc.site.evses)
        ss, base = ours.starts + ours.stops, equal.starts + equal.stops
        figures.append(Figure(
            f"{tag}: starts + stops, manager vs equal split", float(ss), "",
            baseline=float(base), ratio=ss / base if base else None,
            goal="report (equal split ignores surplus mode)" if sun
            else judged("< baseline", ss < base)))
        figures += _switching_figures(tag, ours, baselines, judged, sun)
    figures.append(_plans_figure(quick, judged))
    return figures


def run(quick: bool) -> list[Figure]:
    logger = logging.getLogger("chargebrain")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the manager logs every pause and stale device
    try:
        figures, office_run = speed(quick)
        figures += goals(quick, office_run)
    finally:
        logger.setLevel(level)
    return figures
