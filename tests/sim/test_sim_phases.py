"""Automatic 1/3-phase switching on a simulated PV day with a cloud (scenario pv-phases):
the real manager switches the Power Brain's contactor, the car behind it draws on one
phase, then on three, and takes more of the surplus than without switching."""

from __future__ import annotations

import dataclasses

import pytest

from chargebrain.sim.car import Car, CarParams
from chargebrain.sim.manager_policy import ManagerPolicy
from chargebrain.sim.metrics import compute_metrics
from chargebrain.sim.optimum import offline_optimum
from chargebrain.sim.runner import RunResult, run_scenario
from chargebrain.sim.scenario import Scenario, load_scenario

START_H = 8.5  # the scenario's start


pytestmark = pytest.mark.usefixtures("quiet_manager")


def scenario(switching: bool) -> Scenario:
    sc: Scenario = load_scenario("pv-phases")
    evses = tuple(dataclasses.replace(e, phase_switching=switching) for e in sc.site.evses)
    return dataclasses.replace(sc, site=dataclasses.replace(sc.site, evses=evses))


def run(switching: bool) -> RunResult:
    with ManagerPolicy(cycle_s=3) as policy:
        return run_scenario(scenario(switching), policy)


def drawn_at(result: RunResult, hour: float) -> tuple[float, float, float]:
    """The EVSE's current per phase (A) at a time of day."""
    i = round((hour - START_H) * 3600)
    return tuple(round(p[i] / 1000, 1) for p in result.evse_ma)  # type: ignore[return-value]


def test_the_car_charges_on_one_phase_while_the_surplus_is_small() -> None:
    switched, fixed = run(True), run(False)
    # Morning, about 3.5 kW of surplus: on one phase (L1) it takes all of it; on three it
    # cannot start (6 A on three phases would be 4.1 kW).
    l1, l2, l3 = drawn_at(switched, 9.25)
    assert l1 >= 13 and l2 == l3 == 0
    assert drawn_at(fixed, 9.25) == (0, 0, 0)
    # Late morning, 6 kW: three phases again.
    l1, l2, l3 = drawn_at(switched, 11.0)
    assert l1 == l2 == l3 >= 7
    # The cloud at noon (80 % of the production for 20 min): one phase (charging once
    # the cloud has passed), then three again.
    assert any(l1 >= 6 and l2 == l3 == 0 for l1, l2, l3 in (
        drawn_at(switched, 12 + m / 60) for m in range(0, 30)))
    l1, l2, l3 = drawn_at(switched, 12.75)
    assert l1 == l2 == l3 >= 8
    got, without = switched.session("car"), fixed.session("car")
    assert got.delivered_kwh > without.delivered_kwh + 1.0
    m, m0 = compute_metrics(switched), compute_metrics(fixed)
    assert m.grid_export_kwh < m0.grid_export_kwh - 1.0
    assert m.misbehaviour_amp_seconds == 0 and m.imbalance_misbehaviour_amp_seconds == 0
    # The surplus accounting counts what the car drew on the phases it drew on: on one
    # phase a third of three phases' energy, all of it from the surplus.
    assert got.phase_changes and got.phase_changes[0][1] == 1
    assert m.sun_kwh == pytest.approx(got.delivered_kwh, rel=0.03)
    assert m.sun_grid_share is not None and m.sun_grid_share < 0.02
    # The compliant bound knows the car may draw on one phase: it stays a bound.
    bound = offline_optimum(scenario(True), compliant=True)
    assert got.delivered_kwh <= bound.total_kwh


def test_the_compliant_bound_lets_a_switching_car_charge_on_one_phase() -> None:
    # 08:30-09:20: 2.5-4 kW of surplus, below three phases at 6 A (4.1 kW)
    fixed = offline_optimum(scenario(False), shorten=3000, compliant=True)
    switched = offline_optimum(scenario(True), shorten=3000, compliant=True)
    assert fixed.total_kwh == pytest.approx(0.0, abs=0.01)
    assert switched.total_kwh > 2.5  # on one phase, from 6 A up


def test_the_simulated_car_draws_on_the_phases_its_evse_gives() -> None:
    car = Car(CarParams(lag_s=0, min_start_ma=6000), evse_phases=3)
    assert car.advance(1.0, 10_000) == 10_000 and car.phase_count == 3
    before = car.energy_wh
    car.switch_phases(1)
    assert car.phase_count == 1 and car.phase_mask == 0b001
    assert car.advance(1.0, 10_000) == 10_000
    assert car.energy_wh - before == pytest.approx(10 * 230 / 3600)  # one phase's worth
    single = Car(CarParams(phases=1), evse_phases=3)
    single.switch_phases(3)
    assert single.phase_count == 1
