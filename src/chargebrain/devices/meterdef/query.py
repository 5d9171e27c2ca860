"""The JSON query language of HTTP meter definitions: compile once, select per answer.

| Form | Selects |
|---|---|
| `a`, `a.b` | key `a`; key `b` of `a` |
| `a[2]`, `a[-1]` | element of an array (negative counts from the end); on an object, key `"2"` |
| `a["u2"]`, `a['u2']` | key `u2` (any characters) |
| `a[{"el1":"v1","el2":3}].value` | the first element (of an array, or among an |
| | object's values) whose fields all equal the given ones |
| (empty) | the whole answer |

The text inside `[...]` is a JSON5 value read by `json5.read_value`, so the index forms
are exactly the definition file's own syntax. `Query.apply` raises `QueryMiss` naming the
step that found nothing; it never raises anything else.

This module must never do I/O or evaluate formulas.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

from chargebrain.devices.meterdef.errors import MeterDefinitionError
from chargebrain.devices.meterdef.json5 import read_value

__all__ = ["Query", "QueryMiss", "parse_query"]


class QueryMiss(LookupError):
    """A query selects nothing in a document."""


@dataclass(frozen=True, slots=True)
class _Key:
    name: str


@dataclass(frozen=True, slots=True)
class _Index:
    index: int


@dataclass(frozen=True, slots=True)
class _Match:
    fields: tuple[tuple[str, Any], ...]


_Step: TypeAlias = _Key | _Index | _Match


def _same(a: Any, b: Any) -> bool:
    """Numbers compare numerically (3 equals 3.0); `true` is not 1, "3" is not 3."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return bool(a == b)


@dataclass(frozen=True, slots=True)
class Query:
    """A compiled JSON query: `a`, `a.b`, `a[0]`, `a["u2"]`, `a[{"el":"v"}].value`."""

    text: str
    steps: tuple[_Step, ...]

    def apply(self, document: Any) -> Any:
        """The selected value; raises QueryMiss naming the first step that found nothing."""
        current = document
        for number, step in enumerate(self.steps):
            current = self._step(current, step, number)
        return current

    def _step(self, current: Any, step: _Step, number: int) -> Any:
        if isinstance(step, _Key):
            if isinstance(current, dict) and step.name in current:
                return current[step.name]
            raise QueryMiss(f"no key {step.name!r} ({self._where(number)})")
        if isinstance(step, _Index):
            if isinstance(current, list) and -len(current) <= step.index < len(current):
                return current[step.index]
            if isinstance(current, dict) and str(step.index) in current:
                return current[str(step.index)]
            raise QueryMiss(f"no element [{step.index}] ({self._where(number)})")
        candidates: Iterable[Any]
        if isinstance(current, list):
            candidates = current
        elif isinstance(current, dict):
            candidates = current.values()
        else:
            candidates = ()
        for element in candidates:
            if isinstance(element, dict) and all(
                k in element and _same(element[k], v) for k, v in step.fields
            ):
                return element
        raise QueryMiss(f"no element matches {dict(step.fields)} ({self._where(number)})")

    def _where(self, number: int) -> str:
        return f"step {number + 1} of query {self.text!r}"


_NAME_END = frozenset(".[ \t\r\n")
# The common steps, read in one match; anything else goes through the JSON5 reader.
_SIMPLE_STEP = re.compile(
    r"""\s*+(?:
        \.\s*+(?P<key>[^.\[\s]++)
      | \[\s*+(?:(?P<index>-?\d{1,9}+)|"(?P<dq>[^"\\\n]*+)"|'(?P<sq>[^'\\\n]*+)')\s*+\]
    )""",
    re.X,
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.steps: list[_Step] = []

    def fail(self, message: str, at: int | None = None) -> MeterDefinitionError:
        where = self.pos if at is None else at
        return MeterDefinitionError(f"query {self.text!r}: {message} at position {where + 1}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _NAME_END:
            self.pos += 1
        return self.text[start : self.pos]

    def index(self) -> _Step:
        text = self.text
        self.pos += 1
        self.skip_space()
        value_at = self.pos
        try:
            value, end = read_value(text, value_at)
        except MeterDefinitionError:
            raise self.fail("bad index, expected a number, a string or an object") from None
        self.pos = end
        self.skip_space()
        if not text.startswith("]", self.pos):
            raise self.fail("']' expected")
        self.pos += 1
        if isinstance(value, bool) or not isinstance(value, (int, str, dict)):
            raise self.fail("index must be an integer, a string or an object", value_at)
        if isinstance(value, int):
            return _Index(value)
        if isinstance(value, str):
            return _Key(value)
        if not value:
            raise self.fail("an element selector needs at least one field", value_at)
        return _Match(tuple(value.items()))

    def parse(self) -> Query:
        text = self.text
        steps = self.steps
        self.skip_space()
        if self.pos < len(text) and text[self.pos] == ".":
            raise self.fail("name expected before '.'")
        if self.pos < len(text) and text[self.pos] != "[":
            steps.append(_Key(self.name()))
        simple = _SIMPLE_STEP.match
        while True:
            m = simple(text, self.pos)
            if m is not None:
                self.pos = m.end()
                kind = m.lastgroup
                if kind == "index":
                    steps.append(_Index(int(m.group(kind))))
                else:
                    steps.append(_Key(m.group(kind or 0)))
                continue
            self.skip_space()
            if self.pos >= len(text):
                return Query(text=text, steps=tuple(steps))
            ch = text[self.pos]
            if ch == "[":
                steps.append(self.index())
            elif ch == ".":
                self.pos += 1
                self.skip_space()
                key = self.name()
                if not key:
                    raise self.fail("name expected after '.'")
                steps.append(_Key(key))
            else:
                raise self.fail(f"unexpected {ch!r}")


def parse_query(text: str) -> Query:
    """Compile a query; raises MeterDefinitionError on bad syntax."""
    return _Parser(text).parse()
