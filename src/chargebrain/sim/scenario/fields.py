"""How the values of a scenario file are written, and the base of its objects.

The value types every object of the format uses, as `Annotated` types that validate and
describe themselves in JSON Schema: a `Name` (non-empty text), durations, times of day,
points in time (`Moment`, resolved later against the start of the run), currents and
shares. `Part` is the base of every object: unknown keys are refused, keys starting with
`_` are comments, and a key written as null counts as left out unless the object lists it
in `nullable`.

This module must never know which objects the format has, and never read text or files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import WithJsonSchema, model_validator

from chargebrain.shapes import Integer, Number, Parsed, Shape
from chargebrain.shapes import kind as _kind
from chargebrain.sim.scenario.times import When, parse_duration, parse_time_of_day, parse_when

__all__ = [
    "Duration",
    "Milliamps",
    "Moment",
    "Name",
    "Part",
    "PositiveDuration",
    "Share",
    "TimeOfDay",
    "at_least",
    "duration_schema",
    "or_null",
]

_DURATION_TEXT = r"^\s*(\d+(\.\d+)?\s*[hmsHMS]\s*)+$"
_CLOCK_TEXT = r"^\s*([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?\s*$"


def duration_schema(minimum: int) -> dict[str, Any]:
    """JSON Schema of a duration of at least `minimum` seconds."""
    return {
        "anyOf": [
            {"type": "number", "minimum": minimum},
            {"type": "string", "pattern": _DURATION_TEXT},
        ],
        "description": 'seconds, or text like "90s", "30m", "24h", "1h30m"',
    }


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, not {_kind(value)}")
    return value


def at_least(lo: int, message: str) -> Callable[[Any], int]:
    """A parser of durations of at least `lo` seconds; shorter ones are refused with
    `message`."""

    def parse(value: Any) -> int:
        seconds = parse_duration(value)
        if seconds < lo:
            raise ValueError(message)
        return seconds

    return parse


def or_null(parse: Callable[[Any], int]) -> Callable[[Any], int | None]:
    """`parse`, where null stands for itself (for the keys in a `nullable`)."""
    return lambda value: None if value is None else parse(value)


Name = Annotated[str, Parsed(_name), WithJsonSchema({"type": "string", "minLength": 1})]
Duration = Annotated[
    int, Parsed(at_least(0, "must not be negative")), WithJsonSchema(duration_schema(0))
]
PositiveDuration = Annotated[
    int, Parsed(at_least(1, "must be positive")), WithJsonSchema(duration_schema(1))
]
TimeOfDay = Annotated[
    int,
    Parsed(parse_time_of_day),
    WithJsonSchema(
        {"type": "string", "pattern": _CLOCK_TEXT, "description": '"HH:MM" or "HH:MM:SS"'}
    ),
]
Moment = Annotated[
    When,
    Parsed(parse_when),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "string", "pattern": r"^\s*\+?" + _DURATION_TEXT[1:]},
                {"type": "string", "pattern": _CLOCK_TEXT},
            ],
            "description": 'seconds since the start, "+45m" after the start, or "HH:MM": '
            "the first time that clock time comes round",
        }
    ),
]
Milliamps = Annotated[int, Integer(0)]
Share = Annotated[float, Number(lo=0, hi=1)]


# -- the base of every object ----------------------------------------------------------------


class Part(Shape):
    """An object of a scenario file."""

    unknown_key: ClassVar[str | None] = "unknown key (known: {known})"
    nullable: ClassVar[frozenset[str]] = frozenset()
    """Keys whose null means something of its own (else null is the same as no key)."""

    @model_validator(mode="before")
    @classmethod
    def _without_comments_and_nulls(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        for k, v in data.items():  # (a plain loop: this runs for every object of a file)
            if v is None or (isinstance(k, str) and k[:1] == "_"):
                break
        else:
            return data
        known, nullable = cls._known_keys, cls.nullable
        return {
            k: v for k, v in data.items()  # (an unknown key stays, to be refused)
            if not str(k).startswith("_") and (v is not None or k in nullable or k not in known)
        }
