"""Every shipped scenario, shortened, against the real charging manager.

The goal is zero overload beyond the reaction budget in every scenario, and the tests
assert exactly that on the shortened runs. The other goals (energy against the optimum,
fairness, switching) are reported by `chargebrain simulate SCENARIO --policy all` as PASS
or FAIL; docs/simulator.md has the measured figures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import pytest

from chargebrain.sim.compare import run_policy
from chargebrain.sim.manager_policy import ManagerPolicy
from chargebrain.sim.metrics import Metrics, compute_metrics
from chargebrain.sim.optimum import offline_optimum
from chargebrain.sim.runner import RunResult, run_scenario
from chargebrain.sim.scenario import load_scenario, shipped_scenarios

#: simulated hours of each shipped scenario in the test suite
SHORT_H = {"home": 24, "apartment-garage": 4, "single-phase-mix": 2, "faults": 2, "office": 1,
           "wallboxes": 0.25}

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
            run = run_scenario(sc, policy, shorten=round(SHORT_H[name] * 3600))
        _runs[key] = (run, compute_metrics(run))
    return _runs[key]


def test_every_shipped_scenario_is_covered() -> None:
    assert set(SHORT_H) == set(shipped_scenarios())


@pytest.mark.parametrize("name", sorted(SHORT_H))
def test_shortened_scenario_with_the_real_manager(name: str) -> None:
    run, m = manager_run(name)
    sc = run.scenario
    assert run.duration_s == min(sc.duration_s, round(SHORT_H[name] * 3600))
    assert run.cycles == math.ceil(run.duration_s / sc.cycle_s)  # no cycle skipped
    assert run.refused_offers == 0  # never between 0 and an EVSE's minimum
    assert run.capped_offers == 0  # never above an EVSE's maximum
    assert m.delivered_kwh > 0
    assert m.misbehaviour_excursions == 0
    assert m.misbehaviour_amp_seconds == 0.0


def test_makers_wallboxes_each_charge_their_car() -> None:
    """Six simulated wallboxes of six makers, driven through their definitions (and the
    KEBA driver) over real sockets: every car gets its share."""
    _, m = manager_run("wallboxes")
    for car in m.cars:
        assert car.delivered_kwh > 0.2, car
        assert car.first_current_s is not None and car.first_current_s < 60, car


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
def test_wired_phases_stay_within_every_limit(name: str) -> None:
    """Configured with the wired phases instead of "determine", the same runs also stay
    within every limit."""
    _, wired = manager_run(name, learn_phases=False)
    assert wired.misbehaviour_excursions == 0
