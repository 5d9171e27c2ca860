"""Expressions in meter definitions: the charging manager's formula language, nothing else.

An `expr` variable is compiled by `chargebrain.core.formula.compile_formula`, like a rule
or a CM variable, and evaluated against `DefinitionValues`, the formula context holding the
definition's own variables. A name in an expression means the definition's variable of that
name, compared case-insensitively: a bare `power_w_l1`, but also `CM.var1` or `M1.x` when
the definition has a variable spelt so (names with a dot are the formula language's
`CM.`/device forms, resolved here to the definition's own variables). `expression_order`
checks that every name exists and is numeric and gives the evaluation order, dependencies
first; a circle is an error.

Outputs carry expressions too: `${expr}` and `` ${if expr`yes`no} `` inside an output's
address or body (`Template`). They are compiled when the definition is loaded; their
names are not checked against the definition, since an output is written in the
manager's context (devices, CM variables, date).

This module must never do I/O, and never evaluate anything but compiled formulas.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from chargebrain.core.formula import EvalContext, Formula, FormulaError, VarRef, compile_formula
from chargebrain.devices.meterdef.errors import MeterDefinitionError

__all__ = [
    "DefinitionValues",
    "Expression",
    "ExpressionProblem",
    "Template",
    "expression_order",
    "parse_expression",
    "parse_template",
]


class ExpressionProblem(MeterDefinitionError):
    """An expression cannot be used; `name` is the variable (or "") it belongs to."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


def _key(namespace: str, name: str, field: str) -> str:
    """The lower-case spelling a reference is matched against variable names with."""
    return VarRef(namespace, name, field).text.lower()


class DefinitionValues:
    """A formula context over one definition's numeric variable values.

    Names are matched case-insensitively against the variables' names (`CM.var1` reads the
    variable spelt `CM.var1`). Nothing else exists here: parameters and prices are unknown.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, float] | None = None) -> None:
        self._values = {k.lower(): float(v) for k, v in (values or {}).items()}

    def set(self, name: str, value: float) -> None:
        self._values[name.lower()] = value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def resolve(self, namespace: str, name: str, field: str) -> float | None:
        return self._values.get(_key(namespace, name, field))

    def param(self, pid: int) -> float | None:
        return None

    def price_extreme(self, until_daysecond: float, cheapest: bool) -> tuple[float, float] | None:
        return None


def _compile(text: str, what: str) -> Formula:
    try:
        return compile_formula(text)
    except FormulaError as exc:
        at = f" at position {exc.column}" if exc.column else ""
        if exc.column and exc.line > 1:
            at = f" at line {exc.line} of the expression, position {exc.column}"
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ExpressionProblem(f"{what} {shown!r}: {exc.message}{at}") from None


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled `expr`; `names` are the variables it reads, as the formula spells them."""

    text: str
    formula: Formula = field(compare=False)
    names: frozenset[str] = field(compare=False)

    def evaluate(self, values: Mapping[str, float] | DefinitionValues) -> float:
        """Value for the given variables; KeyError names a variable that has no value."""
        ctx = values if isinstance(values, DefinitionValues) else DefinitionValues(values)
        for name in self.names:
            if name not in ctx:
                raise KeyError(name)
        return self.formula.evaluate(ctx)


def parse_expression(text: str) -> Expression:
    """Compile a formula for an `expr` variable; raises ExpressionProblem."""
    if not isinstance(text, str):
        raise ExpressionProblem("must be a string")
    if not text.strip():
        raise ExpressionProblem("expression is empty")
    formula = _compile(text, "expression")
    return Expression(text, formula, frozenset(ref.text for ref in formula.refs))


class Variable(Protocol):
    """What `expression_order` needs to know about a variable."""

    @property
    def name(self) -> str: ...

    @property
    def expr(self) -> Expression | None: ...

    @property
    def is_text(self) -> bool: ...


def expression_order(variables: Sequence[Variable]) -> tuple[str, ...]:
    """Names of the expression variables, each after the variables it reads.

    Raises ExpressionProblem (with the variable's name) for a name that is not a variable
    of the definition, names a text variable or is ambiguous, and for circles.
    """
    by_key: dict[str, list[Variable]] = {}
    for var in variables:
        by_key.setdefault(var.name.lower(), []).append(var)
    reads: dict[str, list[Variable]] = {}
    for var in variables:
        if var.expr is None:
            continue
        found: list[Variable] = []
        for ref in sorted(var.expr.names):
            targets = by_key.get(ref.lower(), [])
            if not targets:
                raise ExpressionProblem(
                    f"refers to {ref!r}, which is not a variable of this definition", var.name
                )
            if len(targets) > 1:
                spelt = ", ".join(repr(t.name) for t in targets)
                raise ExpressionProblem(f"{ref!r} may mean {spelt}; rename one", var.name)
            if targets[0].is_text:
                raise ExpressionProblem(f"refers to {ref!r}, which is text", var.name)
            found.append(targets[0])
        reads[var.name] = found

    order: list[str] = []
    state: dict[str, int] = {}  # 1 = being visited, 2 = placed
    for start in variables:
        if start.expr is None or start.name in state:
            continue
        # Depth-first with an explicit stack: a long chain must not hit the recursion limit.
        path: list[str] = [start.name]
        pending: list[Iterator[Variable]] = [iter(reads[start.name])]
        state[start.name] = 1
        while pending:
            target = next(pending[-1], None)
            if target is None:
                pending.pop()
                done = path.pop()
                state[done] = 2
                order.append(done)
                continue
            if target.expr is None or state.get(target.name) == 2:
                continue
            if state.get(target.name) == 1:
                cycle = " -> ".join([*path[path.index(target.name) :], target.name])
                raise ExpressionProblem(
                    f"expressions refer to each other in a circle: {cycle}", target.name
                )
            state[target.name] = 1
            path.append(target.name)
            pending.append(iter(reads[target.name]))
    return tuple(order)


# -- output templates ------------------------------------------------------------------------

_PLACEHOLDERS = frozenset({"address", "id"})


@dataclass(frozen=True, slots=True)
class _Field:
    name: str


@dataclass(frozen=True, slots=True)
class _Choice:
    test: Formula
    yes: str
    no: str


_Part: TypeAlias = str | Formula | _Field | _Choice


def _format(value: float) -> str:
    if not math.isfinite(value):
        return "0"
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass(frozen=True, slots=True)
class Template:
    """An output's address or body with its `${...}` parts compiled.

    `${address}` and `${id}` are the device's address and id; `${expr}` is the formula's
    value (an integer without decimals); `` ${if expr`yes`no} `` is `yes` when the
    formula is not 0, else `no`.
    """

    text: str
    parts: tuple[_Part, ...] = field(compare=False)

    @property
    def formulas(self) -> tuple[Formula, ...]:
        out: list[Formula] = []
        for part in self.parts:
            if isinstance(part, Formula):
                out.append(part)
            elif isinstance(part, _Choice):
                out.append(part.test)
        return tuple(out)

    def render(self, ctx: EvalContext, fields: Mapping[str, str]) -> str:
        """The text with every `${...}` replaced; `fields` gives `address` and `id`."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Formula):
                out.append(_format(part.evaluate(ctx)))
            elif isinstance(part, _Field):
                out.append(fields.get(part.name, ""))
            else:
                out.append(part.yes if part.test.evaluate(ctx) else part.no)
        return "".join(out)


def parse_template(text: str) -> Template:
    """Compile the `${...}` parts of an output text; raises ExpressionProblem."""
    parts: list[_Part] = []
    pos = 0
    while (start := text.find("${", pos)) >= 0:
        if start > pos:
            parts.append(text[pos:start])
        body = start + 2
        if text.startswith("if ", body):
            yes = text.find("`", body)
            no = text.find("`", yes + 1) if yes >= 0 else -1
            end = text.find("}", no + 1) if no >= 0 else -1
            if end < 0:
                raise ExpressionProblem(
                    f"'${{if' at position {start + 1} needs the form ${{if expr`yes`no}}"
                )
            test = _compile(text[body + 3 : yes], "expression")
            parts.append(_Choice(test, text[yes + 1 : no], text[no + 1 : end]))
        else:
            end = text.find("}", body)
            if end < 0:
                raise ExpressionProblem(f"'${{' at position {start + 1} is never closed")
            inner = text[body:end]
            if inner.strip() in _PLACEHOLDERS:
                parts.append(_Field(inner.strip()))
            else:
                parts.append(_compile(inner, "expression"))
        pos = end + 1
    if pos < len(text):
        parts.append(text[pos:])
    return Template(text, tuple(parts))
