"""Load management core: per-phase allocation of current to EVSEs under site and group limits.

`allocate(site, state, now)` is a pure function: it takes one cycle's inputs and the state
returned by the previous cycle and returns the decisions plus the next state. This package
must never do I/O, read a clock, sleep, or keep module-level mutable state other than
bounded memos of pure functions of immutable values (layout.py, finish.py, allocate.py),
which never change a result.
"""

from chargebrain.core.balancer.allocate import allocate
from chargebrain.core.balancer.data import (
    IEC_MIN_CURRENT,
    Allocation,
    BalancerState,
    DisablePolicy,
    DrawMemory,
    EvseDecision,
    EvseInput,
    EvseMemory,
    GroupConfig,
    LendMemory,
    Limit,
    Measurement,
    NodeDecision,
    PauseReason,
    Policy,
    SiteConfig,
    SiteInput,
    Tuning,
)

__all__ = [
    "IEC_MIN_CURRENT",
    "Allocation",
    "BalancerState",
    "DisablePolicy",
    "DrawMemory",
    "EvseDecision",
    "EvseInput",
    "EvseMemory",
    "GroupConfig",
    "LendMemory",
    "Limit",
    "Measurement",
    "NodeDecision",
    "PauseReason",
    "Policy",
    "SiteConfig",
    "SiteInput",
    "Tuning",
    "allocate",
]
