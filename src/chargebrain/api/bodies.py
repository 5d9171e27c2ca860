"""Request bodies: a JSON document or a urlencoded form, parsed strictly.

Whatever bytes arrive, each parser here returns a clean value or raises ApiError (a 400
JSON answer); no other exception leaves this module. A JSON body is refused when it is
not UTF-8 (UTF-16/32 with their byte order), not JSON, nested deeper than
`MAX_JSON_DEPTH` arrays and objects, holds `NaN`/`Infinity`, a number beyond a float
(`1e999`) or one of more than 4300 digits, or a string with a lone UTF-16 surrogate
(`"\\ud800"`: no text, and it could be neither stored nor answered). A form body must
be UTF-8, ASCII or ISO-8859-1 text. Of a key given twice in a JSON object the last
counts (as everywhere in Python's JSON). The checks cost less than the parsing itself,
also for a hostile body of 2 MiB: a client without credentials can send one.
"""

from __future__ import annotations

import codecs
import json
import json.decoder
import json.scanner
import math
import re
from array import array
from collections.abc import Callable
from itertools import accumulate
from typing import Any
from urllib.parse import parse_qsl

from chargebrain.api.errors import ApiError

MAX_JSON_DEPTH = 64
FORM_CHARSETS = frozenset({"utf-8", "ascii", "iso8859-1"})

_NOT_JSON = "the request body is not valid JSON"
# The checks beside the parser run in C (regular expressions, bytes.translate,
# itertools.accumulate, json.dumps): a walk in Python over a body of 2 MiB took seconds,
# longer than the parsing. They look for: strings (to skip them when counting brackets),
# what a number beyond a float needs (an exponent of three digits or 200 digits before
# the point: it is parsed as infinity), and an escaped UTF-16 surrogate.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1, and -1 as a signed byte
_BIG_NUMBER = re.compile(r"[eE]\+?0*[1-9][0-9]{2}|[0-9]{200}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond a float")
    return value


def _depth(text: str) -> int:
    """How deep the arrays and objects of a valid JSON text nest."""
    brackets = _STRING.sub(b"", text.encode("utf-8", "surrogatepass")).translate(
        _STEPS, _NOT_BRACKET)
    return max(accumulate(array("b", brackets)), default=0)


def json_body(raw: bytes, pure: bool = False) -> Any:
    """The JSON document of a request body; None for an empty one. `pure`: decoded by
    the json module's Python code (slower, but in a worker thread it lets the event loop
    run every few milliseconds, where the C decoder would hold it throughout)."""
    if not raw.strip():
        return None
    try:
        text = raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError:
        raise ApiError(400, f"{_NOT_JSON}: the bytes are not UTF-8 text") from None
    # Only where a number beyond a float may be is each number looked at (it costs).
    parse_float = _finite_float if _BIG_NUMBER.search(text) else None
    try:
        if pure:
            value = _pure_loads(text, parse_float)
        else:
            value = json.loads(text, parse_constant=_refuse_constant, parse_float=parse_float)
    except RecursionError:
        raise _too_deep() from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"{_NOT_JSON}: {exc}") from None
    except ValueError as exc:  # NaN, Infinity, 1e999; an integer of more than 4300 digits
        message = str(exc) if "JSON value" in str(exc) or "float" in str(exc) else (
            "a number has too many digits")
        raise ApiError(400, f"{_NOT_JSON}: {message}") from None
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth(text) > MAX_JSON_DEPTH:
        raise _too_deep()
    if _SURROGATE_ESCAPE.search(text):
        try:  # a lone surrogate is no text: it could be neither stored nor answered
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ApiError(400, f"{_NOT_JSON}: a string holds a lone UTF-16 surrogate") from None
    return value


def _pure_loads(text: str, parse_float: Callable[[str], float] | None) -> Any:
    """`json.loads(text, …)` as `json_body` calls it, by the pure-Python scanner."""
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    # One decoder per call: the scanner's memo is not thread-safe.
    decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=parse_float)
    decoder.parse_string = json.decoder.py_scanstring  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder.decode(text)


def _too_deep() -> ApiError:
    return ApiError(400, f"{_NOT_JSON}: nested deeper than {MAX_JSON_DEPTH} levels")


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
