"""Scenario files for the site simulator: what the site is and what happens on it.

A scenario file (JSON, or the same object in YAML) is declared once as pydantic models
(`model.py`, whose JSON Schema `json_schema()` gives); `checks.py` adds the rules across
objects, `load.py` reads files and text and reports every problem with its field and
line, `build.py` turns a valid document into the frozen values of `spec.py` that the
simulator runs on; `times.py` reads durations and times, `lines.py` and `yaml_text.py`
know where each part of a text is. This package re-exports the names the rest of
chargebrain uses.

This package must never simulate anything, hold mutable state, or read the real clock.
"""

from chargebrain.sim.scenario.load import (
    SCENARIO_DIR,
    YAML_SUFFIXES,
    ScenarioError,
    ScenarioProblem,
    load_scenario,
    loads_scenario,
    loads_scenario_yaml,
    scenario_from_dict,
    shipped_scenarios,
)
from chargebrain.sim.scenario.model import json_schema
from chargebrain.sim.scenario.spec import (
    DAY_S,
    IEC_MIN_MA,
    INTERFACES,
    MAX_EVSE_MA,
    ApplianceSpec,
    BatterySpec,
    CarSpec,
    ChargeMode,
    CloudSpec,
    EvseSpec,
    FaultKind,
    FaultSpec,
    GroupSpec,
    HouseholdSpec,
    Interface,
    MeterSpec,
    MetersSpec,
    OcppBoxSpec,
    PlanSpec,
    PvSpec,
    Scenario,
    Site,
    SiteLimits,
    with_plans,
)
from chargebrain.sim.scenario.times import (
    When,
    parse_duration,
    parse_time_of_day,
    parse_when,
    resolve_time,
)

__all__ = [
    "DAY_S",
    "IEC_MIN_MA",
    "INTERFACES",
    "MAX_EVSE_MA",
    "SCENARIO_DIR",
    "YAML_SUFFIXES",
    "ApplianceSpec",
    "BatterySpec",
    "CarSpec",
    "ChargeMode",
    "CloudSpec",
    "EvseSpec",
    "FaultKind",
    "FaultSpec",
    "GroupSpec",
    "HouseholdSpec",
    "Interface",
    "MeterSpec",
    "MetersSpec",
    "OcppBoxSpec",
    "PlanSpec",
    "PvSpec",
    "Scenario",
    "ScenarioError",
    "ScenarioProblem",
    "Site",
    "SiteLimits",
    "When",
    "json_schema",
    "load_scenario",
    "loads_scenario",
    "loads_scenario_yaml",
    "parse_duration",
    "parse_time_of_day",
    "parse_when",
    "resolve_time",
    "scenario_from_dict",
    "shipped_scenarios",
    "with_plans",
]
