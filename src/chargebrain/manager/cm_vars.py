"""Charging Manager variables (`CM.<name>`): admin-defined values and formulas.

Each variable is a constant or a formula. Definitions are kept in the `cm_vars` table
unless they were set as temporary (`tmp`), and are evaluated once per control cycle, in
dependency order, into the formula context and the decider's `cm_values`, where charging
rules, limits and other formulas read them. The writable predefined variables
(`_set_price`, `_set_price_level`, `_max_total_current_prc`, `_flag1`..`_flag32`) are
defined the same way; the read-only predefined ones (`_price`, `_surplus`, …) belong to the
rules runtime and can never be set here.

Every change is validated completely before anything is touched, and written to SQLite
before memory changes, so a refused change alters nothing. This module must never spell
the HTTP API's JSON answers (api/cmd_vars.py does) and never decide charging currents.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chargebrain.core.formula import (
    MAX_LENGTH,
    MAX_TOTAL_LENGTH,
    NS_CM,
    DictEvalContext,
    Formula,
    FormulaError,
    compile_formula,
)
from chargebrain.store.db import Store

if TYPE_CHECKING:
    from chargebrain.manager.decide import Decider
    from chargebrain.manager.runtime import ChargingManager

log = logging.getLogger("chargebrain.cm_vars")

MAX_VARS = 256
MAX_NAME_LENGTH = 64
PRC_VAR = "_max_total_current_prc"

#: Predefined variables an admin may set (inputs of the manager).
WRITABLE_PREDEFINED: frozenset[str] = frozenset(
    {"_set_price", "_set_price_level", PRC_VAR, *(f"_flag{i}" for i in range(1, 33))}
)
#: Predefined variables the manager computes; they can be read, never set.
READ_ONLY_PREDEFINED: frozenset[str] = frozenset(
    {
        "_num_charging",
        "_num_charging1",
        "_max_total_current",
        "_max_total_evse_current",
        "_price",
        "_price_level",
        "_surplus",
        "_org_surplus",
        "_dt",
        "_storage_home_max_capacity",
        "_storage_home_capacity",
        "_storage_all_max_capacity",
        "_storage_all_capacity",
        "_storage_home_soc",
        "_storage_all_soc",
    }
)

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class CmVarError(ValueError):
    """A definition the variables refuse; nothing was changed."""


@dataclass(frozen=True)
class CmVar:
    """One variable: its name as spelt when it was set, its text and compiled formula.

    `constant` is the value when the definition is a plain number; `persisted` says whether
    this definition is the one stored in SQLite (False after a temporary set).
    """

    name: str
    text: str
    formula: Formula
    constant: float | None
    persisted: bool = True
    error: str = ""  # why a stored definition does not compile (it then reads 0)

    @property
    def key(self) -> str:
        return self.name.lower()


def check_name(name: object) -> str:
    """The variable name, or CmVarError: letters, digits and `_` starting with a letter
    (`my_var`, `pv_2`), or one of the writable predefined names (which start with `_`)."""
    if not isinstance(name, str):
        raise CmVarError("name: a string is required")
    text = name.strip()
    if not text:
        raise CmVarError("name is required")
    if len(text) > MAX_NAME_LENGTH:
        raise CmVarError(f"name: longer than {MAX_NAME_LENGTH} characters")
    key = text.lower()
    if key in READ_ONLY_PREDEFINED:
        raise CmVarError(f"name: {text} is computed by the charging manager and cannot be set")
    if text.startswith("_"):
        if key not in WRITABLE_PREDEFINED:
            raise CmVarError(f"name: {text} is not a writable predefined variable")
        return text
    if not _NAME.fullmatch(text):
        raise CmVarError(f"name: {text!r} must consist of letters, digits and _ and start "
                         "with a letter")
    return text


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def define(name: object, expr: object, persisted: bool = True) -> CmVar:
    """A checked definition from a name and a number or formula text (CmVarError if bad)."""
    key_name = check_name(name)
    if isinstance(expr, bool) or expr is None:
        raise CmVarError(f"{key_name}: a number or a formula is required")
    if isinstance(expr, int | float):
        value = float(expr)
        if not math.isfinite(value):
            raise CmVarError(f"{key_name}: {expr!r} is not a finite number")
        text = _number_text(value)
        return CmVar(key_name, text, compile_formula(text), value, persisted)
    if not isinstance(expr, str):
        raise CmVarError(f"{key_name}: a number or a formula is required")
    text = expr.strip()
    if not text:
        raise CmVarError(f"{key_name}: a number or a formula is required")
    if len(text) > MAX_LENGTH:
        raise CmVarError(f"{key_name}: the formula is longer than {MAX_LENGTH} characters")
    number = _as_number(text)
    if number is not None:
        if not math.isfinite(number):
            raise CmVarError(f"{key_name}: {text!r} is not a finite number")
        return CmVar(key_name, text, compile_formula(_number_text(number)), number, persisted)
    try:
        formula = compile_formula(text)
    except FormulaError as exc:
        raise CmVarError(f"{key_name}: {exc}") from None
    return CmVar(key_name, text, formula, None, persisted)


def formula_chars(variables: Iterable[CmVar]) -> int:
    """The length of the variables' formulas together (numbers do not count)."""
    return sum(len(v.text) for v in variables if v.constant is None)


def evaluation_order(variables: Iterable[CmVar]) -> list[CmVar]:
    """Variables ordered so that each comes after the variables its formula reads.

    Variables in a cycle (and self-references such as `CM.x + 1`) read the value of the
    previous cycle; they are placed after everything else, in definition order.
    """
    items = list(variables)
    keys = {v.key for v in items}
    deps: dict[str, set[str]] = {}
    for v in items:
        deps[v.key] = {
            ref.field for ref in v.formula.refs
            if ref.namespace == NS_CM and ref.field in keys and ref.field != v.key
        }
    ordered: list[CmVar] = []
    done: set[str] = set()
    remaining = items
    progress = True
    while remaining and progress:
        progress = False
        rest: list[CmVar] = []
        for v in remaining:
            if deps[v.key] <= done:
                ordered.append(v)
                done.add(v.key)
                progress = True
            else:
                rest.append(v)
        remaining = rest
    return ordered + remaining


class CmVars:
    """All CM variables: definitions in memory and SQLite, values of the last cycle."""

    def __init__(self, store: Store, manager: ChargingManager) -> None:
        self.store = store
        self.manager = manager
        self._vars: dict[str, CmVar] = {}
        self._order: list[CmVar] = []
        self._values: dict[str, float] = {}

    # --- reading ---------------------------------------------------------------------

    def load(self) -> None:
        """Read the stored definitions (at start). A stored definition that does not
        compile (any more) is kept as it is, reads 0 and says why (`error`)."""
        loaded: dict[str, CmVar] = {}
        for name, text in self.store.query("SELECT name, expr FROM cm_vars ORDER BY rowid"):
            try:
                var = define(str(name), str(text))
            except CmVarError as exc:
                log.error("CM variable %s cannot be evaluated as stored (it reads 0): %s",
                          name, exc)
                var = CmVar(str(name), str(text), compile_formula("0"), None, error=str(exc))
            loaded[var.key] = var
        self._vars = loaded
        self._order = evaluation_order(loaded.values())
        self._values = {}

    def all(self) -> list[CmVar]:
        """Definitions in the order they were first set."""
        return list(self._vars.values())

    def get(self, name: str) -> CmVar | None:
        return self._vars.get(name.lower())

    def value(self, name: str) -> float | None:
        """The value of the last cycle (None before the first evaluation)."""
        return self._values.get(name.lower())

    def __len__(self) -> int:
        return len(self._vars)

    # --- changing --------------------------------------------------------------------

    def apply(self, definitions: Iterable[CmVar], *, clear: bool = False,
              tmp: bool = False) -> None:
        """Set several variables at once (`clear` deletes all others first).

        Not `tmp`: written to SQLite in one transaction first (an unchanged stored
        definition is not rewritten). Refused (CmVarError) beyond MAX_VARS variables, or
        beyond MAX_TOTAL_LENGTH characters of formulas in all unless the change shrinks
        them. `tmp`: memory only; what is stored stays and comes
        back after a restart.
        """
        defs = list(definitions)
        new: dict[str, CmVar] = {} if clear else dict(self._vars)
        for d in defs:
            new[d.key] = CmVar(d.name, d.text, d.formula, d.constant, persisted=not tmp)
        if len(new) > MAX_VARS:
            raise CmVarError(f"no more than {MAX_VARS} variables")
        total = formula_chars(new.values())
        if total > MAX_TOTAL_LENGTH and total > formula_chars(self._vars.values()):
            raise CmVarError(f"the formulas of all variables may hold at most "
                             f"{MAX_TOTAL_LENGTH} characters ({total} with this change)")
        if not tmp:
            self._persist(defs, clear)
        removed = set(self._vars) - set(new)
        self._vars = new
        self._order = evaluation_order(new.values())
        if removed:
            for key in removed:
                self._values.pop(key, None)
            forget_cm_values(self.manager.decider, removed)
        self.manager.wake()

    def _persist(self, defs: list[CmVar], clear: bool) -> None:
        stored = {str(n).lower(): (str(n), str(t))
                  for n, t in self.store.query("SELECT name, expr FROM cm_vars")}
        with self.store.transaction() as db:
            if clear:
                db.execute("DELETE FROM cm_vars")
                stored = {}
            for d in defs:
                if stored.get(d.key) == (d.name, d.text):
                    continue
                db.execute("DELETE FROM cm_vars WHERE lower(name) = ?", (d.key,))
                db.execute("INSERT INTO cm_vars (name, expr) VALUES (?, ?)", (d.name, d.text))
                stored[d.key] = (d.name, d.text)

    # --- each cycle ------------------------------------------------------------------

    def evaluate(self, ctx: DictEvalContext) -> dict[str, float]:
        """Evaluate every variable into `ctx` (dependants see this cycle's values) and
        return {name: value}. A defined `_max_total_current_prc` is applied to the site's
        share of the total current (0..100 %, not persisted)."""
        out: dict[str, float] = {}
        values = self._values
        for var in self._order:
            value = var.constant if var.constant is not None else var.formula.evaluate(ctx)
            ctx.set_cm(var.key, value)
            values[var.key] = value
            out[var.name] = value
        prc = values.get(PRC_VAR) if PRC_VAR in self._vars else None
        if prc is not None:
            self._apply_share(prc)
        return out

    def _apply_share(self, value: float) -> None:
        mgr = self.manager
        share = min(100, max(0, round(value)))
        if share != mgr.site.max_total_cur_prc:
            mgr.settings.set(mgr.site.with_changes(max_total_cur_prc=share), persist=False)


def forget_cm_values(decider: Decider, names: Iterable[str]) -> None:
    """Make CM variables that no longer exist disappear from the formula context.

    The context only ever merges CM values, so it is replaced by a fresh one that the
    next cycle fills completely (devices, inputs, CM values).
    """
    keys = {n.lower() for n in names}
    if not keys:
        return
    decider.cm_values = {k: v for k, v in decider.cm_values.items() if k.lower() not in keys}
    old = decider.ctx
    for key in keys:
        # Read as 0 (as an unknown variable) for the rest of a running cycle.
        old.set_cm(key, 0.0)
    decider.ctx = DictEvalContext(now=old.now, tz=old.tz, prices=old.prices)


def sync_cm_values(decider: Decider, ctx: DictEvalContext,
                   values: Mapping[str, float]) -> None:
    """Publish this cycle's CM values: into `ctx` and `decider.cm_values`, forgetting the
    ones that were there last cycle and are gone now."""
    ctx.update_cm(values)
    new_keys = {k.lower() for k in values}
    gone = {k for k in decider.cm_values if k.lower() not in new_keys}
    decider.cm_values = dict(values)
    if gone:
        forget_cm_values(decider, gone)
