"""Every shipped scenario, shortened, against the real charging manager.

The goal is zero overload beyond the reaction budget in every scenario. Where the current
balancer meets it, the test asserts zero; where it does not, the test asserts the measured
amount as a ceiling (so nothing gets worse unnoticed) and separate tests pin down the
diagnosed cause. The measured gaps and their causes are in docs/simulator.md, "The real
charging manager against the goals"; `chargebrain simulate SCENARIO --policy all` reports
every goal as PASS or FAIL.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import pytest

from chargebrain.sim.compare import run_policy
from chargebrain.sim.manager_policy import ManagerPolicy
from chargebrain.sim.metrics import Metrics, compute_metrics
from chargebrain.sim.optimum import offline_optimum
from chargebrain.sim.runner import RunResult, run_scenario
from chargebrain.sim.scenario import load_scenario, shipped_scenarios

#: simulated hours of each shipped scenario in the test suite
SHORT_H = {"home": 24, "apartment-garage": 4, "single-phase-mix": 2, "faults": 2, "office": 1}

#: overload beyond the reaction budget (A·s) the manager shows in those runs; goal: 0
MEASURED_MISBEHAVIOUR = {
    "home": 0.0,
    "apartment-garage": 41.1,  # cars assumed on one phase until metered; meter delays
    "single-phase-mix": 51.2,  # three-phase cars assumed on one phase until metered
    "faults": 13959.8,  # a frozen grid meter is not recognised as stale
    "office": 375.3,  # twelve three-phase vans assumed on one phase until metered
}

_runs: dict[tuple[str, bool], tuple[RunResult, Metrics]] = {}


@pytest.fixture(autouse=True)
def _quiet_manager() -> Iterator[None]:
    logger = logging.getLogger("chargebrain")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def manager_run(name: str, learn_phases: bool = True) -> tuple[RunResult, Metrics]:
    key = (name, learn_phases)
    if key not in _runs:
        sc = load_scenario(name)
        with ManagerPolicy.for_scenario(sc, learn_phases=learn_phases) as policy:
            run = run_scenario(sc, policy, shorten=SHORT_H[name] * 3600)
        _runs[key] = (run, compute_metrics(run))
    return _runs[key]


def test_every_shipped_scenario_is_covered() -> None:
    assert set(SHORT_H) == set(shipped_scenarios()) == set(MEASURED_MISBEHAVIOUR)


@pytest.mark.parametrize("name", sorted(SHORT_H))
def test_shortened_scenario_with_the_real_manager(name: str) -> None:
    run, m = manager_run(name)
    sc = run.scenario
    assert run.duration_s == min(sc.duration_s, SHORT_H[name] * 3600)
    assert run.cycles == math.ceil(run.duration_s / sc.cycle_s)  # no cycle skipped
    assert run.refused_offers == 0  # never between 0 and an EVSE's minimum
    assert run.capped_offers == 0  # never above an EVSE's maximum
    assert m.delivered_kwh > 0
    if MEASURED_MISBEHAVIOUR[name] == 0.0:
        assert m.misbehaviour_excursions == 0
        assert m.misbehaviour_amp_seconds == 0.0
    else:
        assert m.misbehaviour_amp_seconds <= MEASURED_MISBEHAVIOUR[name] + 0.05


def test_home_day_delivers_what_the_optimum_allows() -> None:
    run, m = manager_run("home")
    opt = offline_optimum(run.scenario)
    assert m.delivered_kwh >= 0.97 * opt.total_kwh
    assert m.misbehaviour_excursions == 0


def test_garage_evening_switches_less_than_equal_split() -> None:
    _, ours = manager_run("apartment-garage")
    sc = load_scenario("apartment-garage")
    equal = run_policy("equal-split", sc, shorten=SHORT_H["apartment-garage"] * 3600).metrics
    assert ours.starts + ours.stops < equal.starts + equal.stops


@pytest.mark.parametrize("name", ["office", "single-phase-mix"])
def test_overload_comes_from_phase_detection(name: str) -> None:
    """With "determine" the balancer counts a car on its EVSE's L1 until the meter shows
    more phases; a three-phase car then draws on all three. Configured with the wired
    phases instead, the same runs stay within every limit."""
    _, wired = manager_run(name, learn_phases=False)
    assert wired.misbehaviour_excursions == 0


def test_faults_overload_only_while_the_grid_meter_is_frozen() -> None:
    """The grid meter repeats one reading 17:10–17:25 while the cooker goes on; a repeated
    value is pushed like a live one, so nothing marks it stale."""
    run, _ = manager_run("faults")
    frozen = next(f for f in run.scenario.faults if f.kind.value == "meter_stale")
    limit = run.scenario.site.limits.max_current_ma
    starts: list[int] = []
    for phase in run.grid_ma:
        above = np.frombuffer(phase, dtype=np.float64) > limit
        edges = np.diff(np.concatenate([[0], above.astype(np.int8)]))
        starts.extend(int(t) for t in np.flatnonzero(edges == 1))
    assert all(frozen.start_s <= t < frozen.end_s for t in starts)
