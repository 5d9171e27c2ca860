"""The site simulator with the real charging manager: speed, and the load-management goals.

Speed: 24 simulated hours of the office scenario (40 EVSEs, 74 car stays, the devices
reporting every second: 86 400 reports of 42 readings) with `ManagerPolicy` — the real
ChargingManager fed through its HTTP-input drivers on a virtual clock, running its
periodic cycle every 3 s (the vendor's) and a cycle at once for every push that matters —
against the same run with the trivial fuse-only policy (the simulator's own share). Goal:
≤ 10 s. Then the manager's cost per cycle of its own (the pushes included) against the
core balancer alone (`CorePolicy`, the same inputs without the manager shell, deciding at
every report), against the manager without its rules runtime, and the cycles run; these
three over the same first `PER_CYCLE_H` simulated hours (the same cars and loads, the
policy's time divided by its own decisions: the manager's cycles, the core's reports).

Goals, measured with the real manager: delivered energy as a share of the offline optimum
(the compliant bound where it is solved; goal ≥ 0.95 in every shipped scenario, 0.90 in
faults, against a bound that knows the faults), Jain's index in the garage (≥ 0.95),
starts plus stops against the equal-split baseline (fewer) and per car-hour at scale
(parking-200, ≤ 2), and overload beyond the reaction budget in every shipped scenario
(0 A·s). The goal column says PASS or FAIL for what was measured.

`quick` runs shortened scenarios and says so in every figure's name. This module only
measures; it must never write files or change a scenario to flatter a figure.
"""

from __future__ import annotations

import logging
import time
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
from chargebrain.sim.optimum import offline_optimum
from chargebrain.sim.policy import FuseOnlyPolicy, Policy
from chargebrain.sim.runner import RunResult, run_scenario
from chargebrain.sim.scenario import Scenario, load_scenario, shipped_scenarios

WALL_GOAL_S = 10.0  # for 24 simulated hours of the office
JAIN_GOAL = 0.95
QUICK_H = {"home": 14, "apartment-garage": 4, "single-phase-mix": 2, "faults": 2, "office": 2,
           "silent-grid": 1, "silent-evse": 3, "noisy-meters": 3, "solar-two-cars": 5,
           "parking-200": 1}
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


def speed(quick: bool) -> tuple[list[Figure], RunResult]:
    office = load_scenario("office")
    hours = QUICK_H["office"] if quick else 24
    shorten = None if not quick else hours * 3600.0
    goal_s = WALL_GOAL_S * hours / 24
    _, fuse_s = _timed(office, FuseOnlyPolicy(), shorten)
    with ManagerPolicy.for_scenario(office) as policy:
        run, wall = _timed(office, policy, shorten)
        cycle_s = policy.cycle_s
    label = (f"sim office {hours} h, real manager, reports every {office.cycle_s} s, "
             f"{cycle_s:g} s cycle")
    stats = run.policy_stats
    figures = [
        Figure(f"{label}: wall", wall, "s", baseline=fuse_s, ratio=wall / fuse_s,
               goal=f"≤ {goal_s:.3g} s: {_verdict(wall <= goal_s)}"),
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
    cycles_per_day = stats["manager cycles"] * 24 / hours
    budget_us = 1e6 * (WALL_GOAL_S - fuse_s * 24 / hours) / cycles_per_day
    mgr_us, core_us = _per_cycle_us(per_run), _per_cycle_us(core_run)
    bare_us = _per_cycle_us(bare_run)
    own_us = 1e6 * cycles_s / max(1, per_run.policy_stats["manager cycles"])
    figures += [
        Figure("sim office: manager per cycle, pushes included (vs core balancer alone)",
               mgr_us, "µs", baseline=core_us, ratio=mgr_us / core_us,
               goal=f"≤ {budget_us:.0f} µs for 10 s/day: {_verdict(mgr_us <= budget_us)}"),
        Figure("sim office: manager without rules runtime per cycle (vs core)", bare_us, "µs",
               baseline=core_us, ratio=bare_us / core_us),
        Figure("sim office: the manager's cycle alone, without pushes (vs core)", own_us,
               "µs", baseline=core_us, ratio=own_us / core_us, goal="report"),
    ]
    return figures, run


def _run(scenario: Scenario, shorten: float | None, full_goals: bool,
         done: RunResult | None) -> tuple[Metrics, Metrics | None, float | None]:
    """Our metrics (reusing `done`, a manager run of the same length, if given), the
    equal-split baseline's and the optimum's bound (the latter two only for full_goals)."""
    opt = None
    if full_goals:
        try:
            opt = offline_optimum(scenario, shorten=shorten, compliant=True)
        except RuntimeError:  # not solved in time: the perfect-foresight bound
            opt = offline_optimum(scenario, shorten=shorten)
    if done is not None:
        ours = compute_metrics(replace(done, policy_name="manager"), optimum=opt)
    else:
        ours = run_policy("manager", scenario, shorten=shorten, optimum=opt).metrics
    equal = run_policy("equal-split", scenario, shorten=shorten).metrics if full_goals \
        else None
    return ours, equal, None if opt is None else opt.total_kwh


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
        ours, equal, opt_kwh = _run(sc, shorten, full_goals, done)
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
        ss, base = ours.starts + ours.stops, equal.starts + equal.stops
        figures.append(Figure(
            f"{tag}: starts + stops, manager vs equal split", float(ss), "",
            baseline=float(base), ratio=ss / base if base else None,
            goal=judged("< baseline", ss < base)))
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
