"""Single property values of a definition that are parsed, not just checked: a variable's
`map` (raw value -> value) and the words of a few settings (`framing`, `parity`).

This module must never read text or files, nor know the shapes that use these.
"""

from __future__ import annotations

from typing import Any

from chargebrain.shapes import kind as _kind
from chargebrain.shapes import problem_at

__all__ = ["map_key", "mapping", "word"]


def mapping(value: Any) -> dict[str, str | float]:
    """Raw value (a number, or a string) -> the value the variable takes."""
    if not isinstance(value, dict) or not value:
        raise ValueError("must be an object of raw value -> value, not empty")
    out: dict[str, str | float] = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise problem_at((key,), f"must be a string or a number, not {_kind(item)}", item)
        out[map_key(key)] = item if isinstance(item, str) else float(item)
    return out


def map_key(key: str) -> str:
    """A key as the raw value is compared with it: numbers in decimal (0x10 is 16)."""
    text = key.strip()
    try:
        number = float(int(text, 0)) if text[:2].lower() in ("0x", "0b") else float(text)
    except ValueError:
        return key
    return str(int(number)) if number.is_integer() else repr(number)


def word(value: Any, *choices: str) -> str:
    """One of a few words, in any case (the first choice's case is kept)."""
    if isinstance(value, str):
        for choice in choices:
            if value.strip().lower() == choice.lower():
                return choice
    raise ValueError(f"must be one of {', '.join(map(repr, choices))}, not {value!r}")
