"""Validation of charging-rule objects as they arrive through the API.

`validate_rules(obj)` returns readable error strings (empty list = acceptable) for a classic
`charging_rules` list or a `crule_set` object: wrong types, values out of range, bad
formula text, too many rules. Unknown keys are accepted (clients add their own), unknown
rule-set condition/action codes are accepted (they never apply). This module must never
change the objects it checks and must stay fast on hostile input (formulas are bounded by
the formula compiler's length and depth limits).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from chargebrain.core.formula import (
    MAX_TOTAL_LENGTH,
    NS_DEVICE,
    FormulaError,
    compile_formula,
    unknown_devices,
)
from chargebrain.core.rules.classic import parse_input

MAX_RULES = 100
MAX_RULE_SETS = 32
MAX_COMMENT = 256
MAX_CURRENT_MA = 1_000_000
# Formula text compiled per validate_rules call; beyond it the request is refused as a whole.
# Half of what one request may carry: a device has classic rules and a rule set.
MAX_TOTAL_FORMULA_CHARS = MAX_TOTAL_LENGTH // 2

# key -> (low, high) for integer fields of a classic rule
_CLASSIC_INTS: dict[str, tuple[int, int]] = {
    "days": (0, 127),
    "mode": (0, 5),
    "udur": (0, 86400),
    "time": (0, 1439),
    "dur": (0, 1440),
    "price_level": (-6, 0),
}
_CLASSIC_NUMBERS: dict[str, tuple[float, float]] = {
    "current": (0, MAX_CURRENT_MA),
    "solar": (0, MAX_CURRENT_MA),
}
_PROGRAM_INTS: dict[str, tuple[int, int]] = {
    "days": (0, 127),
    "ctype": (0, 1000),
    "atype": (0, 1000),
    "time": (0, 1439),
    "dur": (0, 1440),
    "udur": (0, 86400),
    "flags": (0, 0xFFFF),
    "id": (-(2**31), 2**31 - 1),
}
PERCENT_MODES = frozenset({1, 3})


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: object) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())


def _flag(v: object) -> bool:
    return isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))


def _formula_errors(
    where: str, text: object, known: set[str] | None, allow_number: bool = False
) -> list[str]:
    if allow_number and _is_number(text):
        return []
    if not isinstance(text, str):
        return [f"{where} must be a formula string"]
    if not text.strip():
        return []
    try:
        formula = compile_formula(text)
    except FormulaError as exc:
        return [f"{where}: {exc}"]
    if known is None:
        return []
    return [f"{where}: unknown device '{d}'" for d in sorted(unknown_devices(formula, known))]


def _range_errors(
    where: str,
    raw: Mapping[str, Any],
    ints: Mapping[str, tuple[int, int]],
    numbers: Mapping[str, tuple[float, float]],
) -> list[str]:
    errors: list[str] = []
    for key, (lo, hi) in ints.items():
        v = raw.get(key)
        if v is None:
            continue
        if not _is_int(v) or not lo <= v <= hi:
            errors.append(f"{where}: {key} must be an integer {lo}..{hi}, got {v!r:.40}")
    for key, (flo, fhi) in numbers.items():
        v = raw.get(key)
        if v is None:
            continue
        if not _is_number(v) or not flo <= v <= fhi:
            errors.append(f"{where}: {key} must be a number {flo:g}..{fhi:g}, got {v!r:.40}")
    return errors


def classic_rule_errors(raw: object, where: str, known: set[str] | None = None) -> list[str]:
    """Problems of one classic rule object."""
    if not isinstance(raw, Mapping):
        return [f"{where}: must be an object"]
    errors = _range_errors(where, raw, _CLASSIC_INTS, _CLASSIC_NUMBERS)
    enabled = raw.get("enabled")
    if enabled is not None and not _flag(enabled):
        errors.append(f"{where}: enabled must be true or false")
    mode = raw.get("mode", 0)
    current = raw.get("current")
    percent_mode = _is_int(mode) and int(mode) in PERCENT_MODES
    if percent_mode and isinstance(current, int | float) and current > 100:
        errors.append(f"{where}: current is a percentage in mode {mode} and must be 0..100")
    if raw.get("expr") is not None:
        errors += _formula_errors(f"{where}: expr", raw.get("expr"), known)
    spec = raw.get("input")
    if spec is not None:
        if not isinstance(spec, str):
            errors.append(f"{where}: input must be a string like 'PB.input1 1'")
        elif spec.strip():
            try:
                ref, _level = parse_input(spec)
            except FormulaError as exc:
                errors.append(f"{where}: input: {exc.message}")
            else:
                if known is not None and ref.namespace == NS_DEVICE and ref.name not in known:
                    errors.append(f"{where}: input: unknown device '{ref.name}'")
    return errors


def program_rule_errors(raw: object, where: str, known: set[str] | None = None) -> list[str]:
    """Problems of one rule of a rule set."""
    if not isinstance(raw, Mapping):
        return [f"{where}: must be an object"]
    errors = _range_errors(where, raw, _PROGRAM_INTS, {})
    ena = raw.get("ena")
    if ena is not None and not _flag(ena):
        errors.append(f"{where}: ena must be true or false")
    cmt = raw.get("cmt")
    if cmt is not None and (not isinstance(cmt, str) or len(cmt) > MAX_COMMENT):
        errors.append(f"{where}: cmt must be a string of at most {MAX_COMMENT} characters")
    for key in ("cexpr", "aexpr"):
        if raw.get(key) is not None:
            errors += _formula_errors(f"{where}: {key}", raw.get(key), known, allow_number=True)
    return errors


def _formula_chars(items: Iterable[object]) -> int:
    total = 0
    for raw in items:
        if isinstance(raw, Mapping):
            for key in ("expr", "input", "cexpr", "aexpr"):
                v = raw.get(key)
                if isinstance(v, str):
                    total += len(v)
    return total


def validate_rules(rules: object, known_devices: Iterable[str] | None = None) -> list[str]:
    """Error strings for a classic rule list or a `crule_set` object (empty = valid).

    With `known_devices`, formulas and inputs naming other device ids are reported too.
    """
    known = {d.upper() for d in known_devices} if known_devices is not None else None
    if rules is None:
        return []
    if isinstance(rules, Mapping) and isinstance(rules.get("rule_set"), Mapping):
        sets = rules["rule_set"]
        flat = [r for items in sets.values() if isinstance(items, list) for r in items]
    else:
        flat = list(rules) if isinstance(rules, list | tuple) else []
    if _formula_chars(flat[: MAX_RULES * MAX_RULE_SETS]) > MAX_TOTAL_FORMULA_CHARS:
        return [f"formulas too long in total (more than {MAX_TOTAL_FORMULA_CHARS} characters)"]
    if isinstance(rules, list | tuple):
        if len(rules) > MAX_RULES:
            return [f"too many rules ({len(rules)} > {MAX_RULES})"]
        errors: list[str] = []
        for i, raw in enumerate(rules):
            errors += classic_rule_errors(raw, f"rule {i + 1}", known)
        return errors
    if isinstance(rules, Mapping):
        sets = rules.get("rule_set")
        if not isinstance(sets, Mapping):
            return ["rule_set must be an object of rule lists"]
        if len(sets) > MAX_RULE_SETS:
            return [f"too many rule sets ({len(sets)} > {MAX_RULE_SETS})"]
        selected = rules.get("selected_id")
        errors = []
        if selected is not None and not isinstance(selected, str):
            errors.append("selected_id must be a string")
        for set_id, items in sets.items():
            name = f"rule set '{set_id}'"
            if not isinstance(set_id, str):
                errors.append("rule set ids must be strings")
                continue
            if not isinstance(items, list):
                errors.append(f"{name} must be a list of rules")
                continue
            if len(items) > MAX_RULES:
                errors.append(f"{name}: too many rules ({len(items)} > {MAX_RULES})")
                continue
            for i, raw in enumerate(items):
                errors += program_rule_errors(raw, f"{name} rule {i + 1}", known)
        return errors
    return ["rules must be a list of rule objects or a rule-set object"]
