"""String and number literals of the JSON5 reader, and the bounds they must keep.

Both of `json5`'s readers turn literals into values here, so both refuse the same things
with the same message and position:

* a number of more than `MAX_NUMBER_CHARS` characters (digits, sign, point, exponent;
  also `0x` with hex digits), which would cost time to convert and fail when named in an
  error, and a number beyond a float (`1e999`), which would make readings infinite;
* a `\\u` escape of a lone UTF-16 surrogate, and a raw surrogate in the text: such a
  string can be neither stored nor answered as UTF-8. A pair, `\\ud83d\\ude97`, is one
  character, as in JSON.

The standard library's decoder, which the fast reader uses, accepts both; `json_int` and
`json_float` are its number hooks, and `LONE_SURROGATE_HINT` finds the texts it must leave
to the exact reader.

This module must never read more than one literal at a time.
"""

from __future__ import annotations

import math
import re

from chargebrain.devices.meterdef.errors import MeterDefinitionError

__all__ = [
    "LONE_SURROGATE_HINT",
    "MAX_NUMBER_CHARS",
    "error_at",
    "json_float",
    "json_int",
    "read_number",
    "read_string",
]

MAX_NUMBER_CHARS = 64  # digits, sign, point and exponent of one number

# Where a lone surrogate may be: a `\u` escape of one (also the first of a pair: pairs
# are rare enough to leave to the exact reader) or a raw one. Backslashes before the
# escape are not counted, so an escaped backslash may send a text there needlessly.
LONE_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_RAW_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ESCAPE = re.compile(
    r"\\(u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)", re.S
)
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n"}
_ESCAPES.update({"r": "\r", "t": "\t"})


def error_at(text: str, offset: int, message: str) -> MeterDefinitionError:
    """The error for `message` at `offset` of `text`, with its line and column."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return MeterDefinitionError(f"{message} (column {column})", line=line)


def read_string(text: str, raw: str, at: int) -> str:
    """The value of the quoted string `raw`, which starts at offset `at` of `text`."""
    body = raw[1:-1]
    raw_surrogate = _RAW_SURROGATE.search(body)
    if raw_surrogate:
        raise error_at(text, at + 1 + raw_surrogate.start(), "lone UTF-16 surrogate in a string")
    if "\\" not in body:
        return body

    def escape(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        if len(esc) == 11:  # a surrogate pair: one character
            high, low = int(esc[1:5], 16), int(esc[7:], 16)
            return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
        if len(esc) == 5:
            code = int(esc[1:], 16)
            if 0xD800 <= code < 0xE000:
                raise error_at(text, at + 1 + m.start(), "\\u escape of a lone UTF-16 surrogate")
            return chr(code)
        if esc == "u":
            raise error_at(text, at, "bad \\u escape")
        raise error_at(text, at, f"unknown escape \\{esc}")

    return _ESCAPE.sub(escape, body)


def read_number(text: str, token: str, at: int) -> int | float:
    """The value of the number `token`, which starts at offset `at` of `text`: `int` when
    written without fraction or exponent (also hex), else a finite `float`."""
    if len(token) > MAX_NUMBER_CHARS:
        raise error_at(text, at, f"number longer than {MAX_NUMBER_CHARS} characters")
    if "x" in token or "X" in token:
        return int(token, 16)
    if "." in token or "e" in token or "E" in token:
        value = float(token)
        if not math.isfinite(value):
            raise error_at(text, at, f"number {token} out of range")
        return value
    return int(token)


# The standard library decoder's hooks: a ValueError makes the fast reader leave the text
# to the exact one, which names the problem and its position. (A long hex number, which
# the fast reader passes on in decimal, goes there too: it reads it correctly.)


def json_int(token: str) -> int:
    if len(token) > MAX_NUMBER_CHARS:
        raise ValueError("number too long")
    return int(token)


def json_float(token: str) -> float:
    value = float(token)
    if len(token) > MAX_NUMBER_CHARS or not math.isfinite(value):
        raise ValueError("number too long or out of range")
    return value
