"""The runner: determinism, shipped scenarios, what policies see, how decisions apply."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from chargebrain.core.model import EvseReading, EvseState
from chargebrain.core.phases import Phases
from chargebrain.sim.policy import (
    Decision,
    EqualSplitPolicy,
    FuseOnlyPolicy,
    Snapshot,
    building_currents,
    building_mask,
)
from chargebrain.sim.runner import RunResult, run_scenario
from chargebrain.sim.scenario import (
    EvseSpec,
    ScenarioError,
    load_scenario,
    scenario_from_dict,
    shipped_scenarios,
)

V = 230.0


def small(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "small",
        "start": "12:00",
        "duration": 600,
        "cycle_s": 2,
        "seed": 9,
        "site": {"max_current_ma": 32000},
        "evses": [{"id": "E1"}, {"id": "E2", "phase_rotation": 120, "max_ma": 32000}],
        "cars": [
            {"id": "a", "evse": "E1", "arrive": 0, "leave": 600, "need_kwh": 50, "lag_s": 0},
            {"id": "b", "evse": "E2", "arrive": 100, "leave": 400, "need_kwh": 50,
             "phases": 1, "max_ma": 32000, "lag_s": 0},
        ],
        "household": {"base_w": [["00:00", 2300]], "noise_pct": 0},
        "meters": {"grid": {"delay_s": 3}, "evse": {"delay_s": 2}},
    }
    data.update(over)
    return data


class Recorder:
    """Offers fixed currents and keeps every snapshot."""

    def __init__(self, currents: dict[str, int], wake_at: int | None = None) -> None:
        self.currents = currents
        self.wake_at = wake_at
        self.seen: list[Snapshot] = []

    def decide(self, snapshot: Snapshot) -> Decision:
        self.seen.append(snapshot)
        wake = frozenset({"E1"}) if snapshot.t == self.wake_at else frozenset()
        return Decision(self.currents, wake)


def fingerprint(run: RunResult) -> tuple[Any, ...]:
    return (
        tuple(tuple(a) for a in run.grid_ma),
        tuple((s.car_id, s.delivered_kwh, tuple(s.drawn_ma), s.offers) for s in run.sessions),
        run.cycles,
    )


def test_same_seed_same_run_other_seed_other_run() -> None:
    sc = load_scenario("faults")
    a = run_scenario(sc, EqualSplitPolicy(), shorten=1800)
    b = run_scenario(sc, EqualSplitPolicy(), shorten=1800)
    assert fingerprint(a) == fingerprint(b)
    c = run_scenario(dataclasses.replace(sc, seed=sc.seed + 1), EqualSplitPolicy(), shorten=1800)
    assert fingerprint(a) != fingerprint(c)


@pytest.mark.parametrize("name", ["apartment-garage", "office"])
def test_a_shortened_run_is_the_beginning_of_a_longer_one(name: str) -> None:
    sc = load_scenario(name)
    short = run_scenario(sc, EqualSplitPolicy(), shorten=900)
    longer = run_scenario(sc, EqualSplitPolicy(), shorten=1800)
    for p in range(3):
        assert list(short.grid_ma[p]) == list(longer.grid_ma[p])[:900]


@pytest.mark.parametrize("name", shipped_scenarios())
def test_shipped_scenario_runs_shortened_with_equal_split(name: str) -> None:
    sc = load_scenario(name)
    run = run_scenario(sc, EqualSplitPolicy(), shorten=1800)
    assert run.duration_s == 1800
    assert run.cycles == math.ceil(1800 / sc.cycle_s)
    assert all(len(a) == 1800 for a in (*run.grid_ma, *run.evse_ma))
    assert run.refused_offers == 0
    assert run.sessions, "some car arrives in the first half hour"
    assert sum(s.delivered_kwh for s in run.sessions) > 0
    for s in run.sessions:
        drawn_wh = sum(s.drawn_ma) / 1000.0 * V * s.phase_count / 3600.0
        assert s.delivered_kwh * 1000 == pytest.approx(drawn_wh, rel=1e-9, abs=1e-9)
    # connection = base load + all EVSEs
    for p in range(3):
        for t in (0, 599, 1799):
            assert run.grid_ma[p][t] == pytest.approx(run.profile.base_ma[p][t]
                                                      + run.evse_ma[p][t])


def test_snapshot_is_delayed_and_complete() -> None:
    sc = scenario_from_dict(small())
    rec = Recorder({"E1": 16000, "E2": 20000})
    run = run_scenario(sc, rec)
    assert [s.t for s in rec.seen] == list(range(0, 600, 2))
    assert [s.cycle for s in rec.seen[:3]] == [0, 1, 2]
    snap = rec.seen[100]  # t = 200
    assert snap.time_of_day_s == 12 * 3600 + 200
    assert set(snap.evses) == {"E1", "E2"}
    grid = snap.meters["grid"]
    assert grid is not None
    # the grid meter reports the second that ended 3 s ago: true value at index t − 4
    assert grid.currents == Phases.of([round(run.grid_ma[p][196]) for p in range(3)])
    e2 = snap.evses["E2"]
    assert e2 is not None and e2.state is EvseState.CHARGING
    assert e2.currents == Phases(20000, 0, 0)  # single-phase car, EVSE phase order
    assert e2.max_current_ma == 20000
    # before the single-phase car arrives E2 is empty; after it leaves it is empty again
    first = rec.seen[0].evses["E2"]
    assert first is not None and first.state is EvseState.WAITING
    later = rec.seen[250].evses["E2"]
    assert later is not None and later.state is EvseState.WAITING
    assert later.total_energy_wh == pytest.approx(run.session("b").delivered_kwh * 1000, abs=10)
    # E2 at 120°: its L1 is building L2, on top of the three-phase car on E1
    assert [run.evse_ma[p][200] for p in range(3)] == [16000, 36000, 16000]
    assert "pv" not in snap.meters


def test_decisions_are_checked_and_applied() -> None:
    sc = scenario_from_dict(small())
    run = run_scenario(sc, Recorder({"E1": 4000, "E2": 40000}))
    assert run.refused_offers == 300  # every cycle, E1's 4 A is refused
    assert run.capped_offers == 300  # E2 capped at 32 A, every cycle, car or not
    assert run.session("a").delivered_kwh == 0
    assert max(run.session("b").drawn_ma) == 32000
    with pytest.raises(ValueError, match="unknown EVSEs"):
        run_scenario(sc, Recorder({"E9": 6000}))


def test_missing_evse_in_decision_means_zero() -> None:
    sc = scenario_from_dict(small())

    class Flip:
        def decide(self, snapshot: Snapshot) -> Decision:
            return Decision({"E1": 16000} if snapshot.t < 300 else {})

    run = run_scenario(sc, Flip())
    drawn = run.session("a").drawn_ma
    assert drawn[299] == 16000 and drawn[300] == 0
    assert run.session("a").offers == ((0, 0), (0, 16000), (300, 0))


def test_offline_evse_keeps_current_and_reports_nothing() -> None:
    faults = [
        {"type": "evse_offline", "evse": "E1", "from": 100, "to": 200},
        {"type": "evse_offline", "evse": "E2", "from": 250, "to": 300, "fail_safe_ma": 6000},
    ]
    sc = scenario_from_dict(small(faults=faults))

    class Drop:
        def __init__(self) -> None:
            self.seen: list[Snapshot] = []

        def decide(self, snapshot: Snapshot) -> Decision:
            self.seen.append(snapshot)
            return Decision({"E1": 16000 if snapshot.t < 150 else 8000, "E2": 20000})

    pol = Drop()
    run = run_scenario(sc, pol)
    assert pol.seen[60].evses["E1"] is None  # t = 120
    assert pol.seen[99].evses["E1"] is None  # t = 198
    assert pol.seen[100].evses["E1"] is not None  # t = 200: answers again
    a = run.session("a").drawn_ma
    assert a[160] == 16000  # the 8 A command at 150 did not arrive
    assert a[201] == 8000  # back online at 200, takes the current command
    b = run.session("b").drawn_ma
    assert b[260 - 100] == 6000  # fail-safe current while offline


def test_underdraw_fault_and_cp_wake() -> None:
    cars = [
        {"id": "a", "evse": "E1", "arrive": 0, "leave": 600, "need_kwh": 50, "lag_s": 0,
         "sleep_after_s": 60, "wake_after_s": None},
        {"id": "b", "evse": "E2", "arrive": 0, "leave": 600, "need_kwh": 50, "lag_s": 0},
    ]
    faults = [{"type": "car_underdraw", "car": "b", "factor": 0.5, "from": 0, "to": 300}]
    sc = scenario_from_dict(small(cars=cars, faults=faults))

    class Late:
        def decide(self, snapshot: Snapshot) -> Decision:
            on = snapshot.t >= 100
            return Decision({"E1": 10000 if on else 0, "E2": 16000},
                            frozenset({"E1"}) if snapshot.t == 400 else frozenset())

    run = run_scenario(sc, Late())
    a = run.session("a").drawn_ma
    assert max(a[:400]) == 0  # asleep after 60 s with nothing; offering does not wake it
    assert a[401] == 10000  # the control-pilot interruption does
    b = run.session("b").drawn_ma
    assert b[10] == 8000 and b[310] == 16000


def test_fuse_only_overloads_the_apartment_garage() -> None:
    sc = load_scenario("apartment-garage")
    run = run_scenario(sc, FuseOnlyPolicy(), shorten=3 * 3600)
    assert max(max(a) for a in run.grid_ma) > sc.site.limits.max_current_ma
    managed = run_scenario(sc, EqualSplitPolicy(), shorten=3 * 3600)
    assert max(max(a) for a in managed.grid_ma) < max(max(a) for a in run.grid_ma)


def test_building_phase_helpers() -> None:
    spec = EvseSpec("E", phase_rotation=120)
    charging = EvseReading(EvseState.CHARGING, Phases(16000, 0, 0))
    assert building_currents(charging, spec) == Phases(0, 16000, 0)
    assert building_mask(charging, spec) == 0b010  # measured: one phase, on building L2
    idle = EvseReading(EvseState.EV_PRESENT)
    assert building_mask(idle, spec) == 0b111  # nothing measured: as wired
    assert building_mask(idle, EvseSpec("F", phase_rotation=240, used_phases=1)) == 0b100


def test_an_evse_with_a_meter_of_its_own_reports_late_and_coarse() -> None:
    data = {
        "name": "meters", "duration": "10m", "cycle_s": 1, "site": {"max_current_ma": 63000},
        "evses": [{"id": "E1"}, {"id": "E2", "meter": {"delay_s": 5, "energy_step_wh": 1000}}],
        "cars": [{"id": "a", "evse": "E1", "arrive": 0, "leave": 600, "need_kwh": 50,
                  "lag_s": 0},
                 {"id": "b", "evse": "E2", "arrive": 0, "leave": 600, "need_kwh": 50,
                  "lag_s": 0}],
    }
    seen: dict[int, tuple[int, int, float, float]] = {}

    class Watch(FuseOnlyPolicy):
        def decide(self, snapshot: Snapshot) -> Decision:
            e1, e2 = snapshot.evses["E1"], snapshot.evses["E2"]
            assert e1 is not None and e2 is not None
            seen[snapshot.t] = (e1.currents.l1, e2.currents.l1, e1.total_energy_wh,
                                e2.total_energy_wh)
            return super().decide(snapshot)

    run_scenario(scenario_from_dict(data), Watch())
    assert seen[3][0] == 16000 and seen[3][1] == 0  # E2's reading is 5 s late
    assert seen[7][1] == 16000
    assert seen[300][2] % 10 == 0 and seen[300][3] % 1000 == 0
    assert seen[300][3] < seen[300][2]


def test_a_car_that_overdraws_takes_more_than_it_is_offered() -> None:
    data = {
        "name": "overdraw", "duration": "20m", "cycle_s": 1, "site": {"max_current_ma": 63000},
        "evses": [{"id": "E1", "max_ma": 10000}],
        "cars": [{"id": "a", "evse": "E1", "arrive": 0, "leave": 1200, "need_kwh": 50,
                  "lag_s": 0}],
        "faults": [{"type": "car_overdraw", "car": "a", "extra_ma": 2000, "from": 600}],
    }
    sc = scenario_from_dict(data)
    run = run_scenario(sc, FuseOnlyPolicy())
    drawn = run.session("a").drawn_ma
    assert drawn[300] == pytest.approx(10000) and drawn[900] == pytest.approx(12000)
    with pytest.raises(ScenarioError, match="extra_ma"):
        scenario_from_dict({**data, "faults": [{"type": "car_overdraw", "car": "a",
                                               "extra_ma": 0}]})
