"""The simulated car: energy accounting, lag, minimum start current, taper, sleep."""

from __future__ import annotations

import math

import pytest

from chargebrain.core.phases import Phases
from chargebrain.sim.car import TAPER_FLOOR_MA, Car, CarParams
from chargebrain.sim.manager_policy import ManagerPolicy
from chargebrain.sim.optimum import offline_optimum
from chargebrain.sim.runner import run_scenario
from chargebrain.sim.scenario import scenario_from_dict

V = 230.0


def test_energy_is_the_integral_of_the_returned_current() -> None:
    car = Car(CarParams(capacity_kwh=50, soc=0.7, lag_s=4, need_kwh=30), voltage_v=V)
    integral_wh = 0.0
    offers = [0, 16000, 16000, 10000, 5000, 0, 13000, 16000]
    for k in range(4 * 3600):
        offer = offers[(k // 97) % len(offers)]
        i = car.advance(1.0, offer)
        integral_wh += V * i / 1000.0 * 3 * 1.0 / 3600.0
    assert car.energy_wh > 1000  # it did charge, into the taper region
    assert car.energy_wh == pytest.approx(integral_wh, rel=1e-9)
    assert car.soc == pytest.approx(0.7 + car.energy_wh / 50_000)


def test_energy_via_phases_and_partial_steps() -> None:
    car = Car(CarParams(phases=1, lag_s=3), voltage_v=V)
    integral_wh = 0.0
    for _ in range(2000):
        p = car.step(0.5, 16000, enabled=True)
        assert isinstance(p, Phases)
        assert p.l2 == p.l3 == 0  # single-phase car: EVSE L1 only
        integral_wh += V * p.total() / 1000.0 * 0.5 / 3600.0
    assert car.energy_wh == pytest.approx(integral_wh, abs=0.01)
    assert car.energy_wh == pytest.approx(V * 16 * 1000 / 3600.0, rel=0.01)


def test_a_two_phase_car_draws_on_l1_and_l2_of_a_three_phase_evse() -> None:
    car = Car(CarParams(phases=2, lag_s=0), voltage_v=V)
    p = car.step(1.0, 16000, enabled=True)
    assert (p.l1, p.l2, p.l3) == (16000, 16000, 0)
    assert car.energy_wh == pytest.approx(V * 16 * 2 / 3600.0)
    assert Car(CarParams(phases=2), evse_phases=1).phase_mask == 0b001


def test_a_two_phase_car_in_a_scenario_the_manager_and_the_optimum() -> None:
    sc = scenario_from_dict({
        "name": "two", "duration": "30m", "site": {"max_current_ma": 32000},
        "evses": [{"id": "E1", "phase_rotation": 120}],
        "cars": [{"id": "a", "evse": "E1", "arrive": 0, "leave": 1800, "need_kwh": 50,
                  "phases": 2, "taper_soc": 1.0}],
    })
    opt = offline_optimum(sc, step_s=60)
    assert opt.total_kwh == pytest.approx(16 * 2 * V * 0.5 / 1000, rel=1e-6)
    with ManagerPolicy.for_scenario(sc) as policy:
        run = run_scenario(sc, policy)
    s = run.session("a")
    assert s.phase_count == 2 and s.building_mask == 0b110  # L2 and L3 at 120 degrees
    assert s.delivered_kwh > 0.9 * opt.total_kwh


def test_lag_ramps_to_a_new_limit_over_lag_s() -> None:
    car = Car(CarParams(lag_s=4, soc=0.2))
    draws = [car.advance(1.0, 16000) for _ in range(6)]
    assert draws[0] == pytest.approx(2000)  # mean over the first second of a 4 A/s ramp
    assert draws[3] == pytest.approx(14000)
    assert draws[4] == draws[5] == 16000
    down = [car.advance(1.0, 8000) for _ in range(5)]
    assert down[0] == pytest.approx(15000)  # ramps down 2 A/s over 4 s
    assert down[4] == 8000


def test_no_lag_follows_immediately() -> None:
    car = Car(CarParams(lag_s=0))
    assert car.advance(1.0, 10000) == 10000
    assert car.advance(1.0, 7000) == 7000


def test_below_minimum_start_current_draws_nothing() -> None:
    car = Car(CarParams(min_start_ma=8000, lag_s=0))
    assert car.advance(1.0, 7000) == 0.0
    assert not car.charging
    assert car.advance(1.0, 8000) == 8000
    assert car.charging
    assert car.step(1.0, 16000, enabled=False) == Phases(0, 0, 0)


def test_capped_by_car_maximum() -> None:
    car = Car(CarParams(max_ma=11000, lag_s=0))
    assert car.advance(1.0, 32000) == 11000


def test_taper_above_80_percent_falls_to_zero_at_full() -> None:
    car = Car(CarParams(capacity_kwh=10, soc=0.79, lag_s=0, need_kwh=math.inf))
    draws = []
    for _ in range(10 * 3600):
        draws.append(car.advance(1.0, 16000))
        if car.done and draws[-1] == 0:
            break
    assert draws[0] == 16000
    assert any(TAPER_FLOOR_MA < d < 15000 for d in draws)
    assert draws == sorted(draws, reverse=True)  # only ever falls
    assert min(d for d in draws if d > 0) == TAPER_FLOOR_MA
    assert car.soc == pytest.approx(1.0, abs=1e-3)
    assert draws[-1] == 0.0
    # linear: halfway between taper start and full, the limit is about half the maximum
    car2 = Car(CarParams(capacity_kwh=10, soc=0.9, lag_s=0))
    assert car2.advance(1.0, 16000) == pytest.approx(8000, abs=100)


def test_stops_once_its_need_is_met() -> None:
    car = Car(CarParams(need_kwh=1.0, lag_s=0, soc=0.2))
    for _ in range(3600):
        car.advance(1.0, 16000)
    assert car.done
    assert car.energy_wh == pytest.approx(1000, abs=12)  # at most one second over
    assert car.advance(1.0, 16000) == 0.0


def test_sleeps_after_being_offered_nothing_and_wakes_on_offer() -> None:
    car = Car(CarParams(sleep_after_s=600, wake_after_s=30, lag_s=0))
    car.advance(1.0, 16000)
    for _ in range(599):
        car.advance(1.0, 0)
    assert not car.asleep
    car.advance(1.0, 0)
    assert car.asleep
    draws = [car.advance(1.0, 16000) for _ in range(40)]
    assert draws[:29] == [0.0] * 29
    assert draws[35] == 16000
    assert not car.asleep


def test_sleeping_car_needing_a_cp_cycle() -> None:
    car = Car(CarParams(sleep_after_s=60, wake_after_s=None, lag_s=0))
    for _ in range(60):
        car.advance(1.0, 0)
    assert car.asleep
    assert all(car.advance(1.0, 16000) == 0.0 for _ in range(3600))
    car.cp_disconnect()
    assert car.advance(1.0, 16000) == 16000


def test_draws_less_than_offered() -> None:
    car = Car(CarParams(lag_s=0))
    car.set_underdraw(0.5, 1000)
    assert car.advance(1.0, 16000) == 7000
    car.set_underdraw()
    assert car.advance(1.0, 16000) == 16000


def test_three_phase_car_on_single_phase_evse() -> None:
    car = Car(CarParams(phases=3, lag_s=0), evse_phases=1)
    assert car.phase_count == 1
    assert car.step(1.0, 10000) == Phases(10000, 0, 0)
