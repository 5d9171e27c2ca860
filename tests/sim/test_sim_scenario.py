"""Scenario files: times, the shipped files, and validation errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from chargebrain.sim.scenario import (
    FaultKind,
    Scenario,
    ScenarioError,
    load_scenario,
    loads_scenario,
    parse_duration,
    parse_time_of_day,
    resolve_time,
    scenario_from_dict,
    shipped_scenarios,
)

H = 3600

MINIMAL: dict[str, Any] = {
    "name": "t",
    "start": "17:00",
    "duration": "4h",
    "site": {"max_current_ma": 32000, "reserve_ma": 2000},
    "groups": [{"id": "G1", "max_current_ma": 20000}],
    "evses": [{"id": "E1", "group": "G1"}, {"id": "E2", "phase_rotation": 120}],
    "cars": [
        {"id": "a", "evse": "E1", "arrive": "17:30", "leave": "19:00", "need_kwh": 10},
        {"id": "b", "evse": "E1", "arrive": "19:00", "leave": "+4h", "need_kwh": 5},
    ],
}


def errors_of(patch: dict[str, Any] | None = None, **top: Any) -> list[str]:
    data = copy.deepcopy(MINIMAL)
    data.update(top)
    if patch:
        for path, value in patch.items():
            target: Any = data
            keys = path.split(".")
            for k in keys[:-1]:
                target = target[int(k)] if isinstance(target, list) else target[k]
            last = keys[-1]
            if isinstance(target, list):
                target[int(last)] = value
            else:
                target[last] = value
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data)
    return list(info.value.errors)


def test_times() -> None:
    assert parse_duration("24h") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90
    assert parse_duration(12.4) == 12
    assert parse_time_of_day("07:30") == 7.5 * H
    assert parse_time_of_day("23:59:59") == 86399
    for bad in ("24:00", "7h", "", None, True):
        with pytest.raises(ValueError):
            parse_time_of_day(bad)
    with pytest.raises(ValueError):
        parse_duration("soon")
    # run starts at 17:00: 07:30 is the next morning, 17:30 is 30 min in
    assert resolve_time("07:30", 17 * H, 0) == 14.5 * H
    assert resolve_time("17:30", 17 * H, 0) == 1800
    assert resolve_time("17:30", 17 * H, 3600) == 1800 + 86400
    assert resolve_time("+2h", 17 * H, 0) == 7200
    assert resolve_time(600, 17 * H, 0) == 600


def test_minimal_loads() -> None:
    sc = scenario_from_dict(MINIMAL)
    assert isinstance(sc, Scenario)
    assert sc.start_s == 17 * H
    assert sc.duration_s == 4 * H
    assert sc.car("a").arrive_s == 1800
    assert sc.car("b").leave_s == 4 * H
    assert sc.site.evse("E2").phase_rotation == 120
    assert sc.site.group_chain("G1") == ("G1",)
    assert sc.household is None and sc.pv is None


def test_shipped_scenarios_load() -> None:
    names = shipped_scenarios()
    assert names == ["apartment-garage", "faults", "group-meters", "home", "noisy-meters",
                     "office",
                     "parking-200", "pv-phases",
                     "silent-evse", "silent-grid", "single-phase-mix", "solar-two-cars",
                     "wallboxes"]
    scenarios = {n: load_scenario(n) for n in names}
    assert len(scenarios["home"].site.evses) == 1
    assert scenarios["home"].site.limits.max_current_ma == 25000
    assert scenarios["home"].pv is not None
    assert len(scenarios["apartment-garage"].site.evses) == 12
    assert scenarios["apartment-garage"].site.limits.max_current_ma == 63000
    office = scenarios["office"]
    assert len(office.site.evses) == 40
    assert len(office.site.groups) == 3
    assert office.duration_s == 24 * H
    assert office.pv is not None
    assert len({e.prio for e in office.site.evses}) > 1
    spm = scenarios["single-phase-mix"]
    assert {e.phase_rotation for e in spm.site.evses} == {0, 120, 240}
    assert any(c.phases == 1 for c in spm.cars)
    assert spm.site.limits.max_imbalance_ma > 0
    kinds = {f.kind for f in scenarios["faults"].faults}
    assert kinds == set(FaultKind)


def test_load_from_path(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text(json.dumps(MINIMAL))
    assert load_scenario(p).name == "t"
    with pytest.raises(ScenarioError, match="no such scenario"):
        load_scenario("nowhere")


def test_not_json_or_not_an_object() -> None:
    with pytest.raises(ScenarioError, match="not valid JSON"):
        loads_scenario("{")
    with pytest.raises(ScenarioError, match=r"\$: must be an object, not an array"):
        loads_scenario("[]")


def test_required_and_unknown_keys() -> None:
    errs = errors_of(nmae="typo")
    assert any("$.nmae: unknown key" in e for e in errs)
    data = copy.deepcopy(MINIMAL)
    del data["site"]
    del data["evses"]
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data)
    assert any(e.startswith("$.site") for e in info.value.errors)
    assert any(e.startswith("$.evses") for e in info.value.errors)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"site.reserve_ma": 40000}, "$.site.reserve_ma: must be smaller"),
        ({"site.max_current_ma": -1}, "$.site.max_current_ma: -1 is out of range 1.."),
        ({"site.max_current_ma": "lots"},
         "$.site.max_current_ma: must be an integer, not the string 'lots'"),
        ({"evses.0.group": "G9"}, "$.evses[0].group: unknown group 'G9'"),
        ({"evses.1.phase_rotation": 90}, "phase_rotation: 90 is not one of 0, 120, 240"),
        ({"evses.1.used_phases": 2}, "used_phases: 2 is not one of 1, 3"),
        ({"evses.1.min_ma": 5000}, "$.evses[1].min_ma: 5000 is out of range 6000..80000"),
        ({"evses.1.min_ma": 10000, "evses.1.max_ma": 8000}, "min_ma: must not exceed max_ma"),
        ({"evses.1.id": "E1"}, "$.evses[1].id: duplicate id 'E1' (first at evses[0])"),
        ({"groups.0.parent": "G1"}, "cycle"),
        ({"groups.0.parent": "nope"}, "unknown group 'nope'"),
        ({"cars.0.evse": "E7"}, "$.cars[0].evse: unknown EVSE 'E7'"),
        ({"cars.1.arrive": "18:00"}, "overlap on EVSE 'E1'"),
        ({"cars.0.leave": 1800}, "$.cars[0].leave: must be after arrive"),
        ({"cars.0.arrive": "+5h"}, "after the end of the run"),
        ({"cars.0.phases": 4}, "$.cars[0].phases: 4 is out of range 1..3"),
        ({"cars.0.soc": 1.5}, "$.cars[0].soc: 1.5 is out of range 0..1"),
        ({"cars.0.min_start_ma": 20000}, "min_start_ma: must not exceed max_ma"),
        ({"cars.0.need_kwh": None}, "$.cars[0].need_kwh: required"),
        ({"cars.0.arrive": "25:00"}, "not a time of day"),
        ({"cars.1.id": "a"}, "$.cars[1].id: duplicate id 'a'"),
        ({"duration": 0}, "$.duration: must be positive"),
        ({"cycle_s": 0}, "$.cycle_s: must be at least 1 s"),
    ],
)
def test_validation_errors(patch: dict[str, Any], expected: str) -> None:
    errs = errors_of(patch)
    assert any(expected in e for e in errs), errs


def test_validation_of_profiles_and_faults() -> None:
    errs = errors_of(
        household={
            "base_w": [["18:00", 500], ["06:00", 300]],
            "phase_split": [0.5, 0.5, 0.5],
            "appliances": [{"name": "x", "power_w": 100, "duration": "5m"}],
        },
        battery={"capacity_kwh": 0, "max_power_w": 1000},
        faults=[
            {"type": "meter_stale", "meter": "pv", "from": "17:10", "to": "17:20"},
            {"type": "evse_offline", "evse": "E9"},
            {"type": "car_underdraw", "car": "a"},
            {"type": "meltdown"},
            {"type": "evse_offline", "evse": "E2", "from": 0, "to": 100, "fail_safe_ma": 3000},
            {"type": "evse_offline", "evse": "E2", "from": 50, "to": 200},
        ],
    )
    expected = [
        "$.household.base_w: times must be increasing",
        "$.household.phase_split: expected three non-negative shares summing to 1",
        "$.household.appliances[0].at: an appliance needs",
        "$.battery.capacity_kwh: must be more than 0, not 0",
        "$.faults[0].meter: the site has no PV meter",
        "$.faults[1].evse: unknown EVSE 'E9'",
        "$.faults[2].factor: a car_underdraw needs",
        "$.faults[3].type: unknown fault 'meltdown'",
        "$.faults[4].fail_safe_ma: must be 0 or at least",
        "$.faults[5].from: two evse_offline faults of 'E2' overlap",
    ]
    for exp in expected:
        assert any(exp in e for e in errs), (exp, errs)


def test_all_errors_reported_at_once() -> None:
    errs = errors_of({"evses.1.phase_rotation": 45, "cars.0.evse": "E7", "site.reserve_ma": -1})
    assert len(errs) >= 3
    with pytest.raises(ScenarioError, match=r"phase_rotation.*evse|evse.*phase_rotation"):
        scenario_from_dict({**MINIMAL, "evses": [{"id": "E1", "phase_rotation": 45}],
                            "cars": [{"id": "a", "evse": "E7", "arrive": 0, "leave": 10,
                                      "need_kwh": 1}], "groups": []})


def test_every_shipped_scenario_reads_the_same_from_yaml(tmp_path: Path) -> None:
    """The YAML format is the JSON object written as YAML."""
    import yaml

    from chargebrain.sim.scenario import SCENARIO_DIR

    for name in shipped_scenarios():
        data = json.loads((Path(__file__).parents[2] / "src" / "chargebrain" / "sim"
                           / SCENARIO_DIR / f"{name}.json").read_text())
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump(data, sort_keys=False))
        assert load_scenario(p) == load_scenario(name), name


def test_yaml_times_written_without_quotes_stay_times(tmp_path: Path) -> None:
    """Plain YAML 1.1 reads 9:30 as the number 570 and 1:30:00 as 5400; a scenario means
    half past nine and an hour and a half."""
    text = """
name: t
start: 8:00                 # a time of day
duration: 4h
site: {max_current_ma: 32000, reserve_ma: 2000}
evses: [{id: E1, max_ma: 16000}]
cars:
  - {id: a, evse: E1, arrive: 9:30, leave: 11:15:30, need_kwh: 10.5, soc: .25}
faults:
  - {type: car_underdraw, car: a, factor: 5e-1, from: 1800, to: 10:00}
"""
    p = tmp_path / "t.yml"
    p.write_text(text)
    sc = load_scenario(p)
    assert sc.start_s == 8 * H
    car = sc.car("a")
    assert (car.arrive_s, car.leave_s) == (int(1.5 * H), int(3.25 * H) + 30)
    assert (car.need_kwh, car.soc) == (10.5, 0.25)
    assert sc.faults[0].factor == 0.5
    assert (sc.faults[0].start_s, sc.faults[0].end_s) == (1800, 2 * H)


def test_bad_yaml_is_a_scenario_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(p)
    p.write_text("- just\n- a list\n")
    with pytest.raises(ScenarioError, match=r"\$: must be an object, not an array"):
        load_scenario(p)
    with pytest.raises(ScenarioError, match="cannot read it"):
        load_scenario(tmp_path / "missing.yaml")
    with pytest.raises(ScenarioError, match="cannot read it"):
        load_scenario(tmp_path / "missing.json")
