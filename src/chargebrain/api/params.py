"""Lenient parsing of request parameters, as the real controller accepts them.

Clients send numbers as `6000.0`, with surrounding quotes or spaces (`value=1"`), arrays
as `[7,230,230,230 ]` or `230,231,229`. Every parser here either returns a clean value
or raises: `number`, `integer`, `boolean` raise `Refused` with the reason alone (the
declared shapes of api/shapes/ add the field's name), `parse_number` and its siblings an
ApiError (a 4xx JSON answer) naming the parameter. None of them changes anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from chargebrain.api.errors import ApiError

_STRIP = " \t\r\n\"'"


def clean(text: str) -> str:
    return text.strip(_STRIP)


class Refused(ValueError):
    """A value a parser refuses; its text is the reason, without the field's name (the
    caller adds it: `parse_number` and the others below, or a shape's problem)."""


def number(text: Any) -> float:
    """A finite number from a JSON value or a lenient string."""
    if isinstance(text, bool):
        return 1.0 if text else 0.0
    try:
        if isinstance(text, int | float):
            value = float(text)
        else:
            s = clean(str(text))
            if not s:
                raise Refused("a number is required")
            try:
                value = float(int(s, 16)) if s.lower().startswith(("0x", "-0x")) else float(s)
            except ValueError:
                raise Refused(f"{s[:40]!r} is not a number") from None
    except OverflowError:  # an integer beyond any float (`0x` and 300 hex digits)
        raise Refused("the number is too large") from None
    if not math.isfinite(value):
        raise Refused(f"{text!r} is not a finite number")
    return value


def integer(text: Any) -> int:
    """An integer; `6000.0` is accepted, `6000.5` is not."""
    value = number(text)
    if value != int(value):
        raise Refused(f"{text!r} is not a whole number")
    return int(value)


def boolean(text: Any) -> bool:
    """true/false, numbers (0 is false), and the strings 1/true/yes/on, 0/false/no/off/""."""
    if isinstance(text, bool):
        return text
    if isinstance(text, int | float):
        return text != 0
    s = clean(str(text)).lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise Refused(f"{text!r} is not a boolean")


def parse_number(text: Any, name: str = "value") -> float:
    """`number`, or ApiError 400 naming `name`."""
    try:
        return number(text)
    except Refused as exc:
        raise ApiError(400, f"{name}: {exc}") from None


def parse_int(text: Any, name: str = "value") -> int:
    """`integer`, or ApiError 400 naming `name`."""
    try:
        return integer(text)
    except Refused as exc:
        raise ApiError(400, f"{name}: {exc}") from None


def parse_bool(text: Any, name: str = "value") -> bool:
    """`boolean`, or ApiError 400 naming `name`."""
    try:
        return boolean(text)
    except Refused as exc:
        raise ApiError(400, f"{name}: {exc}") from None


def items(text: Any) -> list[Any]:
    """A list from a JSON array, `[1,2, 3 ]` or `1,2,3` (the parts cleaned)."""
    if isinstance(text, list):
        return text
    s = clean(str(text))
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    if not s.strip():
        return []
    return [clean(part) for part in s.split(",")]


def parse_list(text: Any, name: str = "values") -> list[Any]:
    """`items` (which refuses nothing; `name` is for symmetry with the others)."""
    return items(text)


def parse_int_list(text: Any, name: str = "values") -> list[int]:
    return [parse_int(v, name) for v in parse_list(text, name)]


def parse_number_list(text: Any, name: str = "values") -> list[float]:
    return [parse_number(v, name) for v in parse_list(text, name)]


def require(params: Mapping[str, Any], name: str) -> Any:
    if name not in params:
        raise ApiError(400, f"parameter {name!r} is required")
    return params[name]


def refuse_unknown(keys: Iterable[str], known: AbstractSet[str], where: str) -> None:
    """ApiError 400 naming every key of `keys` that is not in `known`."""
    unknown = sorted(k for k in keys if k not in known)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ApiError(400, f"unknown key{plural} {', '.join(map(repr, unknown))} {where}")

