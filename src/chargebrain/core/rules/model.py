"""Values the charging-rule evaluation takes and returns: context, result, memory, clock.

`RuleContext` is everything one EVSE's rules may look at in one cycle, `RuleResult` the
wish they produce, `RuleState` the small immutable memory that carries undercut timing
from one cycle to the next. This module must never read a clock or do I/O; the time is
always the `now` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from chargebrain.core.formula import EvalContext

# RuleState value meaning "the condition was met at the last evaluation".
MET = math.inf

LIST_EVSE = "evse"
LIST_USER = "user"

StateKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class LocalClock:
    """Wall-clock facts rules need. weekday: 0 = Monday .. 6 = Sunday (the bit of `days`)."""

    weekday: int
    dayminute: int
    daysecond: int

    @classmethod
    def at(cls, now: float, tz: tzinfo | None) -> LocalClock:
        dt = datetime.fromtimestamp(now, tz or UTC)
        return cls(
            dt.weekday(), dt.hour * 60 + dt.minute, dt.hour * 3600 + dt.minute * 60 + dt.second
        )


class _NoVariables:
    """An EvalContext in which nothing exists (every variable reads as 0)."""

    __slots__ = ()

    def resolve(self, namespace: str, name: str, field: str) -> float | None:
        return None

    def param(self, pid: int) -> float | None:
        return None

    def price_extreme(self, until_daysecond: float, cheapest: bool) -> tuple[float, float] | None:
        return None


NO_VARIABLES: EvalContext = _NoVariables()


@dataclass(frozen=True, slots=True)
class RuleContext:
    """One EVSE in one cycle, as its charging rules see it. Currents in mA per phase.

    solar_ma: production (solar) current per phase of this EVSE's phases;
    surplus_ma: surplus current per phase of this EVSE's phases (may be negative);
    grid_import_ma / grid_export_ma: grid supply / feed-in current per phase (both >= 0);
    price / price_level: current energy price and level (-2 very expensive .. -6 very
    cheap), None if unknown; formula: context for rule formulas (the EVSE as self device);
    clock: precomputed LocalClock (computed from now and tz when None);
    override_evse_rules / override_user_rules: override flags E and U.
    """

    dev_id: str
    evse_max_ma: int
    evse_min_ma: int = 6000
    phases: int = 3
    solar_ma: int = 0
    surplus_ma: int = 0
    grid_import_ma: int = 0
    grid_export_ma: int = 0
    price: float | None = None
    price_level: int | None = None
    formula: EvalContext = NO_VARIABLES
    tz: tzinfo | None = None
    clock: LocalClock | None = None
    override_evse_rules: bool = False
    override_user_rules: bool = False


@dataclass(frozen=True, slots=True)
class RuleResult:
    """What the rules want for an EVSE.

    wish_ma: None = no rules (charge up to the EVSE maximum), 0 = pause, else mA per phase.
    source: readable reason. surplus: the wish comes from a solar/surplus rule (the EVSE is
    served as a surplus charger). undercut: the value is held up by an undercut time.
    """

    wish_ma: int | None
    source: str
    surplus: bool = False
    undercut: bool = False


@dataclass(frozen=True, slots=True)
class RuleState:
    """Undercut memory: (dev_id, list, rule index) -> MET, or the time the rule's
    solar/surplus condition was first seen unmet. Never mutated; changes return a copy."""

    entries: Mapping[StateKey, float] = field(default_factory=dict)

    def get(self, key: StateKey) -> float | None:
        return self.entries.get(key)

    def with_changes(self, changes: Mapping[StateKey, float | None]) -> RuleState:
        """A copy with `changes` applied (None removes a key); self if nothing changes."""
        if not changes:
            return self
        new = dict(self.entries)
        for key, value in changes.items():
            if value is None:
                new.pop(key, None)
            else:
                new[key] = value
        return RuleState(new)

    def without_device(self, dev_id: str) -> RuleState:
        """Forget everything about one EVSE (on unplug or when its rules change)."""
        if not any(k[0] == dev_id for k in self.entries):
            return self
        return RuleState({k: v for k, v in self.entries.items() if k[0] != dev_id})


def undercut_held(
    state: Mapping[StateKey, float],
    changes: dict[StateKey, float | None],
    key: StateKey,
    met: bool,
    now: float,
    udur: float,
) -> bool:
    """Track a rule's undercut: True while an unmet condition is still held.

    The state keeps MET while the condition holds and the time it was first seen unmet
    afterwards; the rule keeps applying for `udur` seconds from then. Changes to the
    state are recorded into `changes` (None removes the key).
    """
    prev = state.get(key)
    if met:
        if prev != MET:
            changes[key] = MET
        return False
    if prev == MET:
        changes[key] = now
        return True
    if prev is not None:
        if now - prev <= udur:
            return True
        changes[key] = None
    return False
