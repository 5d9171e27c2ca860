"""Entry points for the charging manager: compile rule lists once, evaluate every cycle.

`compile_rules(raw)` turns a classic rule list or a `crule_set` object into CompiledRules
(never raises; invalid rules are kept as inert rules and reported in `errors`).
`evaluate_evse_rules(evse, user, ctx, state, now)` gives the EVSE's wish: the EVSE list and
the authorised user's list are each evaluated, the lower value wins, overrides E/U switch
a list off. `evaluate_all` does the same for many EVSEs with one state update.
This module must never read a clock or do I/O, and never mutate the state passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

from chargebrain.core.rules.classic import (
    ClassicRule,
    compile_rule,
    evaluate_list,
)
from chargebrain.core.rules.classic import device_ids as classic_device_ids
from chargebrain.core.rules.model import (
    LIST_EVSE,
    LIST_USER,
    LocalClock,
    RuleContext,
    RuleResult,
    RuleState,
    StateKey,
)
from chargebrain.core.rules.program import (
    A_PV_SURPLUS,
    A_SOLAR,
    F_PV,
    ProgramRule,
    compile_program_rule,
    evaluate_program,
    select_rules,
)
from chargebrain.core.rules.validate import (
    MAX_RULES,
    classic_rule_errors,
    program_rule_errors,
    validate_rules,
)


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """A compiled rule list: classic rules or a rule-set program."""

    kind: Literal["classic", "program"] = "classic"
    classic: tuple[ClassicRule, ...] = ()
    program: tuple[ProgramRule, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        """No enabled rule: the list expresses no wish."""
        rules: tuple[ClassicRule | ProgramRule, ...] = (
            self.classic if self.kind == "classic" else self.program
        )
        return not any(r.enabled for r in rules)

    @property
    def follows_surplus(self) -> bool:
        """An enabled rule's value follows the PV surplus or production (the EVSE charges
        from surplus when it applies)."""
        if self.kind == "classic":
            return any(r.enabled and r.error is None and r.solar_mode for r in self.classic)
        return any(r.enabled and r.error is None and (
            r.flags & F_PV or r.atype in (A_PV_SURPLUS, A_SOLAR)) for r in self.program)

    def device_ids(self) -> set[str]:
        out = classic_device_ids(self.classic)
        for rule in self.program:
            for f in (rule.cexpr, rule.aexpr):
                if f is not None:
                    out |= f.device_ids
        return out


NO_RULES = CompiledRules()


def compile_rules(raw: object) -> CompiledRules:
    """Compile a classic `charging_rules` list or a `crule_set` object (None = no rules)."""
    if raw is None:
        return NO_RULES
    if isinstance(raw, list | tuple):
        items = list(raw)[:MAX_RULES]
        rules: list[ClassicRule] = []
        errors: list[str] = []
        for i, item in enumerate(items):
            problems = classic_rule_errors(item, f"rule {i + 1}")
            errors += problems
            rules.append(compile_rule(item, i, problems[0] if problems else None))
        return CompiledRules("classic", classic=tuple(rules), errors=tuple(errors))
    if isinstance(raw, Mapping):
        errors = validate_rules(raw)
        chosen = select_rules(raw)[:MAX_RULES]
        program: list[ProgramRule] = []
        for i, item in enumerate(chosen):
            problems = program_rule_errors(item, f"rule {i + 1}")
            rule = compile_program_rule(item, i)
            if problems and rule.error is None:
                rule = _program_error(rule, problems[0])
            program.append(rule)
        return CompiledRules("program", program=tuple(program), errors=tuple(errors))
    return CompiledRules(errors=("rules must be a list of rule objects or a rule-set object",))


def _program_error(rule: ProgramRule, message: str) -> ProgramRule:
    return replace(rule, error=message)


class _Part(NamedTuple):
    """One list's outcome (a tuple: built for every list of every EVSE each cycle)."""

    value: int | None
    source: str
    surplus: bool = False
    undercut: bool = False


_NO_PART = _Part(None, "")


def _run(
    rules: CompiledRules,
    list_name: str,
    who: str,
    ctx: RuleContext,
    clock: LocalClock,
    state: Mapping[StateKey, float],
    changes: dict[StateKey, float | None],
    now: float,
) -> _Part:
    if rules.kind == "program":
        p = evaluate_program(rules.program, list_name, ctx, clock, state, changes, now)
        if p.value is None:
            return _NO_PART
        if p.rule is None:
            return _Part(0, f"{who} rules: none applies")
        tail = ", undercut" if p.undercut else ""
        return _Part(
            p.value, f"{who} rule id {p.rule.rule_id} ({p.rule.label}{tail})", p.surplus, p.undercut
        )
    c = evaluate_list(rules.classic, list_name, ctx, clock, state, changes, now)
    if c.value is None:
        return _NO_PART
    if c.rule is None:
        return _Part(0, f"{who} rules: none applies")
    tail = ", undercut" if c.undercut else ""
    surplus = c.rule.solar_mode and c.value > 0
    return _Part(
        c.value, f"{who} rule {c.rule.index + 1} ({c.rule.label}{tail})", surplus, c.undercut
    )


def _evaluate(
    evse_rules: CompiledRules | None,
    user_rules: CompiledRules | None,
    ctx: RuleContext,
    state: Mapping[StateKey, float],
    changes: dict[StateKey, float | None],
    now: float,
) -> RuleResult:
    clock = ctx.clock or LocalClock.at(now, ctx.tz)
    evse = user = _NO_PART
    if evse_rules is not None and not ctx.override_evse_rules:
        evse = _run(evse_rules, LIST_EVSE, "EVSE", ctx, clock, state, changes, now)
    if user_rules is not None and not ctx.override_user_rules:
        user = _run(user_rules, LIST_USER, "user", ctx, clock, state, changes, now)
    if evse.value is None and user.value is None:
        notes = []
        if ctx.override_evse_rules and evse_rules is not None and not evse_rules.is_empty:
            notes.append("EVSE rules overridden")
        if ctx.override_user_rules and user_rules is not None and not user_rules.is_empty:
            notes.append("user rules overridden")
        return RuleResult(None, "no rules" + (f" ({', '.join(notes)})" if notes else ""))
    if evse.value is not None and (user.value is None or evse.value <= user.value):
        return RuleResult(evse.value, evse.source, evse.surplus, evse.undercut)
    return RuleResult(user.value, user.source, user.surplus, user.undercut)


def evaluate_evse_rules(
    evse_rules: CompiledRules | None,
    user_rules: CompiledRules | None,
    ctx: RuleContext,
    state: RuleState,
    now: float,
) -> tuple[RuleResult, RuleState]:
    """The rule wish for one EVSE at time `now`, and the updated undercut memory."""
    changes: dict[StateKey, float | None] = {}
    result = _evaluate(evse_rules, user_rules, ctx, state.entries, changes, now)
    return result, state.with_changes(changes)


def evaluate_all(
    items: Iterable[tuple[CompiledRules | None, CompiledRules | None, RuleContext]],
    state: RuleState,
    now: float,
) -> tuple[dict[str, RuleResult], RuleState]:
    """evaluate_evse_rules for many EVSEs (keyed by RuleContext.dev_id), one state copy."""
    changes: dict[StateKey, float | None] = {}
    entries = state.entries
    results: dict[str, RuleResult] = {}
    for evse_rules, user_rules, ctx in items:
        results[ctx.dev_id] = _evaluate(evse_rules, user_rules, ctx, entries, changes, now)
    return results, state.with_changes(changes)


def rules_from_params(device: Mapping[str, Any]) -> object:
    """The rule object of a device/user configuration: `crule_set` if present, otherwise
    `charging_rules` (None when neither is set)."""
    crule = device.get("crule_set")
    if isinstance(crule, Mapping):
        return crule
    return device.get("charging_rules")
