"""The offline optimum on cases small enough to compute by hand."""

from __future__ import annotations

from typing import Any

import pytest

from chargebrain.sim.optimum import offline_optimum, random_dropouts
from chargebrain.sim.policy import GRID, Decision, EqualSplitPolicy, FuseOnlyPolicy, Snapshot
from chargebrain.sim.runner import run_scenario
from chargebrain.sim.scenario import load_scenario, scenario_from_dict

V = 230.0


def tiny(cars: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "tiny",
        "duration": "1h",
        "site": {"max_current_ma": 63000},
        "evses": [
            {"id": "E1", "max_ma": 32000},
            {"id": "E2", "max_ma": 32000},
            {"id": "E3", "max_ma": 32000, "phase_rotation": 120},
        ],
        "cars": cars,
    }
    data.update(over)
    return data


def car(cid: str, evse: str, **kw: Any) -> dict[str, Any]:
    return {"id": cid, "evse": evse, "arrive": 0, "leave": 3600, "need_kwh": 100,
            "soc": 0.0, "capacity_kwh": 100, **kw}


def test_one_car_ten_amps_one_hour_three_phase() -> None:
    sc = scenario_from_dict(tiny([car("a", "E1", max_ma=10000)]))
    opt = offline_optimum(sc, step_s=60)
    assert opt.total_kwh == pytest.approx(10 * V * 3 / 1000, rel=1e-6)  # 6.9 kWh
    assert opt.per_car_kwh["a"] == pytest.approx(6.9, rel=1e-6)
    assert opt.alone_kwh["a"] == pytest.approx(6.9, rel=1e-6)
    assert opt.step_s == 60
    # the bound does not depend on the step for a constant case
    assert offline_optimum(sc, step_s=300).total_kwh == pytest.approx(6.9, rel=1e-6)
    assert offline_optimum(sc, shorten=1800).total_kwh == pytest.approx(3.45, rel=1e-6)


def test_need_and_battery_room_cap_the_energy() -> None:
    no_taper = {"taper_soc": 1.0}
    cars = [car("a", "E1", need_kwh=2), car("b", "E2", soc=0.99, **no_taper)]
    sc = scenario_from_dict(tiny(cars))
    opt = offline_optimum(sc)
    assert opt.per_car_kwh["a"] == pytest.approx(2.0)
    assert opt.per_car_kwh["b"] == pytest.approx(1.0)  # 1 % of 100 kWh
    assert opt.need_kwh == {"a": 2.0, "b": pytest.approx(1.0)}


def test_site_limit_reserve_and_household_load() -> None:
    cars = [car("a", "E1", max_ma=16000), car("b", "E2", max_ma=16000)]
    site = {"max_current_ma": 20000, "reserve_ma": 4000}
    sc = scenario_from_dict(tiny(cars, site=site))
    opt = offline_optimum(sc)
    assert opt.total_kwh == pytest.approx(16 * V * 3 / 1000)
    # either car alone could have had all of it
    assert opt.alone_kwh == {"a": pytest.approx(11.04), "b": pytest.approx(11.04)}
    assert offline_optimum(sc, use_reserve=False).total_kwh == pytest.approx(20 * V * 3 / 1000)
    # 2070 W of household load spread evenly: 3 A per phase less
    house = {"base_w": [["00:00", 2070]], "noise_pct": 0}
    sc2 = scenario_from_dict(tiny(cars, site=site, household=house))
    assert offline_optimum(sc2).total_kwh == pytest.approx(13 * V * 3 / 1000)


def test_group_limit_and_presence() -> None:
    cars = [car("a", "E1", max_ma=16000), car("b", "E2", max_ma=16000, arrive=1800)]
    groups = [{"id": "G", "max_current_ma": 20000}]
    evses = [{"id": "E1", "group": "G"}, {"id": "E2", "group": "G"}]
    sc = scenario_from_dict(tiny(cars, groups=groups, evses=evses))
    # first half hour car a alone at 16 A, second half both share 20 A
    expected = (16 * 0.5 + 20 * 0.5) * V * 3 / 1000
    assert offline_optimum(sc, step_s=60).total_kwh == pytest.approx(expected)


def test_imbalance_limits_single_phase_cars_on_one_phase() -> None:
    cars = [car("a", "E1", phases=1, max_ma=32000), car("b", "E2", phases=1, max_ma=32000)]
    site = {"max_current_ma": 63000, "max_imbalance_ma": 20000}
    sc = scenario_from_dict(tiny(cars, site=site))
    opt = offline_optimum(sc)
    assert opt.total_kwh == pytest.approx(20 * V / 1000)
    assert opt.alone_kwh["a"] == pytest.approx(20 * V / 1000)
    # without it only the 63 A connection limits the two 32 A cars on L1
    assert offline_optimum(sc, imbalance=False).total_kwh == pytest.approx(63 * V / 1000)
    # a third one-phase car on another building phase balances part of it
    cars3 = [*cars, car("c", "E3", phases=1, max_ma=32000)]
    sc3 = scenario_from_dict(tiny(cars3, site=site))
    # L1 ≤ L2 + 20 A with L2 ≤ 32 A → L1 ≤ 52 A; L2 ≤ 0 + 20 (L3 empty) → L2 ≤ 20, L1 ≤ 20
    assert offline_optimum(sc3).total_kwh == pytest.approx((20 + 20) * V / 1000)


def test_bound_is_above_what_a_policy_delivers() -> None:
    sc = load_scenario("apartment-garage")
    run = run_scenario(sc, EqualSplitPolicy(), shorten=7200)
    opt = offline_optimum(sc, shorten=7200)
    delivered = sum(s.delivered_kwh for s in run.sessions)
    assert 0 < delivered <= opt.total_kwh
    assert opt.status.startswith("Optimization terminated successfully")


def test_taper_and_underdraw_bound_what_the_car_can_take() -> None:
    """What no manager can change is in the bound: a car near full tapers, and a car with
    the under-draw fault takes only part of its offer. The bound stays above what the car
    takes when nothing limits it, and close to it."""
    full = car("a", "E1", soc=0.9, capacity_kwh=60, max_ma=16000)
    sc = scenario_from_dict(tiny([full]))
    opt = offline_optimum(sc, step_s=60)
    taken = run_scenario(sc, FuseOnlyPolicy()).sessions[0].delivered_kwh
    untapered = 16 * V * 3 / 1000  # 11.04 kWh in the hour
    assert taken <= opt.total_kwh <= taken * 1.07  # the 0.5 A floor is bounded by a chord
    assert opt.total_kwh < 0.4 * untapered < opt.need_kwh["a"]

    weak = car("b", "E1", max_ma=16000)
    fault = {"type": "car_underdraw", "car": "b", "factor": 0.5, "from": 1800, "to": 3600}
    sc2 = scenario_from_dict(tiny([weak], faults=[fault]))
    opt2 = offline_optimum(sc2, step_s=60)
    taken2 = run_scenario(sc2, FuseOnlyPolicy()).sessions[0].delivered_kwh
    assert opt2.total_kwh == pytest.approx((16 * 0.5 + 8 * 0.5) * V * 3 / 1000)
    assert taken2 <= opt2.total_kwh <= taken2 * 1.01


def test_the_compliant_bound_gives_a_car_nothing_or_its_minimum() -> None:
    """Room for 10 A beside two cars that take 6 A at most: the relaxed bound shares it
    (5 A each, below the minimum no car charges at), the compliant one gives one car 6 A."""
    cars = [car("a", "E1", max_ma=6000, taper_soc=1.0), car("b", "E2", max_ma=6000,
                                                           taper_soc=1.0)]
    sc = scenario_from_dict(tiny(cars, site={"max_current_ma": 10000}))
    relaxed = offline_optimum(sc, step_s=300)
    compliant = offline_optimum(sc, step_s=300, compliant=True)
    assert relaxed.total_kwh == pytest.approx(10 * V * 3 / 1000, rel=1e-6)
    assert compliant.total_kwh == pytest.approx(6 * V * 3 / 1000, rel=1e-3)
    assert "Optimal" in compliant.status


def test_the_bound_knows_offline_evses_and_a_blind_grid_meter() -> None:
    """An EVSE offline with a fail-safe current of 6 A gives its car 6 A whatever a manager
    wants; one without keeps what it had; while the grid meter is silent the bound keeps
    room for the house's highest load of the spell, and once a controller knows the meter
    is silent, it charges nothing."""
    sc = scenario_from_dict(tiny(
        [car("a", "E1", max_ma=16000, taper_soc=1.0)],
        faults=[{"type": "evse_offline", "evse": "E1", "from": 1800, "fail_safe_ma": 6000}]))
    assert offline_optimum(sc, step_s=60, faults=False).total_kwh == pytest.approx(
        16 * V * 3 / 1000, rel=1e-6)
    assert offline_optimum(sc, step_s=60).total_kwh == pytest.approx(
        (16 + 6) / 2 * V * 3 / 1000, rel=1e-6)
    household = {"base_w": [["00:00", 0]], "noise_pct": 0,
                 "appliances": [{"name": "cooker", "power_w": 3 * V * 20, "duration": "5m",
                                 "at": ["00:40"]}]}
    site = {"max_current_ma": 30000}
    blind = [{"type": "meter_dropout", "meter": "grid", "from": 1800, "to": 3600}]
    plain = scenario_from_dict(tiny([car("a", "E1", taper_soc=1.0)], site=site,
                                    household=household))
    faulty = scenario_from_dict(tiny([car("a", "E1", taper_soc=1.0)], site=site,
                                     household=household, faults=blind))
    # Seeing the house, the car takes 16 A but for 5 min at 10 A. Blind for the second
    # half hour: in its first minute (not yet known to be blind) at most what it had and
    # room for the house's highest load of the spell, 10 A; then nothing, since no
    # controller can know that any current is safe.
    assert offline_optimum(plain, step_s=60).total_kwh == pytest.approx(
        (55 * 16 + 5 * 10) / 60 * V * 3 / 1000, rel=1e-6)
    assert offline_optimum(faulty, step_s=60).total_kwh == pytest.approx(
        (30 * 16 + 1 * 10) / 60 * V * 3 / 1000, rel=1e-6)


def test_the_bound_knows_the_grid_meters_random_dropouts() -> None:
    """The grid meter's random dropouts fall where the runner's meter has them, and in
    their intervals the bound keeps room for the house's highest load of the spell."""
    household = {"base_w": [["00:00", 3 * V * 20]], "noise_pct": 0,
                 "appliances": [{"name": "heater", "power_w": 3 * V * 4, "duration": "2m",
                                 "every": "4m"}]}
    meters = {"grid": {"dropouts_per_hour": 20, "dropout_mean": "30s"}}
    sc = scenario_from_dict(tiny([car("a", "E1", taper_soc=1.0)], cycle_s=1,
                                 site={"max_current_ma": 36000}, household=household,
                                 meters=meters))
    spells = random_dropouts(sc.meters.grid, sc.seed, "meter:grid", 3600)
    assert len(spells) > 5
    silent: list[int] = []

    class Watch:
        def decide(self, snapshot: Snapshot) -> Decision:
            if snapshot.meters[GRID] is None:
                silent.append(snapshot.t)
            return Decision({})

    run_scenario(sc, Watch())
    assert silent == [t for lo, hi in spells for t in range(lo, min(hi, 3600))]
    blind = offline_optimum(sc, step_s=60).total_kwh
    seeing = offline_optimum(sc, step_s=60, faults=False).total_kwh
    # 16 A beside 20 A of house, 12 A while the heater runs: blind, 12 A in every minute
    # touched by a dropout during or next to a heater spell.
    assert blind < seeing - 0.05
    assert blind >= 12 * V * 3 / 1000


def test_a_car_drawing_a_share_of_its_offer_takes_the_room_of_its_offer() -> None:
    """A controller must reserve what it offers: car b, drawing 60 % of its offer, takes
    room per ampere drawn of 1 / 0.6 in the bound."""
    cars = [car("a", "E1", max_ma=32000, taper_soc=1.0),
            car("b", "E2", max_ma=32000, taper_soc=1.0)]
    under = [{"type": "car_underdraw", "car": "b", "factor": 0.6}]
    site = {"max_current_ma": 20000}
    alone = offline_optimum(scenario_from_dict(tiny([cars[1]], site=site, faults=under)))
    assert alone.total_kwh == pytest.approx(12 * V * 3 / 1000, rel=1e-6)  # 20 A offered
    both = offline_optimum(scenario_from_dict(tiny(cars, site=site, faults=under)))
    assert both.per_car_kwh["a"] == pytest.approx(20 * V * 3 / 1000, rel=1e-6)
    assert both.per_car_kwh["b"] == pytest.approx(0.0, abs=1e-6)
