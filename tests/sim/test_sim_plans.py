"""Departure plans in the simulator: what a scenario's car announces, what its EVSE
reports, and the real charging manager serving the car that leaves first."""

from __future__ import annotations

from typing import Any

import pytest

from chargebrain.sim.manager_policy import EPOCH_DAY, ManagerPolicy
from chargebrain.sim.policy import Decision, Snapshot
from chargebrain.sim.runner import run_scenario
from chargebrain.sim.scenario import PlanSpec, ScenarioError, scenario_from_dict, with_plans

pytestmark = pytest.mark.usefixtures("quiet_manager")


def two_cars(**plans: Any) -> dict[str, Any]:
    """A 20 A site, two wallboxes; `soon` leaves after 2 h, `late` after 9 h."""
    cars: list[dict[str, Any]] = [
        {"id": "soon", "evse": "A", "arrive": "08:00", "leave": "10:00", "need_kwh": 8,
         "lag_s": 0},
        {"id": "late", "evse": "B", "arrive": "08:00", "leave": "17:00", "need_kwh": 10,
         "lag_s": 0},
    ]
    for car in cars:
        if car["id"] in plans:
            car["plan"] = plans[car["id"]]
    return {"name": "two", "start": "07:59", "duration": "20m", "cycle_s": 3,
            "site": {"max_current_ma": 21000},
            "household": {"base_w": [["00:00", 600]], "noise_pct": 3},
            "evses": [{"id": "A"}, {"id": "B"}], "cars": cars}


def test_a_plan_defaults_to_the_cars_stay_and_need() -> None:
    sc = scenario_from_dict(two_cars(soon={}, late={"departure": "16:00", "energy_kwh": 12,
                                                    "after": "5m"}))
    assert sc.car("soon").plan == PlanSpec(at_s=60, departure_s=60 + 7200, energy_kwh=8)
    assert sc.car("late").plan == PlanSpec(at_s=360, departure_s=60 + 8 * 3600,
                                           energy_kwh=12)
    plain = scenario_from_dict(two_cars())
    assert plain.car("soon").plan is None
    assert with_plans(plain).car("late").plan == PlanSpec(60, 60 + 9 * 3600, 10)


def test_bad_plans_name_the_field() -> None:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(two_cars(soon={"after": "3h"}, late={"energy": 5}))
    assert list(info.value.errors) == [
        "$.cars[1].plan.energy: unknown key (known: after, departure, energy_kwh)",
        "$.cars[0].plan.after: must be before it leaves",
    ]


class Recorder:
    """Offers every car 16 A and keeps the snapshots."""

    def __init__(self) -> None:
        self.seen: list[Snapshot] = []

    def decide(self, snapshot: Snapshot) -> Decision:
        self.seen.append(snapshot)
        return Decision({"A": 16000, "B": 16000})


def test_the_evse_reports_the_plan_once_the_car_has_told_it() -> None:
    sc = scenario_from_dict(two_cars(late={"after": "5m"}))
    rec = Recorder()
    run_scenario(sc, rec)
    at = {s.t: s.evses for s in rec.seen}
    assert at[63]["B"] is not None and at[63]["B"].departure is None
    b = at[363]["B"]
    assert b is not None and (b.departure, b.req_energy_wh) == (60 + 9 * 3600, 10_000)
    assert at[363]["A"] is not None and at[363]["A"].departure is None


def test_the_manager_serves_the_car_that_leaves_first() -> None:
    without = run_scenario(scenario_from_dict(two_cars()), ManagerPolicy(cycle_s=3))
    with ManagerPolicy(cycle_s=3) as policy:
        planned = run_scenario(with_plans(scenario_from_dict(two_cars())), policy)
        soon = policy.manager.devices[policy.device_id("A")]
        assert soon.evse is not None
        assert soon.evse.reported_departure == EPOCH_DAY + 7 * 3600 + 59 * 60 + 60 + 7200
        assert soon.evse.reported_energy_wh == 8000
    # Without plans the two share alike; with them, the car leaving at ten gets what the
    # one staying all day can spare beyond its minimum.
    soon, late = without.session("soon").offers[-1][1], without.session("late").offers[-1][1]
    assert 9_500 <= soon == late <= 10_500
    assert planned.session("soon").offers[-1][1] >= 13_000
    assert planned.session("late").offers[-1][1] == 6_000
    assert planned.session("soon").delivered_kwh > without.session("soon").delivered_kwh + 0.5
