"""Benchmarks of loading scenario files (read the text, validate, build the scenario).

Figures: each shipped scenario from its JSON text; a generated site of 200 EVSEs in ten
groups with 400 car stays, household, PV and faults, as JSON and as YAML; and the same
file with 50 broken cars, to the error that lists them with their lines. Loading happens
once per simulation, so the goal is only that it stays small beside a run (a shortened
run takes seconds). This module only measures; it must never write files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from bench.common import Figure, per_call_seconds
from chargebrain.sim.scenario import (
    ScenarioError,
    loads_scenario,
    loads_scenario_yaml,
    shipped_scenarios,
)

EVSES = 200
GROUPS = 10


def generated(evses: int = EVSES, broken_cars: int = 0) -> dict[str, Any]:
    """A large site: `evses` EVSEs in `GROUPS` groups (two levels), two stays per EVSE."""
    groups = [{"id": "G0", "max_current_ma": 400_000}]
    groups += [{"id": f"G{g}", "max_current_ma": 100_000, "parent": "G0", "prio": 1 + g % 2}
               for g in range(1, GROUPS)]
    doc: dict[str, Any] = {
        "name": "generated",
        "description": f"{evses} EVSEs, generated for the loading benchmark",
        "start": "06:00",
        "duration": "24h",
        "cycle_s": 3,
        "seed": 7,
        "site": {"max_current_ma": 630_000, "reserve_ma": 10_000, "max_imbalance_ma": 40_000,
                 "max_evse_current_ma": 500_000},
        "groups": groups,
        "evses": [
            {"id": f"E{i:03}", "group": f"G{i % GROUPS}", "prio": 1 + i % 3,
             "max_ma": 32_000 if i % 4 else 16_000, "phase_rotation": (0, 120, 240)[i % 3],
             "used_phases": 1 if i % 7 == 0 else 3}
            for i in range(evses)
        ],
        "cars": [],
        "household": {
            "base_w": [["00:00", 20_000], ["07:00", 60_000], ["12:00", 40_000],
                       ["18:00", 90_000], ["22:00", 30_000]],
            "phase_split": [0.4, 0.3, 0.3],
            "appliances": [
                {"name": "kitchen", "power_w": 20_000, "duration": "45m", "at": ["12:00"]},
                {"name": "pumps", "power_w": 6_000, "phases": [1, 2], "duration": "10m",
                 "every": "1h"},
                {"name": "lifts", "power_w": 9_000, "duration": "2m",
                 "random": {"count": 40, "window": ["06:00", "22:00"]}},
            ],
        },
        "pv": {"peak_kw": 200, "sunrise": "06:30", "sunset": "20:00",
               "clouds": {"per_hour": 2, "mean_duration": "5m", "depth": [0.2, 0.7]}},
        "meters": {"grid": {"delay_s": 2, "noise_pct": 1}, "evse": {"noise_pct": 0.5}},
        "faults": [],
    }
    for i in range(evses):
        evse = f"E{i:03}"
        for stay, (arrive, leave) in enumerate((("07:30", "+9h"), ("17:30", "05:30"))):
            car: dict[str, Any] = {
                "id": f"car{i:03}{'ab'[stay]}", "evse": evse, "arrive": arrive,
                "leave": leave, "need_kwh": 10 + i % 30, "max_ma": 16_000 if i % 3 else 32_000,
                "phases": 1 if i % 5 == 0 else 3, "soc": 0.2 + (i % 6) / 10,
                "sleep_after_s": "30m" if i % 9 == 0 else None,
            }
            if stay == 1 and i < broken_cars:
                car["evse"] = "nowhere"
                car["soc"] = 1.5
            doc["cars"].append(car)
    for i in range(0, evses, 10):
        doc["faults"].append({"type": "evse_offline", "evse": f"E{i:03}", "from": "+2h",
                              "to": "+2h30m", "fail_safe_ma": 0})
    doc["faults"].append({"type": "meter_dropout", "meter": "grid", "from": "12:00",
                          "to": "12:05"})
    return doc


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(doc, sort_keys=False))


def _expect_error(load: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        try:
            load()
        except ScenarioError as exc:
            return exc
        raise AssertionError("the broken scenario loaded")

    return run


def _figure(name: str, text: str, fn: Callable[[], object], min_time: float) -> Figure:
    ms = per_call_seconds(fn, min_time=min_time, repeat=3) * 1e3
    return Figure(f"scenario load, {name} ({len(text) // 1024} KiB)", round(ms, 3), "ms",
                  goal="small beside a run")


def run(quick: bool) -> list[Figure]:
    min_time = 0.2 if quick else 1.0
    figures = []
    root = resources.files("chargebrain.sim").joinpath("scenarios")
    for name in shipped_scenarios():
        text = root.joinpath(f"{name}.json").read_text(encoding="utf-8")
        figures.append(_figure(f"{name} JSON", text,
                               lambda text=text: loads_scenario(text), min_time))
    big = generated()
    text = json.dumps(big, indent=1)
    figures.append(_figure(f"{EVSES} EVSEs JSON", text,
                           lambda: loads_scenario(text), min_time))
    yaml_text = _yaml(big)
    figures.append(_figure(f"{EVSES} EVSEs YAML", yaml_text,
                           lambda: loads_scenario_yaml(yaml_text), min_time))
    broken = json.dumps(generated(broken_cars=50), indent=1)
    figures.append(_figure(f"{EVSES} EVSEs JSON, 50 broken cars to the error", broken,
                           _expect_error(lambda: loads_scenario(broken)), min_time))
    return figures
