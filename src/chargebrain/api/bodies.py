"""Request bodies: a JSON document or a urlencoded form, parsed strictly.

Whatever bytes arrive, each parser here returns a clean value or raises ApiError (a 400
JSON answer); no other exception leaves this module. A JSON body is refused when it is
not UTF-8 (UTF-16/32 with their byte order), not JSON, nested deeper than
`MAX_JSON_DEPTH` arrays and objects, holds `NaN`/`Infinity` or a number no float can
hold (`1e999`, an integer of more than `MAX_JSON_DIGITS` digits), or a string with a
lone UTF-16 surrogate (`"\\ud800"`: no text, and it could be neither stored nor
answered). A form body must be UTF-8, ASCII or ISO-8859-1 text. Of a key given twice
in a JSON object the last counts (as everywhere in Python's JSON).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl

from chargebrain.api.errors import ApiError

MAX_JSON_DEPTH = 64
MAX_JSON_DIGITS = 300  # a float holds at most 309 integer digits
FORM_CHARSETS = frozenset({"utf-8", "ascii", "iso8859-1"})

_NOT_JSON = "the request body is not valid JSON"
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _whole_number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise ValueError(f"a number of more than {MAX_JSON_DIGITS} digits")
    return int(text)


def _too_deep() -> ApiError:
    return ApiError(400, f"{_NOT_JSON}: nested deeper than {MAX_JSON_DEPTH} levels")


def _check_tree(value: Any) -> None:
    """ApiError if `value` nests too deep or holds a string with a lone surrogate
    (without recursion: the depth is what is checked)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise ApiError(400, f"{_NOT_JSON}: a string holds a lone UTF-16 surrogate")


def json_body(raw: bytes) -> Any:
    """The JSON document of a request body; None for an empty one."""
    if not raw.strip():
        return None
    try:
        text = raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError:
        raise ApiError(400, f"{_NOT_JSON}: the bytes are not UTF-8 text") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                           parse_int=_whole_number)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # json.JSONDecodeError is one
        raise ApiError(400, f"{_NOT_JSON}: {exc}") from None
    # Cheap tests first: a body with few brackets cannot nest deep, and a lone surrogate
    # can only come from a \\uD800-\\uDFFF escape (the text itself was decoded strictly).
    if (text.count("[") + text.count("{") > MAX_JSON_DEPTH
            or _SURROGATE_ESCAPE.search(text)):
        _check_tree(value)
    return value


def form_fields(raw: bytes, charset: str | None) -> list[tuple[str, str]]:
    """The fields of an `application/x-www-form-urlencoded` body, in order."""
    name = charset or "utf-8"
    try:
        codec = codecs.lookup(name).name
    except (LookupError, ValueError):  # unknown, or a NUL in the name
        codec = ""
    if codec not in FORM_CHARSETS:
        raise ApiError(400, f"a form body must be UTF-8, ASCII or ISO-8859-1 text, "
                            f"not {name[:40]!r}")
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        raise ApiError(400, f"the form body is not {codec} text") from None
    return parse_qsl(text.rstrip(), keep_blank_values=True, encoding=codec, errors="replace")
