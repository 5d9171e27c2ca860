"""Charging rules of the newer model: a rule set (`crule_set`) run as a small program.

The value starts at 0 (an EVSE with rules but no fulfilled rule pauses); rules run top to
bottom; a rule whose condition holds (optionally negated) runs its action; the End flag
stops the run. Condition codes (`ctype`) and flag bits are this implementation's choice
(the vendor does not publish them) and are listed in docs/rules.md; unknown condition or
action codes make a rule inapplicable. This module must never mutate its inputs, loop
other than over the rule list, read a clock or do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chargebrain.core.formula import EvalContext, Formula, FormulaError, compile_formula
from chargebrain.core.rules.classic import ALL_DAYS, DAY_MINUTES, int_field, window_applies
from chargebrain.core.rules.model import (
    LocalClock,
    RuleContext,
    StateKey,
    undercut_held,
)

# Condition codes (our numbering).
C_ALWAYS = 0
C_TIME = 1
C_PV_SURPLUS = 2  # surplus current per phase >= cexpr (mA)
C_FORMULA = 3  # cexpr > 0
C_PRICE_LEVEL = 4  # current price level <= cexpr
C_PRICE = 5  # current price <= cexpr
C_SOLAR = 6  # solar current per phase >= cexpr (mA)
C_GRID_SUPPLY = 7  # grid supply current per phase >= cexpr (mA)
C_FEED_IN = 8  # grid feed-in current per phase >= cexpr (mA)

CONDITION_LABELS = {
    C_ALWAYS: "always",
    C_TIME: "time",
    C_PV_SURPLUS: "PV surplus",
    C_FORMULA: "formula",
    C_PRICE_LEVEL: "price level",
    C_PRICE: "price",
    C_SOLAR: "solar",
    C_GRID_SUPPLY: "grid supply",
    C_FEED_IN: "feed-in",
}
# Conditions that may be held for `udur` seconds after they stop being met.
UNDERCUT_CONDITIONS = frozenset({C_PV_SURPLUS, C_SOLAR, C_GRID_SUPPLY, C_FEED_IN})

# Action codes (the vendor's log codes).
A_SET = 0
A_PV_SURPLUS = 10
A_SOLAR = 11
A_GRID_SUPPLY = 12
A_FEED_IN = 13

ACTION_LABELS = {
    A_SET: "set value",
    A_PV_SURPLUS: "PV surplus x factor",
    A_SOLAR: "solar x factor",
    A_GRID_SUPPLY: "grid supply x factor",
    A_FEED_IN: "feed-in x factor",
}

# Flag bits (our numbering).
F_NOT = 1
F_END = 2
F_PV = 4


@dataclass(frozen=True, slots=True)
class ProgramRule:
    """One compiled rule of a rule set. `error` set = the rule never applies."""

    index: int
    rule_id: int
    enabled: bool = True
    days: int = 0
    ctype: int = C_ALWAYS
    cexpr: Formula | None = None
    time: int | None = None
    dur: int = 0
    udur: float = 0.0
    atype: int = A_SET
    aexpr: Formula | None = None
    flags: int = 0
    comment: str = ""
    error: str | None = None

    @property
    def label(self) -> str:
        cond = CONDITION_LABELS.get(self.ctype, f"condition {self.ctype}")
        if self.flags & F_NOT:
            cond = "not " + cond
        return f"{cond}: {ACTION_LABELS.get(self.atype, f'action {self.atype}')}"


def _formula(raw: Mapping[str, Any], key: str) -> tuple[Formula | None, str | None]:
    text = raw.get(key)
    if text is None or (isinstance(text, str) and not text.strip()):
        return None, None
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = repr(text)
    if not isinstance(text, str):
        return None, f"{key} must be a formula string"
    try:
        return compile_formula(text), None
    except FormulaError as exc:
        return None, f"{key}: {exc}"


def compile_program_rule(raw: object, index: int) -> ProgramRule:
    if not isinstance(raw, Mapping):
        return ProgramRule(index, index, enabled=False, error="rule must be an object")
    cexpr, c_err = _formula(raw, "cexpr")
    aexpr, a_err = _formula(raw, "aexpr")
    dur = int_field(raw, "dur", 0)
    ena = raw.get("ena", True)
    cmt = raw.get("cmt", "")
    return ProgramRule(
        index=index,
        rule_id=int_field(raw, "id", index),
        enabled=ena is True or (isinstance(ena, int) and ena == 1),
        days=int_field(raw, "days", 0) & ALL_DAYS,
        ctype=int_field(raw, "ctype", C_ALWAYS),
        cexpr=cexpr,
        time=int_field(raw, "time", 0) % DAY_MINUTES if dur > 0 else None,
        dur=min(max(dur, 0), DAY_MINUTES),
        udur=max(float(int_field(raw, "udur", 0)), 0.0),
        atype=int_field(raw, "atype", A_SET),
        aexpr=aexpr,
        flags=int_field(raw, "flags", 0),
        comment=cmt if isinstance(cmt, str) else "",
        error=c_err or a_err,
    )


def select_rules(raw: Mapping[str, Any]) -> tuple[object, ...]:
    """The rule list of the selected rule set (own set "" if the selection is unknown)."""
    sets = raw.get("rule_set")
    if not isinstance(sets, Mapping):
        return ()
    selected = raw.get("selected_id", "")
    chosen = sets.get(selected if isinstance(selected, str) else "")
    if chosen is None:
        chosen = sets.get("")
    return tuple(chosen) if isinstance(chosen, list) else ()


@dataclass(slots=True)
class ProgramOutcome:
    value: int | None
    rule: ProgramRule | None = None
    surplus: bool = False
    undercut: bool = False


def _measure(ctype: int, ctx: RuleContext) -> float:
    if ctype == C_PV_SURPLUS:
        return float(ctx.surplus_ma)
    if ctype == C_SOLAR:
        return float(ctx.solar_ma)
    if ctype == C_GRID_SUPPLY:
        return float(ctx.grid_import_ma)
    return float(ctx.grid_export_ma)


def _condition(rule: ProgramRule, ctx: RuleContext, clock: LocalClock, fctx: EvalContext) -> bool:
    ctype = rule.ctype
    x = rule.cexpr.evaluate(fctx) if rule.cexpr is not None else 0.0
    if ctype == C_ALWAYS:
        return True
    if ctype == C_TIME:
        return rule.time is not None and window_applies(rule.days, rule.time, rule.dur, clock)
    if ctype == C_FORMULA:
        return x > 0
    if ctype == C_PRICE_LEVEL:
        return ctx.price_level is not None and ctx.price_level <= x
    if ctype == C_PRICE:
        return ctx.price is not None and ctx.price <= x
    if ctype in UNDERCUT_CONDITIONS:
        return _measure(ctype, ctx) >= x
    return False


def _action(rule: ProgramRule, ctx: RuleContext, fctx: EvalContext) -> float | None:
    atype = rule.atype
    if atype == A_SET:
        return rule.aexpr.evaluate(fctx) if rule.aexpr is not None else 0.0
    factor = rule.aexpr.evaluate(fctx) if rule.aexpr is not None else 1.0
    if atype == A_PV_SURPLUS:
        return ctx.surplus_ma * factor
    if atype == A_SOLAR:
        return ctx.solar_ma * factor
    if atype == A_GRID_SUPPLY:
        return ctx.grid_import_ma * factor
    if atype == A_FEED_IN:
        return ctx.grid_export_ma * factor
    return None


def evaluate_program(
    rules: tuple[ProgramRule, ...],
    list_name: str,
    ctx: RuleContext,
    clock: LocalClock,
    state: Mapping[StateKey, float],
    changes: dict[StateKey, float | None],
    now: float,
) -> ProgramOutcome:
    """Run a rule set; an empty (or all-disabled) set gives value None (no wish)."""
    fctx = ctx.formula
    active = [r for r in rules if r.enabled]
    if not active:
        return ProgramOutcome(None)
    value = 0.0
    last: ProgramRule | None = None
    undercut = False
    surplus = False
    for rule in active:
        if rule.error is not None:
            continue
        if rule.ctype != C_TIME and not (rule.days == 0 or rule.days & (1 << clock.weekday)):
            continue
        met = _condition(rule, ctx, clock, fctx)
        held = False
        if rule.udur > 0 and rule.ctype in UNDERCUT_CONDITIONS:
            key = (ctx.dev_id, list_name, rule.index)
            held = undercut_held(state, changes, key, met, now, rule.udur)
        fulfilled = met or held
        if rule.flags & F_NOT:
            fulfilled = not fulfilled
            held = False
        if not fulfilled:
            continue
        result = _action(rule, ctx, fctx)
        if result is None:
            continue
        value = result
        last = rule
        undercut = undercut or held
        surplus = bool(rule.flags & F_PV) or rule.atype in (A_PV_SURPLUS, A_SOLAR)
        if rule.flags & F_END:
            break
    if undercut and value < ctx.evse_min_ma:
        value = float(ctx.evse_min_ma)
    if value != value or value <= 0:
        wish = 0
    elif ctx.evse_max_ma > 0 and value > ctx.evse_max_ma:
        wish = ctx.evse_max_ma
    else:
        wish = round(value)
    return ProgramOutcome(wish, last, surplus=surplus and wish > 0, undercut=undercut)
