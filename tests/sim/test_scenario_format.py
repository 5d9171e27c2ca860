"""Scenario files as a user writes them: problems with their line in JSON and YAML, every
problem at once, comments and nulls, and the JSON Schema of the format."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from chargebrain.cli import main as cli_main
from chargebrain.sim.scenario import (
    SCENARIO_DIR,
    ScenarioError,
    json_schema,
    load_scenario,
    loads_scenario,
    loads_scenario_yaml,
    scenario_from_dict,
    shipped_scenarios,
    yaml_text,
)
from chargebrain.sim.scenario.lines import JsonLines

ROOT = Path(__file__).parents[2]
SCHEMA_FILE = ROOT / "docs" / "scenario.schema.json"
SHIPPED = ROOT / "src" / "chargebrain" / "sim" / SCENARIO_DIR

BROKEN_JSON = """{
  "name": "broken",
  "duration": "4h",
  "site": {"max_current_ma": 32000, "reserve_ma": -1},
  "evses": [
    {"id": "E1"},
    {"id": "E2", "phase_rotation": 45}
  ],
  "cars": [
    {"id": "a", "evse": "E7", "arrive": 0, "leave": "+1h", "need_kwh": 10},
    {"id": "b", "evse": "E2", "arrive": "+1h",
     "leave": 60, "need_kwh": 10}
  ],
  "faults": [{"type": "meltdown"}]
}
"""

BROKEN_YAML = """\
name: broken
duration: 4h
site: {max_current_ma: 32000, reserve_ma: -1}
evses:
  - id: E1
  - id: E2
    phase_rotation: 45
cars:
  - {id: a, evse: E7, arrive: 0, leave: +1h, need_kwh: 10}
  - id: b
    evse: E2
    arrive: +1h
    leave: 60
    need_kwh: 10
faults:
  - type: meltdown
"""


def problems_of(load: Any, text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ScenarioError) as info:
        load(text, "broken")
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_every_problem_names_its_field_and_line_in_json() -> None:
    assert problems_of(loads_scenario, BROKEN_JSON) == [
        (4, "$.site.reserve_ma", "-1 is out of range 0.."),
        (7, "$.evses[1].phase_rotation", "45 is not one of 0, 120, 240"),
        (10, "$.cars[0].evse", "unknown EVSE 'E7'"),
        (12, "$.cars[1].leave", "must be after arrive"),  # its own line, not its object's
        (14, "$.faults[0].type", "unknown fault 'meltdown' (one of meter_stale, "
                                 "meter_dropout, evse_offline, car_underdraw, car_overdraw)"),
    ]


LOADERS = [yaml_text._PureLoader] + ([yaml_text._FastLoader] if yaml.__with_libyaml__ else [])


@pytest.fixture(params=LOADERS, ids=lambda loader: loader.__name__)
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML's own parser, and libyaml's where PyYAML has it: they must read the same."""
    monkeypatch.setattr(yaml_text, "_ScenarioLoader", request.param)


@pytest.mark.usefixtures("yaml_loader")
def test_every_problem_names_its_field_and_line_in_yaml() -> None:
    assert [(line, field) for line, field, _ in problems_of(loads_scenario_yaml, BROKEN_YAML)] \
        == [(3, "$.site.reserve_ma"), (7, "$.evses[1].phase_rotation"), (9, "$.cars[0].evse"),
            (13, "$.cars[1].leave"), (16, "$.faults[0].type")]


@pytest.mark.usefixtures("yaml_loader")
def test_yaml_reads_times_as_times_and_the_shipped_scenarios_alike() -> None:
    data, lines = yaml_text.read_yaml("a: 9:30\nb: 1:30:00\nc: 0x1F\nd: 1_000\ne: .5\n"
                                      "f: 5e-1\ng: [yes, null, ~]\n")
    assert data == {"a": "9:30", "b": "1:30:00", "c": "0x1F", "d": 1000, "e": 0.5, "f": 0.5,
                    "g": [True, None, None]}
    assert lines.line(("g", 1)) == 7
    for name in shipped_scenarios():
        doc = json.loads((SHIPPED / f"{name}.json").read_text(encoding="utf-8"))
        assert loads_scenario_yaml(yaml.safe_dump(doc)) == load_scenario(name), name
    with pytest.raises(ScenarioError, match=r"not valid YAML: .*line 1"):
        loads_scenario_yaml("name: [unclosed\n")


def test_the_error_text_carries_source_line_and_field(tmp_path: Path) -> None:
    p = tmp_path / "broken.json"
    p.write_text(BROKEN_JSON)
    with pytest.raises(ScenarioError) as info:
        load_scenario(p)
    text = str(info.value)
    assert text.startswith(f"invalid scenario {p}: line 4, $.site.reserve_ma: -1 is out of")
    assert "; line 10, $.cars[0].evse: unknown EVSE 'E7'; " in text
    assert info.value.errors[1] == "line 7, $.evses[1].phase_rotation: 45 is not one of 0, " \
                                   "120, 240"


def test_a_missing_key_is_on_the_line_of_its_object() -> None:
    text = '{"name": "t", "duration": "1h",\n "site": {\n  "reserve_ma": 0},\n "evses": []}'
    assert problems_of(loads_scenario, text) == [
        (2, "$.site.max_current_ma", "required"),
        (4, "$.evses", "at least one EVSE is required"),
    ]
    with pytest.raises(ScenarioError) as info:
        loads_scenario('{"duration": "1h", "site": {"max_current_ma": 1}, "evses": [{"id": "A"}]}')
    assert info.value.errors == ("$.name: required",)  # the document itself has no line


def test_malformed_objects_do_not_hide_the_rules_across_objects() -> None:
    """A car on a malformed EVSE is not on an unknown EVSE; the references of a malformed
    car are still checked, and so are the other objects."""
    doc = {"name": "t", "duration": "2h", "site": {"max_current_ma": 32000},
           "evses": [{"id": "A", "max_ma": 1}, {"id": "B"}],
           "cars": [{"id": "a", "evse": "A", "arrive": 0, "leave": 60, "need_kwh": 1},
                    {"id": "b", "evse": "C", "arrive": 0, "leave": 60, "need_kwh": 1,
                     "soc": 2}],
           "faults": [{"type": "evse_offline", "evse": "B", "fail_safe_ma": "x"},
                      {"type": "car_underdraw", "car": "z", "factor": 0.5}]}
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(doc)
    assert info.value.errors == (
        "$.evses[0].max_ma: 1 is out of range 6000..80000",
        "$.cars[1].soc: 2 is out of range 0..1",
        "$.faults[0].fail_safe_ma: must be an integer, not the string 'x'",
        "$.cars[1].evse: unknown EVSE 'C'",
        "$.faults[1].car: unknown car 'z'",
    )


def test_comments_nulls_and_the_schema_key_are_allowed() -> None:
    base: dict[str, Any] = {
        "$schema": "../docs/scenario.schema.json", "_comment": "ignored",
        "name": "t", "duration": "2h", "description": None,
        "site": {"max_current_ma": 32000, "reserve_ma": None, "_why": "main fuse"},
        "evses": [{"id": "A", "group": None}],
        "cars": [{"id": "a", "evse": "A", "arrive": 0, "leave": 600, "need_kwh": 1,
                  "max_ma": None, "sleep_after_s": None, "wake_after_s": None}],
    }
    sc = scenario_from_dict(base)
    assert sc.description == "" and sc.site.limits.reserve_ma == 0
    car = sc.car("a")
    assert car.max_ma == 16000  # null is the default ...
    assert car.sleep_after_s is None and car.wake_after_s is None  # ... except where it says
    assert scenario_from_dict({**base, "cars": [{**base["cars"][0], "wake_after_s": "2m"}]}) \
        .car("a").wake_after_s == 120.0
    with pytest.raises(ScenarioError, match=r"\$\.cars\[0\]\.sleep_after_s: must be positive"):
        scenario_from_dict({**base, "cars": [{**base["cars"][0], "sleep_after_s": 0}]})
    with pytest.raises(ScenarioError, match=r"\$\.site\.fuse: unknown key \(known: max_curr"):
        scenario_from_dict({**base, "site": {"max_current_ma": 1, "fuse": 2}})


def test_a_fault_takes_only_the_keys_of_its_type() -> None:
    base: dict[str, Any] = {"name": "t", "duration": "2h", "site": {"max_current_ma": 32000},
                            "evses": [{"id": "A"}]}
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({**base, "faults": [
            {"type": "meter_dropout", "meter": "grid", "factor": 0.5},
            {"type": "meter_stale", "meter": "inverter"},
            {"type": "evse_offline"},
            "nothing",
        ]})
    assert info.value.errors == (
        "$.faults[0].factor: unknown key (known: from, meter, to, type)",
        "$.faults[1].meter: unknown meter 'inverter' (grid or pv)",
        "$.faults[2].evse: required",
        "$.faults[3]: must be an object, not the string 'nothing'",
    )
    sc = scenario_from_dict({**base, "faults": [
        {"type": "evse_offline", "evse": "A", "from": "+10m", "fail_safe_ma": 6000}]})
    fault = sc.faults[0]
    assert (fault.start_s, fault.end_s, fault.fail_safe_ma, fault.factor) == (600, 7200, 6000, 1.0)


def test_json_lines_of_nested_and_repeated_parts() -> None:
    text = '{"a": 1,\n "b": [\n  {"c": 2},\n  [3,\n   4]],\n "a": {"d":\n 5}}'
    assert json.loads(text) == {"a": {"d": 5}, "b": [{"c": 2}, [3, 4]]}
    lines = JsonLines(text)
    assert lines.line(()) is None
    assert lines.line(("b",)) == 2
    assert lines.line(("b", 0, "c")) == 3
    assert lines.line(("b", 1, 1)) == 5
    assert lines.line(("a", "d")) == 6  # the key json.loads kept: the last
    assert lines.line(("b", 7, "x")) == 2  # beyond the text: the nearest part that exists
    assert lines.line(("nothing",)) is None


def test_the_json_schema_file_is_current() -> None:
    """docs/scenario.schema.json is what `chargebrain simulate --schema` prints; regenerate it
    with `chargebrain simulate --schema > docs/scenario.schema.json`."""
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == json_schema()


def test_the_schema_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["simulate", "--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()
    assert cli_main(["simulate"]) == 2


def test_the_schema_accepts_the_shipped_scenarios_and_refuses_what_the_loader_refuses() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name in shipped_scenarios():
        doc = json.loads((SHIPPED / f"{name}.json").read_text(encoding="utf-8"))
        assert list(validator.iter_errors(doc)) == [], name
        doc["_note"] = "a comment"
        assert validator.is_valid(doc)
    home = json.loads((SHIPPED / "home.json").read_text(encoding="utf-8"))
    for path, bad in [
        (("site", "max_current_ma"), 0),
        (("evses", 0, "phase_rotation"), 90),
        (("cars", 0, "arrive"), "25:00"),
        (("cars", 0, "leave"), "soon"),
        (("cars", 0, "colour"), "red"),
        (("duration",), "1 day"),
    ]:
        doc = copy.deepcopy(home)
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = bad
        assert not validator.is_valid(doc), path
        with pytest.raises(ScenarioError):
            scenario_from_dict(doc)
