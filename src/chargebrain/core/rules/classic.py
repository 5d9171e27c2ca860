"""Charging rules of the classic model: the `charging_rules` array of set_params.

Each rule object (days, time, dur, mode, current, enabled, udur, expr, input, price_level,
solar) is compiled once into a `ClassicRule`; `evaluate_list` scans a list in order and the
first enabled rule whose conditions hold wins. Solar/surplus conditions keep holding for
`udur` seconds after they were last met (undercut), tracked in RuleState changes.
This module must never mutate its inputs, read a clock or do I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chargebrain.core.formula import (
    NS_DEVICE,
    NS_SELF,
    EvalContext,
    Formula,
    FormulaError,
    VarRef,
    compile_formula,
    parse_name,
)
from chargebrain.core.rules.model import (
    LocalClock,
    RuleContext,
    StateKey,
    undercut_held,
)

MODE_ABSOLUTE = 0
MODE_PERCENT = 1
MODE_SOLAR = 2
MODE_SOLAR_PERCENT = 3
MODE_SOLAR_MINUS = 4
MODE_SURPLUS = 5

MODE_LABELS = {
    MODE_ABSOLUTE: "fixed current",
    MODE_PERCENT: "percent of max current",
    MODE_SOLAR: "solar current",
    MODE_SOLAR_PERCENT: "percent of solar current",
    MODE_SOLAR_MINUS: "solar current minus value",
    MODE_SURPLUS: "solar surplus",
}
#: The undercut of a solar or surplus rule that does not give one: twice the vendor's advice
#: (300 s), which still started and stopped two surplus cars 10 times on a cloudy day
#: (docs/decisions.md).
DEFAULT_SOLAR_UDUR = 600.0
SOLAR_MODES = frozenset({MODE_SOLAR, MODE_SOLAR_PERCENT, MODE_SOLAR_MINUS, MODE_SURPLUS})
DAY_MINUTES = 1440
ALL_DAYS = 0x7F


@dataclass(frozen=True, slots=True)
class ClassicRule:
    """One compiled classic rule. `error` set = the rule is invalid and never applies."""

    index: int
    enabled: bool = True
    days: int = 0
    time: int | None = None
    dur: int = 0
    mode: int = MODE_ABSOLUTE
    current: float = 0.0
    udur: float = 0.0
    expr: Formula | None = None
    input_ref: VarRef | None = None
    input_level: bool = True
    price_level: int | None = None
    solar: float = 0.0
    label: str = ""
    error: str | None = None
    # Derived once, since every cycle asks: the rule's value or condition is the sun's.
    solar_mode: bool = field(init=False)  # its value follows the solar current or surplus
    is_solar: bool = field(init=False)  # ... or at least its condition does

    def __post_init__(self) -> None:
        solar_mode = self.mode in SOLAR_MODES
        object.__setattr__(self, "solar_mode", solar_mode)
        object.__setattr__(self, "is_solar", solar_mode or self.solar > 0)


def parse_input(spec: str) -> tuple[VarRef, bool]:
    """`"PB.input1"`, `"E1.input2 1"`, `"E1.input2 0"` -> (variable, wanted level)."""
    parts = spec.split()
    if not parts or len(parts) > 2:
        raise FormulaError("input must be '<device>.<input> [0|1]'")
    level = True
    if len(parts) == 2:
        if parts[1] not in ("0", "1"):
            raise FormulaError("input level must be 0 or 1")
        level = parts[1] == "1"
    ref = parse_name(parts[0])
    if ref.namespace == NS_SELF:
        raise FormulaError(f"input '{parts[0]}' must name a device input like PB.input1")
    return ref, level


def number_field(raw: Mapping[str, Any], key: str, default: float) -> float:
    """A finite JSON number from `raw`, else `default` (bools are not numbers)."""
    v = raw.get(key)
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return default
    f = float(v)
    return f if math.isfinite(f) else default


def int_field(raw: Mapping[str, Any], key: str, default: int) -> int:
    return int(number_field(raw, key, default))


def _label(rule: ClassicRule) -> str:
    tags: list[str] = []
    if rule.time is not None:
        tags.append("time")
    if rule.days & ALL_DAYS and rule.days & ALL_DAYS != ALL_DAYS:
        tags.append("weekdays")
    if rule.price_level is not None:
        tags.append("price level")
    if rule.input_ref is not None:
        tags.append("input")
    if rule.solar > 0 and rule.mode not in SOLAR_MODES:
        tags.append("solar")
    if rule.expr is not None:
        tags.append("formula")
    else:
        tags.append(MODE_LABELS.get(rule.mode, "fixed current"))
    return ", ".join(tags)


def compile_rule(raw: object, index: int, error: str | None = None) -> ClassicRule:
    """Compile one rule object. Invalid pieces make the rule inert (error is set)."""
    if not isinstance(raw, Mapping):
        return ClassicRule(index, enabled=False, error=error or "rule must be an object")
    enabled = raw.get("enabled", True)
    dur = int_field(raw, "dur", 0)
    time = int_field(raw, "time", 0) % DAY_MINUTES if dur > 0 else None
    expr: Formula | None = None
    input_ref: VarRef | None = None
    input_level = True
    problem = error
    text = raw.get("expr")
    if isinstance(text, str) and text.strip():
        try:
            expr = compile_formula(text)
        except FormulaError as exc:
            problem = problem or f"expr: {exc}"
    spec = raw.get("input")
    if isinstance(spec, str) and spec.strip():
        try:
            input_ref, input_level = parse_input(spec)
        except FormulaError as exc:
            problem = problem or f"input: {exc}"
    level = int_field(raw, "price_level", 0)
    rule = ClassicRule(
        index=index,
        enabled=enabled is True or (isinstance(enabled, int) and enabled == 1),
        days=int_field(raw, "days", 0) & ALL_DAYS,
        time=time,
        dur=min(dur, DAY_MINUTES),
        mode=int_field(raw, "mode", MODE_ABSOLUTE),
        current=number_field(raw, "current", 0.0),
        udur=max(number_field(raw, "udur", _default_udur(raw)), 0.0),
        expr=expr,
        input_ref=input_ref,
        input_level=input_level,
        price_level=level if level < 0 else None,
        solar=max(number_field(raw, "solar", 0.0), 0.0),
        error=problem,
    )
    if rule.mode not in MODE_LABELS:
        rule = _replace_error(rule, f"mode {rule.mode} is not 0..5")
    return _with_label(rule)


def _default_udur(raw: Mapping[str, Any]) -> float:
    """A solar or surplus rule written without `udur` keeps the minimum through a passing
    cloud for DEFAULT_SOLAR_UDUR seconds; any other rule, or one that says `udur`, not."""
    if "udur" in raw:
        return 0.0
    mode = int_field(raw, "mode", MODE_ABSOLUTE)
    return DEFAULT_SOLAR_UDUR if mode in SOLAR_MODES or number_field(raw, "solar", 0.0) > 0 \
        else 0.0


def _replace_error(rule: ClassicRule, message: str) -> ClassicRule:
    return replace(rule, error=rule.error or message)


def _with_label(rule: ClassicRule) -> ClassicRule:
    return replace(rule, label=_label(rule))


def _day_ok(days: int, weekday: int) -> bool:
    return days == 0 or bool(days & (1 << weekday))


def window_applies(days: int, start: int | None, dur: int, clock: LocalClock) -> bool:
    """Weekday and time-window condition (`start` None = no window, weekdays only).

    A window belongs to the day it starts on, so Mon 22:00 + 8 h still applies on
    Tuesday 05:00 when only Monday is selected.
    """
    if start is None:
        return _day_ok(days, clock.weekday)
    since_start = clock.dayminute - start
    if 0 <= since_start < dur and _day_ok(days, clock.weekday):
        return True
    return since_start + DAY_MINUTES < dur and _day_ok(days, (clock.weekday - 1) % 7)


def _input_active(ref: VarRef, fctx: EvalContext) -> bool:
    v = fctx.resolve(*ref)
    return v is not None and v != 0


def _conditions_hold(
    rule: ClassicRule, ctx: RuleContext, clock: LocalClock, fctx: EvalContext
) -> bool:
    """Every condition except the solar/surplus one (weekdays, time, price level, input)."""
    if rule.time is None:  # window_applies without a window, spelt out: asked every cycle
        days = rule.days
        if days and not days & (1 << clock.weekday):
            return False
    elif not window_applies(rule.days, rule.time, rule.dur, clock):
        return False
    if rule.price_level is not None and (
        ctx.price_level is None or ctx.price_level > rule.price_level
    ):
        return False
    return rule.input_ref is None or _input_active(rule.input_ref, fctx) == rule.input_level


@dataclass(slots=True)
class ListOutcome:
    """Result of scanning one list: value None = list counts as empty."""

    value: int | None
    rule: ClassicRule | None = None
    undercut: bool = False


def _clip(value: float, ctx: RuleContext) -> int:
    if value != value or value <= 0:
        return 0
    if ctx.evse_max_ma > 0 and value > ctx.evse_max_ma:
        return ctx.evse_max_ma
    return round(value)


def _rule_value(rule: ClassicRule, ctx: RuleContext, fctx: EvalContext, measure: float) -> float:
    if rule.expr is not None:
        return rule.expr.evaluate(fctx)
    mode = rule.mode
    if mode == MODE_ABSOLUTE:
        return rule.current
    if mode == MODE_PERCENT:
        return ctx.evse_max_ma * rule.current / 100.0
    if mode == MODE_SOLAR_PERCENT:
        return measure * rule.current / 100.0
    if mode == MODE_SOLAR_MINUS:
        return measure - rule.current
    return measure  # MODE_SOLAR, MODE_SURPLUS


def evaluate_list(
    rules: tuple[ClassicRule, ...],
    list_name: str,
    ctx: RuleContext,
    clock: LocalClock,
    state: Mapping[StateKey, float],
    changes: dict[StateKey, float | None],
    now: float,
) -> ListOutcome:
    """Scan one rule list; record undercut-state changes into `changes`."""
    fctx = ctx.formula
    winner: ListOutcome | None = None
    any_enabled = False
    for rule in rules:
        if not rule.enabled:
            continue
        any_enabled = True
        if rule.error is not None:
            continue
        if winner is not None and not rule.is_solar:
            continue
        # Solar rules are looked at even after a winner so that their undercut memory
        # follows the weather and not the order of the list.
        applies = _conditions_hold(rule, ctx, clock, fctx)
        if not rule.is_solar:
            if applies and winner is None:
                winner = ListOutcome(_clip(_rule_value(rule, ctx, fctx, 0.0), ctx), rule)
            continue
        measure = float(ctx.surplus_ma if rule.mode == MODE_SURPLUS else ctx.solar_ma)
        in_solar_mode = rule.solar_mode
        wanted = applies and winner is None
        value = _rule_value(rule, ctx, fctx, measure) if (in_solar_mode or wanted) else 0.0
        met = measure >= rule.solar if rule.solar > 0 else True
        if in_solar_mode:
            # Start threshold: a solar-mode rule starts a car only at min current or more.
            met = met and value >= ctx.evse_min_ma
        held = False
        if rule.udur > 0:
            key = (ctx.dev_id, list_name, rule.index)
            held = undercut_held(state, changes, key, met, now, rule.udur)
        if wanted and (met or held):
            if held:
                value = max(value, float(ctx.evse_min_ma))
            winner = ListOutcome(_clip(value, ctx), rule, undercut=held)
    if winner is not None:
        return winner
    return ListOutcome(0 if any_enabled else None)


def device_ids(rules: tuple[ClassicRule, ...]) -> set[str]:
    """Device ids referenced by formulas and inputs (for validation against a config)."""
    out: set[str] = set()
    for rule in rules:
        if rule.expr is not None:
            out |= rule.expr.device_ids
        if rule.input_ref is not None and rule.input_ref.namespace == NS_DEVICE:
            out.add(rule.input_ref.name)
    return out
