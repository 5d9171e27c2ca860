"""Site simulator: plant models, scenarios and a runner on a virtual clock.

Used to measure load management: a scenario (site, cars, household, PV, meters, faults)
is run against a Policy that sees only measurements and returns EVSE currents. The
names here need nothing beyond the standard library; metrics, the offline optimum and
the outputs live in chargebrain.sim.metrics, .optimum and .output and need numpy,
scipy and matplotlib.

This package must never be imported by core/ and never touch real devices or the
real clock for simulated time.
"""

from chargebrain.sim.car import Car, CarParams
from chargebrain.sim.meter import Meter
from chargebrain.sim.policy import (
    Decision,
    EqualSplitPolicy,
    FuseOnlyPolicy,
    Policy,
    Snapshot,
)
from chargebrain.sim.runner import RunResult, SessionTrace, run_scenario
from chargebrain.sim.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    loads_scenario,
    scenario_from_dict,
    shipped_scenarios,
)

__all__ = [
    "Car",
    "CarParams",
    "Decision",
    "EqualSplitPolicy",
    "FuseOnlyPolicy",
    "Meter",
    "Policy",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "SessionTrace",
    "Snapshot",
    "load_scenario",
    "loads_scenario",
    "run_scenario",
    "scenario_from_dict",
    "shipped_scenarios",
]
