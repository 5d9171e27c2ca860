"""A JSON5-ish reader that remembers where every key and array element starts.

Meter definitions are JSON with `//` and `/* */` comments, `0x` hex numbers (also
negative), trailing commas, single-quoted strings, unquoted keys and numbers starting with
`+` or `.`. `read_document` returns the value and its `Positions`, which answer the line
of any path (`("current_l1", "resolution")` → 12), so every later error can name its line;
`read_value` reads one value inside other text (the `[...]` of a JSON query). Duplicate
keys are an error; nesting deeper than `MAX_NESTING` is an error (never a RecursionError).
Strings and numbers are read by `literals.py`, which also bounds them: a number longer
than `MAX_NUMBER_CHARS` or beyond a float and a lone UTF-16 surrogate are errors. Numbers
are `int` when written without fraction or exponent, else `float`.

Two readers give the same values:

* the fast one rewrites the JSON5 spellings to JSON with one regular expression (comments
  become blanks keeping their line breaks, hex numbers decimal, unquoted keys quoted,
  trailing commas dropped) and lets the standard library's C decoder do the rest (its
  numbers checked by hooks); only the offsets of the top-level keys are taken on the way;
* the exact one cuts the text into tokens and builds the value in a loop with an explicit
  stack (no recursion), recording the offset of every key and element. It runs when the
  fast one gives up (anything unusual, such as a number out of bounds or a `\\u` escape
  of a surrogate, and every syntax error, so messages name the line and column of the
  problem) and when a line below the top level is asked for.

This module must never validate what the values mean, and never evaluate anything.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from chargebrain.devices.meterdef.errors import MeterDefinitionError
from chargebrain.devices.meterdef.literals import (
    LONE_SURROGATE_HINT,
    error_at,
    json_float,
    json_int,
    read_number,
    read_string,
)

__all__ = ["MAX_NESTING", "Positions", "is_blank", "parse_json5", "read_document", "read_value"]

MAX_NESTING = 64

# -- the exact reader's tokens ------------------------------------------------------------

# Atomic and possessive: a token that fails to match must never make the engine retry
# shorter runs of whitespace or digits (that would take exponential or quadratic time).
_SKIP = r"(?>[ \t\r\n\ufeff\u00a0]++|//[^\n]*+|/\*.*?\*/)*+"
_NUMBER = r"[+-]?+(?:0[xX][0-9a-fA-F]++|(?:\d++(?:\.\d*+)?+|\.\d++)(?:[eE][+-]?+\d++)?+)"
_TOKEN = re.compile(
    _SKIP
    + r"""(?:
        (?P<p>[{}\[\]:,])
      | (?P<s>"(?:[^"\\\n]|\\.)*+"|'(?:[^'\\\n]|\\.)*+')
      | (?P<n>"""
    + _NUMBER
    + r""")(?!\w)
      | (?P<w>[A-Za-z_$*][A-Za-z0-9_$.*]*+)
      | (?P<end>\Z)
    )""",
    re.S | re.X,
)
_SKIP_RE = re.compile(_SKIP, re.S)
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}

# Parser states: what the next token may be.
_VALUE, _VALUE_OR_CLOSE, _KEY_OR_CLOSE, _COLON, _AFTER = range(5)

# -- the fast reader's rewriting ----------------------------------------------------------

# Runs of plain JSON (double-quoted strings, JSON numbers, literals, punctuation other
# than a trailing comma) are kept in one match; each match ends at one JSON5 spelling.
_PLAIN = (
    r'(?:"(?:[^"\\\n]|\\.)*+"'
    r"|[ \t\r\n{}\[\]:]++"
    r"|,(?![ \t\r\n]*+[}\]])"
    r"|-?+(?:0|[1-9]\d*+)(?:\.\d++)?+(?:[eE][+-]?+\d++)?+(?![\w.])"
    r"|(?:true|false|null)(?![\w$.*])"
    r")*+"
)
_REWRITE = re.compile(
    r"(?P<plain>" + _PLAIN + r")(?:"
    r"(?P<comment>//[^\n]*+|/\*.*?\*/)"
    r"|(?P<quoted>'(?:[^'\\\n]|\\.)*+')"
    r"|(?P<key>[A-Za-z_$*][A-Za-z0-9_$.*]*+)(?=[ \t\r\n]*+:)"
    r"|(?P<number>" + _NUMBER + r")(?![\w.])"  # (`0x1.5` is no number: the exact reader says)
    r"|(?<=[\w\"'\]}.])(?P<comma>,)"  # a trailing comma right after a value
    r"|(?P<space>[\ufeff\u00a0])"
    r"|(?P<other>.)"
    r"|\Z)",
    re.S,
)
_WHITESPACE = re.compile(r"[ \t\r\n]*+")

_MEMBER = re.compile(r'"((?:[^"\\\n]|\\.)*+)"[ \t\r\n]*+:[ \t\r\n]*+')
_AFTER_MEMBER = re.compile(r"[ \t\r\n]*+([,}])[ \t\r\n]*+")


class _GiveUp(Exception):
    """The fast reader leaves this text to the exact one."""


def _bad_token(text: str, pos: int, state: int) -> MeterDefinitionError:
    """Why no token starts at `pos` (after whitespace and comments)."""
    skip = _SKIP_RE.match(text, pos)
    at = skip.end() if skip else pos
    if text.startswith("/*", at):
        return error_at(text, at, "comment '/*' is never closed")
    ch = text[at]
    if ch in "\"'":
        end = text.find("\n", at)
        closed = end >= 0 and text.find(ch, at + 1, end) >= 0
        what = "line break inside a string" if end >= 0 and not closed else "string is never closed"
        return error_at(text, at, what)
    if ch in "+-.0123456789":
        word = re.match(r"[\w.+-]*", text[at : at + 40])
        return error_at(text, at, f"malformed number {word.group(0) if word else ch!r}")
    return error_at(text, at, _unexpected(ch, state))


def _unexpected(ch: str, state: int) -> str:
    if state == _KEY_OR_CLOSE:
        return f"unexpected character {ch!r}, a key is expected"
    if state in (_VALUE, _VALUE_OR_CLOSE):
        return f"unexpected character {ch!r}, a value is expected"
    return f"unexpected character {ch!r}"


def _read(text: str, pos: int, whole: bool) -> tuple[Any, int, dict[int, Any]]:
    offsets: dict[int, Any] = {}
    # Frames: [container, is_object, offsets table, start offset, pending key]
    stack: list[list[Any]] = []
    state = _VALUE
    root: Any = None
    match = _TOKEN.match
    while True:
        m = match(text, pos)
        if m is None:
            raise _bad_token(text, pos, state)
        kind = m.lastgroup
        at = m.start(kind or 0)
        pos = m.end()
        if kind == "end":
            if state == _AFTER and not stack:
                return root, at, offsets
            if stack:
                what = "object" if stack[-1][1] else "array"
                raise error_at(text, stack[-1][3], f"{what} opened here is never closed")
            raise error_at(text, at, "unexpected end of text, a value is missing")
        token = m.group(kind or 0)

        if state == _AFTER:
            if not stack:  # (a value read alone has returned when it was complete)
                raise error_at(text, at, "unexpected text after the end of the definition")
            frame = stack[-1]
            closer = "}" if frame[1] else "]"
            if token == ",":
                state = _KEY_OR_CLOSE if frame[1] else _VALUE_OR_CLOSE
            elif token == closer:
                stack.pop()
                if not stack and not whole:
                    return root, pos, offsets
            else:
                raise error_at(text, at, f"',' or '{closer}' expected")
            continue

        if state == _KEY_OR_CLOSE:
            frame = stack[-1]
            if token == "}":
                stack.pop()
                state = _AFTER
                if not stack and not whole:
                    return root, pos, offsets
                continue
            if kind == "s":
                key = read_string(text, token, at)
            elif kind == "w":
                key = token
            else:
                raise error_at(text, at, _unexpected(token[0], state))
            if key in frame[0]:
                raise error_at(text, at, f"duplicate key {key!r}")
            frame[2][key] = at
            frame[4] = key
            state = _COLON
            continue

        if state == _COLON:
            if token != ":":
                raise error_at(text, at, f"':' expected after key {stack[-1][4]!r}")
            state = _VALUE
            continue

        # A value is expected (or, right after '[' or ',' in an array, its end).
        value: Any
        if kind == "p":
            if token == "]" and state == _VALUE_OR_CLOSE:
                stack.pop()
                state = _AFTER
                if not stack and not whole:
                    return root, pos, offsets
                continue
            if token not in "{[":
                raise error_at(text, at, _unexpected(token, state))
            if len(stack) >= MAX_NESTING:
                raise error_at(text, at, f"nesting too deep (more than {MAX_NESTING} levels)")
            value = {} if token == "{" else []
        elif kind == "s":
            value = read_string(text, token, at)
        elif kind == "n":
            value = read_number(text, token, at)
        elif token in _LITERALS:
            value = _LITERALS[token]
        else:
            raise error_at(text, at, _unexpected(token[0], state))
        if stack:
            frame = stack[-1]
            if frame[1]:
                frame[0][frame[4]] = value
            else:
                frame[0].append(value)
                frame[2].append(at)
        else:
            root = value
        if kind == "p":
            table: Any = {} if token == "{" else []
            offsets[id(value)] = table
            stack.append([value, token == "{", table, at, None])
            state = _KEY_OR_CLOSE if token == "{" else _VALUE_OR_CLOSE
        else:
            state = _AFTER
            if not stack and not whole:
                return root, pos, offsets


# -- the fast reader ------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise _GiveUp(name)  # NaN, Infinity: not JSON5 as we read it


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _GiveUp("duplicate key")
    return result


_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique,
    parse_constant=_no_constant,
    parse_int=json_int,
    parse_float=json_float,
)
# The C scanner: (text, offset) -> (value, end); StopIteration where no value starts.
_SCAN: Callable[[str, int], tuple[Any, int]] = getattr(_DECODER, "scan_once")  # noqa: B009


def _skip(text: str, pos: int) -> int:
    """The offset after the JSON whitespace at `pos`."""
    m = _WHITESPACE.match(text, pos)
    return m.end() if m else pos


def _rewrite(text: str) -> str:
    """The text as JSON with the same lines, or _GiveUp."""

    def one(m: re.Match[str]) -> str:
        plain = m.group("plain")
        what = m.lastgroup
        if what == "plain" or what is None:
            return plain
        token = m.group(what)
        if what == "comment":
            return plain + ("\n" * token.count("\n") or " ")
        if what == "quoted":
            return plain + json.dumps(read_string(text, token, m.start(what)))
        if what == "key":
            return plain + '"' + token + '"'
        if what == "number":
            return plain + repr(read_number(text, token, m.start(what)))
        if what == "comma":
            return plain
        if what == "space":
            return plain + " "
        raise _GiveUp(token)

    try:
        return _REWRITE.sub(one, text)
    except MeterDefinitionError:
        raise _GiveUp("bad token") from None


def _depth_within(value: Any, limit: int) -> bool:
    """True if no more than `limit` arrays and objects are nested in each other."""
    level: list[Any] = [value]
    for _ in range(limit):
        below: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                below.extend(v for v in item.values() if isinstance(v, (dict, list)))
            elif isinstance(item, list):
                below.extend(v for v in item if isinstance(v, (dict, list)))
        if not below:
            return True
        level = below
    return False


def _fast_members(plain: str, at: int, root: dict[str, Any], top: dict[str, int]) -> int:
    """Read the top-level members from the first key on; the offset after the `}`."""
    member, after, scan = _MEMBER.match, _AFTER_MEMBER.match, _SCAN
    while True:
        m = member(plain, at)
        if m is None:
            raise _GiveUp("key")
        key = m.group(1)
        if "\\" in key:
            key = json.loads('"' + key + '"')
        if key in root:
            raise _GiveUp("duplicate key")
        top[key] = m.start()
        root[key], at = scan(plain, m.end())
        m = after(plain, at)
        if m is None:
            raise _GiveUp("separator")
        at = m.end()
        if m.group(1) == "}":
            return at


def _fast_read(text: str) -> tuple[Any, dict[str, int], str]:
    """(value, offsets of the top-level keys in the rewritten text, that text)."""
    if LONE_SURROGATE_HINT.search(text):  # the C decoder would accept a lone surrogate
        raise _GiveUp("surrogate")
    plain = _rewrite(text)
    top: dict[str, int] = {}
    try:
        at = _skip(plain, 0)
        if not plain.startswith("{", at):
            root, at = _SCAN(plain, at)
        else:
            root = {}
            at = _skip(plain, at + 1)
            if plain.startswith("}", at):
                at += 1
            else:
                at = _fast_members(plain, at, root, top)
    except (StopIteration, ValueError, RecursionError):
        raise _GiveUp("not JSON") from None
    if _skip(plain, at) != len(plain) or not _depth_within(root, MAX_NESTING):
        raise _GiveUp("rest")
    return root, top, plain


# -- positions ------------------------------------------------------------------------------


class Positions:
    """Where the keys and elements of one read document start (lines are 1-based)."""

    def __init__(
        self,
        text: str,
        exact: tuple[Any, dict[int, Any]] | None,
        top: Mapping[str, int] | None = None,
        top_text: str = "",
    ) -> None:
        self._text = text
        self._exact = exact  # (root, id(container) -> {key: offset} or [offset, ...])
        self._top = top or {}
        self._top_text = top_text or text
        self._lines: dict[str, list[int]] = {}

    def _line_of(self, text: str, offset: int) -> int:
        starts = self._lines.get(text)
        if starts is None:
            starts = self._lines[text] = [0, *(m.end() for m in re.finditer("\n", text))]
        return bisect.bisect_right(starts, offset)

    def line(self, path: tuple[str | int, ...]) -> int | None:
        """Line of `path`, or of its nearest parent that exists; None for the root."""
        if not path:
            return None
        first = path[0]
        if len(path) == 1 and isinstance(first, str) and first in self._top:
            return self._line_of(self._top_text, self._top[first])
        if self._exact is None:
            root, _end, offsets = _read(self._text, 0, whole=True)
            self._exact = (root, offsets)
        container, offsets = self._exact
        found: int | None = None
        for part in path:
            table = offsets.get(id(container))
            if isinstance(table, dict):
                here = table.get(part) if isinstance(part, str) else None
            elif isinstance(table, list) and isinstance(part, int) and 0 <= part < len(table):
                here = table[part]
            else:
                here = None
            if here is None:
                break
            found, container = here, container[part]
        return None if found is None else self._line_of(self._text, found)


# -- public -------------------------------------------------------------------------------


def read_document(text: str) -> tuple[Any, Positions]:
    """The value of a whole text and the positions of its parts."""
    try:
        root, top, plain = _fast_read(text)
    except _GiveUp:
        root, _end, offsets = _read(text, 0, whole=True)
        return root, Positions(text, (root, offsets))
    return root, Positions(text, None, top, plain)


def read_value(text: str, pos: int) -> tuple[Any, int]:
    """One value starting at `pos` (after whitespace); returns it and the offset after it."""
    try:  # plain JSON (the usual `{"id": 3}`) is read by the C decoder
        start = _skip(text, pos)
        value, end = _SCAN(text, start)
        # (Only the value is searched: a query may hold thousands of values.)
        if (
            not LONE_SURROGATE_HINT.search(text, start, end)
            and _depth_within(value, MAX_NESTING)
            and not text[end : end + 1].isalnum()
        ):
            return value, end
    except (_GiveUp, StopIteration, ValueError, RecursionError):
        pass
    value, end, _offsets = _read(text, pos, whole=False)
    return value, end


def is_blank(text: str) -> bool:
    """True if the text holds nothing but whitespace and comments."""
    skip = _SKIP_RE.match(text)
    return skip is not None and skip.end() == len(text)


def parse_json5(text: str) -> Any:
    """Parse a JSON5-ish text (comments, hex numbers, trailing commas, unquoted keys)."""
    return read_document(text)[0]
