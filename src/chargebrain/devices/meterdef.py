"""Meter definition files: parse, validate and load cFos-style meter descriptions.

A meter definition is a JSON5-ish text (`//` and `/* */` comments, `0x` hex numbers,
trailing commas, unquoted keys) with one object: global properties (`rtype`, `dev_type`,
`modbus_read`, ...) and one object per variable (`power_w`, `current_l1`, ...). This module
turns such a text into an immutable `MeterDefinition`, rejecting anything it cannot use with
a `MeterDefinitionError` that names the line and the field. It also holds the two small
languages a definition uses: the JSON query language (`a.b[0]["k"][{"id":3}].v`) and a tiny
arithmetic evaluator for `expr` variables (`+ - * /`, parentheses, numbers and the
definition's own variables). It loads the bundled and user definition directories (user
files override bundled ones with the same dev_type) and stores uploaded definitions.

This module must never talk to a device, and never write anything outside the user
definition directory it is given.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any, TypeAlias

log = logging.getLogger(__name__)

__all__ = [
    "KNOWN_VARIABLES",
    "Expression",
    "HttpAddress",
    "InputDef",
    "MType",
    "MeterDefinition",
    "MeterDefinitionError",
    "OutputDef",
    "Query",
    "QueryMiss",
    "RType",
    "RtuSettings",
    "TcpSettings",
    "ValueType",
    "Variable",
    "WordOrder",
    "builtin_definitions_dir",
    "delete_user_definition",
    "load_definition_file",
    "load_definitions",
    "parse_definition",
    "parse_expression",
    "parse_json5",
    "parse_query",
    "save_user_definition",
]

DEV_TYPE_PREFIX = "meter_"
MAX_DEFINITION_CHARS = 512 * 1024
MAX_NESTING = 64
MAX_NUMBER_CHARS = 64  # digits, sign, point and exponent of one number
MAX_EXPR_TOKENS = 256  # numbers, names and operators of one `expr`
MAX_VARIABLES = 256
MODBUS_MAX_READ = 125  # registers per FC3/FC4 request, by the Modbus protocol
MAX_INPUT_BITS = 32
MAX_OUTPUTS = 32

KNOWN_VARIABLES: frozenset[str] = frozenset(
    {
        "type_designation",
        "version",
        "firmware_version",
        "serial",
        "voltage_l1",
        "voltage_l2",
        "voltage_l3",
        "current_l1",
        "current_l2",
        "current_l3",
        "power_w",
        "power_var",
        "power_va",
        "power_w_l1",
        "power_w_l2",
        "power_w_l3",
        "power_var_l1",
        "power_var_l2",
        "power_var_l3",
        "import_wh",
        "export_wh",
        "soc",
    }
)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


class MeterDefinitionError(ValueError):
    """A meter definition cannot be used. Carries the line and field when known."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.field = field
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where: list[str] = []
        if self.source:
            where.append(self.source)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def with_source(self, source: str) -> MeterDefinitionError:
        return MeterDefinitionError(self.message, line=self.line, field=self.field, source=source)


# ---------------------------------------------------------------------------------------
# JSON5-ish reader
# ---------------------------------------------------------------------------------------

JsonPath: TypeAlias = tuple[str | int, ...]

_NUMBER_RE = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_IDENT_RE = re.compile(r"[A-Za-z_$*][A-Za-z0-9_$.*]*")
_ESCAPES = {
    '"': '"',
    "'": "'",
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


class _Json5Reader:
    """Recursive-descent reader that also remembers the line of every key."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.key_offsets: dict[JsonPath, int] = {}
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self._line_starts, offset)

    def fail(self, message: str, offset: int | None = None) -> MeterDefinitionError:
        at = self.pos if offset is None else offset
        line = self.line_of(at)
        column = at - self._line_starts[line - 1] + 1
        return MeterDefinitionError(f"{message} (column {column})", line=line)

    def skip_space(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch in " \t\r\n\ufeff\u00a0":
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.fail("comment '/*' is never closed")
                self.pos = end + 2
            else:
                return

    def read_document(self) -> Any:
        value = self.read_value((), 0)
        self.skip_space()
        if self.pos != len(self.text):
            raise self.fail("unexpected text after the end of the definition")
        return value

    def read_value(self, path: JsonPath, depth: int) -> Any:
        if depth > MAX_NESTING:
            raise self.fail("nesting too deep")
        self.skip_space()
        if self.pos >= len(self.text):
            raise self.fail("unexpected end of text, a value is missing")
        ch = self.text[self.pos]
        if ch == "{":
            return self._read_object(path, depth)
        if ch == "[":
            return self._read_array(path, depth)
        if ch in "\"'":
            return self._read_string()
        if ch in "+-.0123456789":
            return self._read_number()
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos) and not self._ident_continues(len(word)):
                self.pos += len(word)
                return value
        raise self.fail(f"unexpected character {ch!r}, a value is expected")

    def _ident_continues(self, length: int) -> bool:
        end = self.pos + length
        return end < len(self.text) and (self.text[end].isalnum() or self.text[end] == "_")

    def _read_object(self, path: JsonPath, depth: int) -> dict[str, Any]:
        start = self.pos
        self.pos += 1
        result: dict[str, Any] = {}
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.fail("object opened here is never closed", start)
            if self.text[self.pos] == "}":
                self.pos += 1
                return result
            key_at = self.pos
            key = self._read_key()
            if key in result:
                raise self.fail(f"duplicate key {key!r}", key_at)
            self.key_offsets[(*path, key)] = key_at
            self.skip_space()
            if not self.text.startswith(":", self.pos):
                raise self.fail(f"':' expected after key {key!r}")
            self.pos += 1
            result[key] = self.read_value((*path, key), depth + 1)
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.fail("object opened here is never closed", start)
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("}", self.pos):
                raise self.fail("',' or '}' expected")

    def _read_key(self) -> str:
        ch = self.text[self.pos]
        if ch in "\"'":
            return self._read_string()
        match = _IDENT_RE.match(self.text, self.pos)
        if not match:
            raise self.fail(f"unexpected character {ch!r}, a key is expected")
        self.pos = match.end()
        return match.group(0)

    def _read_array(self, path: JsonPath, depth: int) -> list[Any]:
        start = self.pos
        self.pos += 1
        result: list[Any] = []
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.fail("array opened here is never closed", start)
            if self.text[self.pos] == "]":
                self.pos += 1
                return result
            self.key_offsets[(*path, len(result))] = self.pos
            result.append(self.read_value((*path, len(result)), depth + 1))
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.fail("array opened here is never closed", start)
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("]", self.pos):
                raise self.fail("',' or ']' expected")

    def _read_string(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        out: list[str] = []
        text, n = self.text, len(self.text)
        while True:
            if self.pos >= n:
                raise self.fail("string is never closed", start)
            ch = text[self.pos]
            if ch == quote:
                self.pos += 1
                return "".join(out)
            if ch == "\n":
                raise self.fail("line break inside a string", start)
            if ch == "\\":
                esc = text[self.pos + 1 : self.pos + 2]
                if esc in _ESCAPES:
                    out.append(_ESCAPES[esc])
                    self.pos += 2
                elif esc == "u":
                    out.append(self._read_unicode_escape())
                else:
                    raise self.fail(f"unknown escape \\{esc}")
                continue
            out.append(ch)
            self.pos += 1

    def _hex4(self, at: int) -> int | None:
        digits = self.text[at : at + 4]
        return int(digits, 16) if re.fullmatch(r"[0-9a-fA-F]{4}", digits) else None

    def _read_unicode_escape(self) -> str:
        """`\\uXXXX` at pos, or a surrogate pair `\\uD83D\\uDE97` as one character; a
        lone surrogate is no text (it could be neither stored nor answered)."""
        start = self.pos
        code = self._hex4(self.pos + 2)
        if code is None:
            raise self.fail("bad \\u escape")
        self.pos += 6
        if 0xD800 <= code < 0xDC00 and self.text.startswith("\\u", self.pos):
            low = self._hex4(self.pos + 2)
            if low is not None and 0xDC00 <= low < 0xE000:
                self.pos += 6
                return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
        if 0xD800 <= code < 0xE000:
            raise self.fail("\\u escape of a lone UTF-16 surrogate", start)
        return chr(code)

    def _read_number(self) -> int | float:
        match = _NUMBER_RE.match(self.text, self.pos)
        if not match:
            raise self.fail("malformed number")
        token = match.group(0)
        if len(token) > MAX_NUMBER_CHARS:
            raise self.fail(f"number longer than {MAX_NUMBER_CHARS} characters")
        self.pos = match.end()
        if self._ident_continues(0):
            raise self.fail(f"malformed number {token + self.text[self.pos]!r}")
        sign = -1 if token.startswith("-") else 1
        body = token.lstrip("+-")
        if body[:2] in ("0x", "0X"):
            return sign * int(body, 16)
        if re.fullmatch(r"\d+", body):
            return sign * int(body)
        value = float(body)
        if not math.isfinite(value):
            raise self.fail(f"number {token} out of range")
        return sign * value


def parse_json5(text: str) -> Any:
    """Parse a JSON5-ish text (comments, hex numbers, trailing commas, unquoted keys)."""
    return _Json5Reader(text).read_document()


# ---------------------------------------------------------------------------------------
# Query language
# ---------------------------------------------------------------------------------------


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
    numeric = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, numeric) and isinstance(b, numeric):
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


def parse_query(text: str) -> Query:
    """Compile a query; raises MeterDefinitionError on bad syntax."""
    steps: list[_Step] = []
    pos, n = 0, len(text)

    def fail(message: str) -> MeterDefinitionError:
        return MeterDefinitionError(f"query {text!r}: {message} at position {pos + 1}")

    expect_name = True
    while pos < n:
        ch = text[pos]
        if ch.isspace():
            pos += 1
            continue
        if ch == "[":
            reader = _Json5Reader(text)
            reader.pos = pos + 1
            reader.skip_space()
            value_at = reader.pos
            try:
                value = reader.read_value((), 0)
            except MeterDefinitionError:
                pos = value_at
                raise fail("bad index, expected a number, a string or an object") from None
            reader.skip_space()
            if not text.startswith("]", reader.pos):
                pos = reader.pos
                raise fail("']' expected")
            if isinstance(value, bool) or not isinstance(value, (int, str, dict)):
                pos = value_at
                raise fail("index must be an integer, a string or an object")
            if isinstance(value, int):
                steps.append(_Index(value))
            elif isinstance(value, str):
                steps.append(_Key(value))
            else:
                if not value:
                    pos = value_at
                    raise fail("an element selector needs at least one field")
                steps.append(_Match(tuple(value.items())))
            pos = reader.pos + 1
            expect_name = False
            continue
        if ch == ".":
            if expect_name:
                raise fail("name expected before '.'")
            pos += 1
            expect_name = True
            while pos < n and text[pos].isspace():
                pos += 1
            start = pos
            while pos < n and text[pos] not in ".[" and not text[pos].isspace():
                pos += 1
            if start == pos:
                raise fail("name expected after '.'")
            steps.append(_Key(text[start:pos]))
            expect_name = False
            continue
        if not expect_name or steps:
            raise fail(f"unexpected {ch!r}")
        start = pos
        while pos < n and text[pos] not in ".[" and not text[pos].isspace():
            pos += 1
        steps.append(_Key(text[start:pos]))
        expect_name = False
    if expect_name and steps:
        raise fail("name expected")
    return Query(text=text, steps=tuple(steps))


# ---------------------------------------------------------------------------------------
# Tiny arithmetic for `expr` variables
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Num:
    value: float


@dataclass(frozen=True, slots=True)
class _Name:
    name: str


@dataclass(frozen=True, slots=True)
class _Neg:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _Bin:
    op: str
    left: _Node
    right: _Node


_Node: TypeAlias = "_Num | _Name | _Neg | _Bin"

_EXPR_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<op>[-+*/()]))"
)


def _evaluate(node: _Node, env: Mapping[str, float]) -> float:
    if isinstance(node, _Num):
        return node.value
    if isinstance(node, _Name):
        return env[node.name]
    if isinstance(node, _Neg):
        return -_evaluate(node.operand, env)
    left = _evaluate(node.left, env)
    right = _evaluate(node.right, env)
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    # A zero divisor (a voltage of 0 V at night, say) yields 0 rather than an error.
    return left / right if right else 0.0


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled `expr`: numbers, variable names, `+ - * /`, unary minus, parentheses."""

    text: str
    tree: _Node
    names: frozenset[str]

    def evaluate(self, env: Mapping[str, float]) -> float:
        """Value for the given variables; raises KeyError for a name missing from `env`."""
        return _evaluate(self.tree, env)


def parse_expression(text: str) -> Expression:
    """Compile an arithmetic expression; raises MeterDefinitionError on bad syntax."""
    call = re.search(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(", text)
    if call:
        raise MeterDefinitionError(
            f"expression {text!r}: function {call.group(1)!r} is not supported; only numbers, "
            "variable names, + - * / and parentheses are"
        )
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    stripped_end = len(text.rstrip())
    while pos < stripped_end:
        match = _EXPR_TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            bad = text[pos:].lstrip()[:1]
            raise MeterDefinitionError(
                f"expression {text!r}: unexpected {bad!r} at position {pos + 1}; only numbers, "
                "variable names, + - * / and parentheses are supported"
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
        if len(tokens) > MAX_EXPR_TOKENS:
            # A flat sum is a tree as deep as it is long: evaluating it recurses per term.
            raise MeterDefinitionError(
                f"expression too long (more than {MAX_EXPR_TOKENS} numbers, names and "
                "operators)"
            )
    names: set[str] = set()
    index = 0
    depth = 0  # open parentheses and unary signs around the atom being read

    def fail(message: str) -> MeterDefinitionError:
        where = tokens[index][2] + 1 if index < len(tokens) else len(text) + 1
        return MeterDefinitionError(f"expression {text!r}: {message} at position {where}")

    def peek() -> tuple[str, str, int] | None:
        return tokens[index] if index < len(tokens) else None

    def sum_() -> _Node:
        nonlocal index
        node = product()
        while (tok := peek()) is not None and tok[1] in ("+", "-") and tok[0] == "op":
            index += 1
            node = _Bin(tok[1], node, product())
        return node

    def product() -> _Node:
        nonlocal index
        node = unary()
        while (tok := peek()) is not None and tok[1] in ("*", "/") and tok[0] == "op":
            index += 1
            node = _Bin(tok[1], node, unary())
        return node

    def nest() -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_NESTING:
            raise fail(f"nested too deeply (more than {MAX_NESTING} levels)")

    def unary() -> _Node:
        nonlocal index, depth
        tok = peek()
        if tok is not None and tok[0] == "op" and tok[1] in ("+", "-"):
            index += 1
            nest()
            operand = unary()
            depth -= 1
            return _Neg(operand) if tok[1] == "-" else operand
        return atom()

    def atom() -> _Node:
        nonlocal index, depth
        tok = peek()
        if tok is None:
            raise fail("unexpected end, a value is missing")
        kind, value, _ = tok
        index += 1
        if kind == "num":
            try:
                number = float(int(value, 16) if value[:2] in ("0x", "0X") else value)
            except OverflowError:  # a hex integer beyond any float
                number = math.inf
            if not math.isfinite(number):
                index -= 1
                raise fail(f"number {value[:20]} out of range")
            return _Num(number)
        if kind == "name":
            if value in ("nan", "inf"):
                raise fail(f"{value!r} is not a variable")
            names.add(value)
            return _Name(value)
        if value == "(":
            nest()
            node = sum_()
            closing = peek()
            if closing is None or closing[1] != ")":
                raise fail("')' expected")
            index += 1
            depth -= 1
            return node
        index -= 1
        raise fail(f"unexpected {value!r}")

    if not tokens:
        raise MeterDefinitionError("expression is empty")
    tree = sum_()
    if index != len(tokens):
        raise fail(f"unexpected {tokens[index][1]!r}")
    return Expression(text=text, tree=tree, names=frozenset(names))


# ---------------------------------------------------------------------------------------
# The definition model
# ---------------------------------------------------------------------------------------


class RType(IntEnum):
    """How the meter is read."""

    MODBUS = 0
    HTTP = 1
    MQTT = 2


class MType(IntEnum):
    """What the device is."""

    OTHER = 0
    METER = 1
    INVERTER = 2
    BATTERY = 4


class ValueType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT = "float"
    INT64 = "int64"
    UINT64 = "uint64"
    STRING = "string"

    @property
    def registers(self) -> int:
        """Registers one value occupies (strings: see Variable.register_count)."""
        return {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float": 2}.get(self.value, 4)

    @property
    def signed(self) -> bool:
        return self in (ValueType.INT16, ValueType.INT32, ValueType.INT64, ValueType.FLOAT)


class WordOrder(StrEnum):
    HIGH_FIRST = "hl"
    LOW_FIRST = "lh"


@dataclass(frozen=True, slots=True)
class RtuSettings:
    silence_period_ms: int = 0
    silence_same_slave: bool = False
    retries: int = 0
    rcv_timeout_ms: int = 0


@dataclass(frozen=True, slots=True)
class TcpSettings:
    connect_timeout_ms: int = 0  # 0 = the driver's timeout
    delay_after_connect_ms: int = 0


@dataclass(frozen=True, slots=True)
class HttpAddress:
    """`GET /status` → method GET, path /status. `path` may also be an absolute URL."""

    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Variable:
    """One named value of a meter and where it comes from (fixed, expr or the device)."""

    name: str
    type: ValueType = ValueType.INT16
    resolution: float = 1.0
    order: WordOrder = WordOrder.HIGH_FIRST
    register: int | None = None  # Modbus register number (rtype 0)
    http: HttpAddress | None = None  # HTTP request (rtype 1)
    topic: str | None = None  # MQTT topic (rtype 2)
    length: int | None = None
    query: Query | None = None
    regex: re.Pattern[str] | None = None
    fixed: str | float | None = None
    expr: Expression | None = None
    once: bool = False
    reserved: tuple[int, ...] | None = None  # None: the definition's global list applies
    line: int | None = None

    @property
    def is_read(self) -> bool:
        """True if the value comes from the device (not `fixed`, not `expr`)."""
        return self.fixed is None and self.expr is None

    @property
    def is_text(self) -> bool:
        """True if the value is a string (a string type, a text `fixed`, or version format)."""
        if self.fixed is not None:
            return isinstance(self.fixed, str)
        if self.expr is not None:
            return False
        return self.type is ValueType.STRING or self.length is not None

    @property
    def register_count(self) -> int:
        if self.type is ValueType.STRING:
            return self.length or 1
        return self.type.registers

    @property
    def shown_in_tile(self) -> bool:
        return self.name.startswith("*")

    @property
    def is_cm_variable(self) -> bool:
        return self.name[:3].upper() == "CM."


@dataclass(frozen=True, slots=True)
class InputDef:
    """A group of `count` digital inputs (bits, least significant first)."""

    count: int = 1
    register: int | None = None
    http: HttpAddress | None = None
    topic: str | None = None
    query: Query | None = None


@dataclass(frozen=True, slots=True)
class OutputDef:
    """An output (or reset) template; kept for the output writer, not used for reading."""

    address: str
    body: str | None = None


@dataclass(frozen=True, slots=True)
class MeterDefinition:
    dev_type: str
    name: str
    rtype: RType
    mtype: MType = MType.METER
    manufacturer: str = ""
    rtu: RtuSettings = field(default_factory=RtuSettings)
    tcp: TcpSettings = field(default_factory=TcpSettings)
    modbus_read: int = 3
    modbus_read_max_registers: int = MODBUS_MAX_READ
    modbus_write: int = 16
    modbus_write_max_registers: int = 123
    modbus_allow_gaps: bool = False
    upd_delay_ms: int = 0
    delay_accumulated: bool = False
    ui_addr: str = ""
    reserved: tuple[int, ...] = ()
    variables: tuple[Variable, ...] = ()
    expr_order: tuple[str, ...] = ()  # names of expr variables, dependencies first
    inputs: tuple[InputDef, ...] = ()
    outputs: tuple[OutputDef, ...] = ()
    resets: tuple[OutputDef, ...] = ()
    ignored_properties: tuple[str, ...] = ()

    def variable(self, name: str) -> Variable | None:
        for var in self.variables:
            if var.name == name:
                return var
        return None

    @property
    def variable_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    @property
    def read_max_registers(self) -> int:
        """Registers per read request, capped at the protocol limit of 125."""
        return min(self.modbus_read_max_registers, MODBUS_MAX_READ)

    @property
    def input_count(self) -> int:
        return sum(i.count for i in self.inputs)


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------

_GLOBAL_KEYS = frozenset(
    {
        "rtype",
        "mtype",
        "name",
        "manufacturer",
        "dev_type",
        "rtu",
        "tcp",
        "modbus_read",
        "modbus_read_max_registers",
        "modbus_write",
        "modbus_write_max_registers",
        "modbus_allow_gaps",
        "upd_delay",
        "delay_accumulated",
        "ui_addr",
        "reserved",
        "inputs",
        "outputs",
        "resets",
    }
)
_VARIABLE_KEYS = frozenset(
    {
        "fixed",
        "expr",
        "type",
        "resolution",
        "once",
        "address",
        "query",
        "order",
        "length",
        "regex",
        "reserved",
    }
)
_DEV_TYPE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HTTP_METHOD_RE = re.compile(r"(?i)^(GET|POST|PUT)\s+(\S.*)$")


class _Validator:
    def __init__(self, reader: _Json5Reader) -> None:
        self.reader = reader

    def fail(self, path: JsonPath, message: str) -> MeterDefinitionError:
        line = None
        probe = path
        while probe:
            offset = self.reader.key_offsets.get(probe)
            if offset is not None:
                line = self.reader.line_of(offset)
                break
            probe = probe[:-1]
        name = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
        return MeterDefinitionError(message, line=line, field=name.replace(".[", "[") or None)

    def line(self, path: JsonPath) -> int | None:
        offset = self.reader.key_offsets.get(path)
        return None if offset is None else self.reader.line_of(offset)

    # -- scalar values --

    def integer(
        self, obj: Mapping[str, Any], key: str, path: JsonPath, default: int, lo: int, hi: int
    ) -> int:
        value = obj.get(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail((*path, key), f"must be an integer, not {_kind(value)}")
        if not lo <= value <= hi:
            raise self.fail((*path, key), f"{value} is out of range {lo}..{hi}")
        return int(value)

    def choice(
        self, obj: Mapping[str, Any], key: str, path: JsonPath, default: int, allowed: Iterable[int]
    ) -> int:
        allowed = tuple(allowed)
        value = self.integer(obj, key, path, default, min(allowed), max(allowed))
        if value not in allowed:
            raise self.fail((*path, key), f"{value} is not one of {', '.join(map(str, allowed))}")
        return value

    def boolean(self, obj: Mapping[str, Any], key: str, path: JsonPath, default: bool) -> bool:
        value = obj.get(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.fail((*path, key), f"must be true or false, not {_kind(value)}")

    def string(self, obj: Mapping[str, Any], key: str, path: JsonPath, default: str) -> str:
        value = obj.get(key, default)
        if not isinstance(value, str):
            raise self.fail((*path, key), f"must be a string, not {_kind(value)}")
        return value

    def number(self, obj: Mapping[str, Any], key: str, path: JsonPath, default: float) -> float:
        value = obj.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail((*path, key), f"must be a number, not {_kind(value)}")
        if not math.isfinite(value):
            raise self.fail((*path, key), "must be a finite number")
        return float(value)

    def reserved_list(self, value: Any, path: JsonPath) -> tuple[int, ...]:
        items = value if isinstance(value, list) else [value]
        out: list[int] = []
        for i, item in enumerate(items):
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            if isinstance(item, bool) or not isinstance(item, int):
                where = (*path, i) if isinstance(value, list) else path
                raise self.fail(where, f"reserved values must be integers, not {_kind(item)}")
            out.append(item)
        return tuple(out)

    def http_address(self, value: Any, path: JsonPath) -> HttpAddress:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(
                path, 'an HTTP address must be a path like "/status" or "GET /emeter/0"'
            )
        text = value.strip()
        method = "GET"
        match = _HTTP_METHOD_RE.match(text)
        if match:
            method, text = match.group(1).upper(), match.group(2).strip()
        if not (text.startswith("/") or re.match(r"(?i)https?://", text)):
            raise self.fail(
                path,
                f"HTTP address {value!r} must start with '/' (optionally "
                "after GET or POST) or be an http:// URL",
            )
        return HttpAddress(method=method, path=text)

    def query(self, value: Any, path: JsonPath) -> Query:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, not {_kind(value)}")
        try:
            return parse_query(value)
        except MeterDefinitionError as exc:
            raise self.fail(path, exc.message) from None

    # -- the document --

    def definition(self, doc: Any) -> MeterDefinition:
        if not isinstance(doc, dict):
            raise MeterDefinitionError(
                f"a meter definition is one JSON object, not {_kind(doc)}", line=1
            )
        if "rtype" not in doc:
            raise MeterDefinitionError(
                "'rtype' is missing (0 Modbus, 1 HTTP/JSON, 2 MQTT)", field="rtype"
            )
        rtype = RType(self.choice(doc, "rtype", (), 0, (0, 1, 2)))
        raw_dev_type = doc.get("dev_type")
        if raw_dev_type is None:
            raise MeterDefinitionError("'dev_type' is missing", field="dev_type")
        if not isinstance(raw_dev_type, str) or not _DEV_TYPE_RE.fullmatch(raw_dev_type):
            raise self.fail(
                ("dev_type",), "must be 1..64 characters of letters, digits, '_' or '-'"
            )
        dev_type = (
            raw_dev_type
            if raw_dev_type.startswith(DEV_TYPE_PREFIX)
            else DEV_TYPE_PREFIX + raw_dev_type
        )
        name = self.string(doc, "name", (), raw_dev_type).strip() or raw_dev_type
        mtype = MType(self.choice(doc, "mtype", (), 1, (0, 1, 2, 4)))
        rtu_obj = self.sub_object(doc, "rtu")
        rtu = RtuSettings(
            silence_period_ms=self.integer(rtu_obj, "silence_period", ("rtu",), 0, 0, 60_000),
            silence_same_slave=self.boolean(rtu_obj, "silence_same_slave", ("rtu",), False),
            retries=self.integer(rtu_obj, "retries", ("rtu",), 0, 0, 100),
            rcv_timeout_ms=self.integer(rtu_obj, "rcv_timeout", ("rtu",), 0, 0, 600_000),
        )
        tcp_obj = self.sub_object(doc, "tcp")
        tcp = TcpSettings(
            connect_timeout_ms=self.integer(tcp_obj, "connect_timeout", ("tcp",), 0, 0, 600_000),
            delay_after_connect_ms=self.integer(
                tcp_obj, "delay_after_connect", ("tcp",), 0, 0, 60_000
            ),
        )
        max_read = self.integer(doc, "modbus_read_max_registers", (), MODBUS_MAX_READ, 1, 65535)
        reserved = self.reserved_list(doc["reserved"], ("reserved",)) if "reserved" in doc else ()

        variables: list[Variable] = []
        ignored: list[str] = []
        for key, value in doc.items():
            if key in _GLOBAL_KEYS:
                continue
            if isinstance(value, dict):
                if len(variables) == MAX_VARIABLES:
                    raise self.fail((key,), f"more than {MAX_VARIABLES} variables")
                variables.append(self.variable(key, value, rtype, min(max_read, MODBUS_MAX_READ)))
            else:
                ignored.append(key)
        if ignored:
            log.info("meter definition %s: ignoring unknown properties %s", dev_type, ignored)
        expr_order = self.expression_order(variables)
        inputs = self.inputs(doc.get("inputs", []), rtype)
        return MeterDefinition(
            dev_type=dev_type,
            name=name,
            rtype=rtype,
            mtype=mtype,
            manufacturer=self.string(doc, "manufacturer", (), ""),
            rtu=rtu,
            tcp=tcp,
            modbus_read=self.choice(doc, "modbus_read", (), 3, (3, 4)),
            modbus_read_max_registers=max_read,
            modbus_write=self.choice(doc, "modbus_write", (), 16, (6, 16)),
            modbus_write_max_registers=self.integer(
                doc, "modbus_write_max_registers", (), 123, 1, 65535
            ),
            modbus_allow_gaps=self.boolean(doc, "modbus_allow_gaps", (), False),
            upd_delay_ms=self.integer(doc, "upd_delay", (), 0, 0, 3_600_000),
            delay_accumulated=self.boolean(doc, "delay_accumulated", (), False),
            ui_addr=self.string(doc, "ui_addr", (), ""),
            reserved=reserved,
            variables=tuple(variables),
            expr_order=expr_order,
            inputs=inputs,
            outputs=self.outputs(doc.get("outputs", []), "outputs"),
            resets=self.outputs(doc.get("resets", []), "resets"),
            ignored_properties=tuple(ignored),
        )

    def sub_object(self, doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise self.fail((key,), f"must be an object, not {_kind(value)}")
        return value

    def variable(self, name: str, obj: Mapping[str, Any], rtype: RType, max_read: int) -> Variable:
        path: JsonPath = (name,)
        unknown = sorted(set(obj) - _VARIABLE_KEYS)
        if unknown:
            raise self.fail(
                (name, unknown[0]),
                f"unknown variable property {unknown[0]!r} "
                f"(known: {', '.join(sorted(_VARIABLE_KEYS))})",
            )
        type_name = self.string(obj, "type", path, "int16" if rtype is RType.MODBUS else "float")
        try:
            vtype = ValueType(type_name.lower())
        except ValueError:
            raise self.fail(
                (name, "type"),
                f"unknown type {type_name!r} (expected one of "
                f"{', '.join(t.value for t in ValueType)})",
            ) from None
        order_name = self.string(obj, "order", path, "hl")
        try:
            order = WordOrder(order_name.lower())
        except ValueError:
            raise self.fail(
                (name, "order"), f'order must be "hl" or "lh", not {order_name!r}'
            ) from None
        resolution = self.number(obj, "resolution", path, 1.0)
        if resolution == 0:
            raise self.fail((name, "resolution"), "must not be 0")
        length: int | None = None
        if "length" in obj:
            length = self.integer(obj, "length", path, 1, 1, max_read)
            if vtype is not ValueType.STRING and length not in (2, 4):
                raise self.fail(
                    (name, "length"),
                    "for numbers, length formats a version and must be 2 (a.b) or 4 (a.b.c.d)",
                )
        reserved = (
            self.reserved_list(obj["reserved"], (name, "reserved")) if ("reserved" in obj) else None
        )
        common: dict[str, Any] = {
            "name": name,
            "type": vtype,
            "resolution": resolution,
            "order": order,
            "length": length,
            "once": self.boolean(obj, "once", path, False),
            "reserved": reserved,
            "line": self.line(path),
        }
        if "fixed" in obj:
            fixed = obj["fixed"]
            if isinstance(fixed, bool) or not isinstance(fixed, (str, int, float)):
                raise self.fail(
                    (name, "fixed"), f"must be a string or a number, not {_kind(fixed)}"
                )
            return Variable(fixed=fixed if isinstance(fixed, str) else float(fixed), **common)
        if "expr" in obj:
            text = obj["expr"]
            if not isinstance(text, str):
                raise self.fail((name, "expr"), f"must be a string, not {_kind(text)}")
            try:
                expression = parse_expression(text)
            except MeterDefinitionError as exc:
                raise self.fail((name, "expr"), exc.message) from None
            return Variable(expr=expression, **common)
        if "address" not in obj:
            raise self.fail(path, "needs an 'address' (or 'fixed' or 'expr')")
        address = obj["address"]
        if rtype is RType.MODBUS:
            for key in ("query", "regex"):
                if key in obj:
                    raise self.fail((name, key), f"'{key}' is for HTTP and MQTT meters only")
            register = self.integer(obj, "address", path, 0, 0, 0xFFFF)
            if vtype is ValueType.STRING and length is None:
                raise self.fail(path, "a Modbus string needs 'length' (number of registers)")
            var = Variable(register=register, **common)
            if var.register_count > max_read:
                raise self.fail(
                    path,
                    f"spans {var.register_count} registers, more than the "
                    f"{max_read} one request may read",
                )
            if register + var.register_count > 0x10000:
                raise self.fail((name, "address"), "registers run past 65535")
            return var
        query = self.query(obj["query"], (name, "query")) if "query" in obj else None
        regex = None
        if "regex" in obj:
            pattern = obj["regex"]
            if not isinstance(pattern, str):
                raise self.fail((name, "regex"), f"must be a string, not {_kind(pattern)}")
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise self.fail((name, "regex"), f"bad regular expression: {exc}") from None
            except (RecursionError, OverflowError):
                raise self.fail(
                    (name, "regex"), "bad regular expression: nested too deeply or too large"
                ) from None
        if rtype is RType.HTTP:
            http = self.http_address(address, (name, "address"))
            return Variable(http=http, query=query, regex=regex, **common)
        if not isinstance(address, str) or not address.strip():
            raise self.fail((name, "address"), "an MQTT address must be a topic string")
        return Variable(topic=address.strip(), query=query, regex=regex, **common)

    def expression_order(self, variables: list[Variable]) -> tuple[str, ...]:
        by_name = {v.name: v for v in variables}
        for var in variables:
            if var.expr is None:
                continue
            for ref in sorted(var.expr.names):
                target = by_name.get(ref)
                if target is None:
                    raise self.fail(
                        (var.name, "expr"),
                        f"refers to {ref!r}, which is not a variable of this definition",
                    )
                if target.is_text:
                    raise self.fail((var.name, "expr"), f"refers to {ref!r}, which is text")
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(var: Variable, chain: list[str]) -> None:
            if var.expr is None or state.get(var.name) == 2:
                return
            if state.get(var.name) == 1:
                cycle = " -> ".join([*chain[chain.index(var.name) :], var.name])
                raise self.fail(
                    (var.name, "expr"), f"expressions refer to each other in a circle: {cycle}"
                )
            state[var.name] = 1
            for ref in sorted(var.expr.names):
                visit(by_name[ref], [*chain, var.name])
            state[var.name] = 2
            order.append(var.name)

        for var in variables:
            visit(var, [])
        return tuple(order)

    def inputs(self, value: Any, rtype: RType) -> tuple[InputDef, ...]:
        if not isinstance(value, list):
            raise self.fail(("inputs",), f"must be an array, not {_kind(value)}")
        out: list[InputDef] = []
        for i, item in enumerate(value):
            path: JsonPath = ("inputs", i)
            if not isinstance(item, dict):
                raise self.fail(path, f"an input must be an object, not {_kind(item)}")
            unknown = sorted(set(item) - {"address", "count", "query"})
            if unknown:
                raise self.fail((*path, unknown[0]), f"unknown input property {unknown[0]!r}")
            if "address" not in item:
                raise self.fail(path, "an input needs an 'address'")
            if rtype is RType.MODBUS:
                count = self.integer(item, "count", path, 1, 1, 16)
                register = self.integer(item, "address", path, 0, 0, 0xFFFF)
                if "query" in item:
                    raise self.fail((*path, "query"), "'query' is for HTTP and MQTT meters only")
                out.append(InputDef(count=count, register=register))
                continue
            count = self.integer(item, "count", path, 1, 1, MAX_INPUT_BITS)
            query = self.query(item["query"], (*path, "query")) if "query" in item else None
            if rtype is RType.HTTP:
                http = self.http_address(item["address"], (*path, "address"))
                out.append(InputDef(count=count, http=http, query=query))
            else:
                topic = self.string(item, "address", path, "")
                if not topic.strip():
                    raise self.fail((*path, "address"), "an MQTT address must be a topic")
                out.append(InputDef(count=count, topic=topic.strip(), query=query))
        if sum(i.count for i in out) > MAX_INPUT_BITS:
            raise self.fail(("inputs",), f"more than {MAX_INPUT_BITS} input bits")
        return tuple(out)

    def outputs(self, value: Any, key: str) -> tuple[OutputDef, ...]:
        if not isinstance(value, list):
            raise self.fail((key,), f"must be an array, not {_kind(value)}")
        if len(value) > MAX_OUTPUTS:
            raise self.fail((key,), f"more than {MAX_OUTPUTS} entries")
        out: list[OutputDef] = []
        for i, item in enumerate(value):
            path: JsonPath = (key, i)
            if not isinstance(item, dict):
                raise self.fail(path, f"must be an object, not {_kind(item)}")
            unknown = sorted(set(item) - {"address", "body"})
            if unknown:
                raise self.fail((*path, unknown[0]), f"unknown property {unknown[0]!r}")
            address = self.string(item, "address", path, "")
            body = item.get("body")
            if body is not None and not isinstance(body, str):
                raise self.fail((*path, "body"), f"must be a string, not {_kind(body)}")
            out.append(OutputDef(address=address, body=body))
        return tuple(out)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_definition(text: str | bytes, *, source: str | None = None) -> MeterDefinition:
    """Parse and validate one definition text; raises MeterDefinitionError."""
    try:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise MeterDefinitionError(f"not UTF-8 text: {exc}") from None
        if len(text) > MAX_DEFINITION_CHARS:
            raise MeterDefinitionError(
                f"definition too large ({len(text)} characters, at most {MAX_DEFINITION_CHARS})"
            )
        reader = _Json5Reader(text)
        reader.skip_space()
        if reader.pos >= len(text):
            raise MeterDefinitionError("definition is empty")
        doc = reader.read_document()
        return _Validator(reader).definition(doc)
    except MeterDefinitionError as exc:
        if source and not exc.source:
            raise exc.with_source(source) from None
        raise


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def builtin_definitions_dir() -> Path:
    """The directory of the definitions bundled with chargebrain."""
    return Path(__file__).resolve().parent.parent / "meterdefs"


def load_definition_file(path: Path) -> MeterDefinition:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise MeterDefinitionError(f"cannot read file: {exc.strerror}", source=path.name) from exc
    return parse_definition(text, source=path.name)


def _load_dir(
    directory: Path, strict: bool, errors: list[MeterDefinitionError] | None
) -> dict[str, MeterDefinition]:
    found: list[tuple[Path, MeterDefinition]] = []
    for path in sorted(directory.glob("*.json")):
        if not path.is_file():
            continue
        try:
            found.append((path, load_definition_file(path)))
        except MeterDefinitionError as exc:
            if strict:
                raise
            log.warning("skipping meter definition: %s", exc)
            if errors is not None:
                errors.append(exc)
    # A file named after its dev_type wins over other files declaring the same dev_type.
    found.sort(key=lambda item: (item[0].stem == item[1].dev_type, item[0].name))
    result: dict[str, MeterDefinition] = {}
    for path, definition in found:
        if definition.dev_type in result:
            if strict:
                raise MeterDefinitionError(
                    f"dev_type {definition.dev_type!r} is defined twice", source=path.name
                )
            log.warning(
                "%s: dev_type %s also defined by another file; this one wins",
                path.name,
                definition.dev_type,
            )
        result[definition.dev_type] = definition
    return result


def load_definitions(
    builtin_dir: Path | None = None,
    user_dir: Path | None = None,
    *,
    errors: list[MeterDefinitionError] | None = None,
) -> dict[str, MeterDefinition]:
    """All definitions by dev_type; user files override bundled ones with the same dev_type.

    A broken bundled file raises MeterDefinitionError. A broken user file is skipped (logged,
    and appended to `errors` when given) so one bad upload cannot stop the others.
    """
    builtin = builtin_dir if builtin_dir is not None else builtin_definitions_dir()
    result = _load_dir(builtin, strict=True, errors=errors) if builtin.is_dir() else {}
    if user_dir is not None and user_dir.is_dir():
        result.update(_load_dir(user_dir, strict=False, errors=errors))
    return result


def save_user_definition(user_dir: Path, text: str | bytes) -> MeterDefinition:
    """Validate `text` and store it as `<user_dir>/<dev_type>.json`, atomically.

    Raises MeterDefinitionError (and changes nothing) when the text is not a valid definition;
    OSError when the file cannot be written (a partial file is never left behind).
    """
    definition = parse_definition(text)
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    user_dir.mkdir(parents=True, exist_ok=True)
    target = user_dir / f"{definition.dev_type}.json"
    fd, tmp_name = tempfile.mkstemp(dir=user_dir, prefix=f".{definition.dev_type}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return definition


def delete_user_definition(user_dir: Path, dev_type: str) -> bool:
    """Remove the user file for `dev_type` (prefix optional); True if a file was removed."""
    if not dev_type.startswith(DEV_TYPE_PREFIX):
        dev_type = DEV_TYPE_PREFIX + dev_type
    if not _DEV_TYPE_RE.fullmatch(dev_type):
        return False
    target = user_dir / f"{dev_type}.json"
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    return True
