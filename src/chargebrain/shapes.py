"""Declaring the shape of an input once: pydantic models, lenient scalars, one-line errors.

Every structured input (a meter definition file, an API body, a scenario) is described
once as pydantic models derived from `Shape`; validation, error messages naming the field
and JSON Schema for forms all follow from that declaration. This module holds what those
declarations share:

* `Shape`, the base model: frozen, a field's docstring is its description (JSON Schema),
  and unknown keys are refused with the model's own wording (`unknown_key`), at the key's
  location. Scalars are declared with the markers below,
  which never coerce silently ("5" is not 5); arrays and objects take JSON lists and dicts.
* Markers for `Annotated` fields that keep our lenient, well-worded parsing:
  `Integer(lo, hi)` (2.0 is 2, a boolean is not a number), `Boolean()` (also 0 and 1),
  `Number()` (finite; optionally not zero, within bounds), `Text()`, `OneOf(...)`,
  `Lowered(Enum)`, and `Parsed(fn)` for text that a function turns into an object (a
  query, a regex). A validator may also raise a plain ValueError: its text is the message.
* `problems(exc)` turns a `ValidationError` into `Problem`s (path + message, our wording
  for pydantic's own error types), `ShapeError`/`validate()` give one exception whose text
  is the first problem on one line (`outputs[0].url: unknown property 'url'`), and
  `problem_at()` raises a problem at a sub-location from a model validator.

This module must never import api/, manager/ or devices/: it knows shapes, not who uses
them. It never does I/O.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, TypeAlias, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

__all__ = [
    "Boolean",
    "Integer",
    "Lowered",
    "Number",
    "OneOf",
    "Parsed",
    "Path",
    "Problem",
    "Shape",
    "ShapeError",
    "Text",
    "field_name",
    "kind",
    "problem_at",
    "problems",
    "validate",
]

Path: TypeAlias = tuple[str | int, ...]
S = TypeVar("S", bound=BaseModel)


def kind(value: Any) -> str:
    """What a value is, for messages: `the number 5`, `the string 'x'`, `an array`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value[:60]!r}"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _error(message: str) -> PydanticCustomError:
    # The message is passed as context: braces in it (a query's `{"id": 3}`) stay text.
    return PydanticCustomError("shape", "{message}", {"message": message})


def problem_at(
    path: Path, message: str, value: Any = None, title: str = "shape"
) -> ValidationError:
    """An error at `path` below the model being validated, for a model validator to raise."""
    detail = InitErrorDetails(type=_error(message), loc=path, input=value)
    return ValidationError.from_exception_data(title, [detail])


# -- lenient scalar markers -------------------------------------------------------------


class _Marker(ABC):
    """A check run before the field's own (strict) schema, with its JSON Schema hints."""

    @abstractmethod
    def check(self, value: Any) -> Any:
        """The value the field's schema then gets; raises `_error(...)` when it does not fit."""

    def json_hints(self) -> dict[str, Any]:
        return {}

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out.update(self.json_hints())
        return out


@dataclass(frozen=True, slots=True)
class Integer(_Marker):
    """An integer in lo..hi; an integral float (2.0) counts, a boolean or a string does not."""

    lo: int | None = None
    hi: int | None = None

    def check(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _error(f"must be an integer, not {kind(value)}")
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            lo = "" if self.lo is None else self.lo
            hi = "" if self.hi is None else self.hi
            raise _error(f"{value} is out of range {lo}..{hi}")
        return int(value)

    def json_hints(self) -> dict[str, Any]:
        hints: dict[str, Any] = {}
        if self.lo is not None:
            hints["minimum"] = self.lo
        if self.hi is not None:
            hints["maximum"] = self.hi
        return hints


class OneOf(_Marker):
    """An integer among a few allowed values (`modbus_read`: 3 or 4)."""

    __slots__ = ("values",)

    def __init__(self, *values: int) -> None:
        self.values = values

    def check(self, value: Any) -> int:
        number = Integer(min(self.values), max(self.values)).check(value)
        if number not in self.values:
            raise _error(f"{number} is not one of {', '.join(map(str, self.values))}")
        return number

    def json_hints(self) -> dict[str, Any]:
        return {"enum": list(self.values)}


@dataclass(frozen=True, slots=True)
class Boolean(_Marker):
    """true or false; 0 and 1 are accepted as well."""

    def check(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _error(f"must be true or false, not {kind(value)}")


@dataclass(frozen=True, slots=True)
class Number(_Marker):
    """A finite number (integers become floats); with `nonzero`, 0 is refused.

    `lo` and `hi` bound it (inclusive), `above` from below (exclusive: `above=0` is
    "more than 0").
    """

    nonzero: bool = False
    lo: float | None = None
    hi: float | None = None
    above: float | None = None

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _error(f"must be a number, not {kind(value)}")
        if not math.isfinite(value):
            raise _error("must be a finite number")
        if self.nonzero and value == 0:
            raise _error("must not be 0")
        if self.above is not None and value <= self.above:
            raise _error(f"must be more than {self.above:g}, not {value:g}")
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            lo = "" if self.lo is None else f"{self.lo:g}"
            hi = "" if self.hi is None else f"{self.hi:g}"
            raise _error(f"{value:g} is out of range {lo}..{hi}")
        return float(value)

    def json_hints(self) -> dict[str, Any]:
        hints: dict[str, Any] = {}
        if self.lo is not None:
            hints["minimum"] = self.lo
        if self.hi is not None:
            hints["maximum"] = self.hi
        if self.above is not None:
            hints["exclusiveMinimum"] = self.above
        return hints


@dataclass(frozen=True, slots=True)
class Text(_Marker):
    """A string, nothing else (a number is not turned into text)."""

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _error(f"must be a string, not {kind(value)}")
        return value


@dataclass(frozen=True, slots=True)
class Lowered(_Marker):
    """A string naming a member of a string Enum, in any case; `what` words the error."""

    enum: type[Enum]
    what: str = "value"

    def check(self, value: Any) -> Enum:
        if not isinstance(value, str):
            raise _error(f"must be a string, not {kind(value)}")
        try:
            return self.enum(value.lower())
        except ValueError:
            known = ", ".join(str(m.value) for m in self.enum)
            raise _error(f"unknown {self.what} {value!r} (expected one of {known})") from None


@dataclass(frozen=True, slots=True)
class Parsed:
    """Input text (or another JSON value) that `parse` turns into an object.

    `parse` raises ValueError with the message to show (or `problem_at` for a place
    inside the value, such as an element of a list). The field's JSON Schema is
    `json_type` (the input's type), since the parsed object has no JSON form of its own.
    """

    parse: Callable[[Any], Any]
    json_type: str = "string"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        parse = self.parse

        def run(value: Any) -> Any:
            try:
                return parse(value)
            except ValidationError:  # problems at places inside the value (`problem_at`)
                raise
            except ValueError as exc:
                raise _error(str(exc)) from None

        return core_schema.no_info_plain_validator_function(run)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": self.json_type}


# -- the base model -----------------------------------------------------------------------


class Shape(BaseModel):
    """Base of every declared input shape.

    Unknown keys are refused at their own location with `unknown_key` (placeholders `{key}`
    and `{known}`, the sorted field names), so a misspelt setting is never silently ignored.
    A shape that must tolerate keys it does not know (settings of newer versions) sets
    `unknown_key = None` and `model_config = ConfigDict(extra="ignore")`.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, use_attribute_docstrings=True
    )
    unknown_key: ClassVar[str | None] = "unknown property {key!r}"
    _known_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # A field with an alias is written under its alias (`from`, a Python keyword).
        cls._known_keys = frozenset(f.alias or name for name, f in cls.model_fields.items())

    @model_validator(mode="before")
    @classmethod
    def _only_known_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise _error(f"must be an object, not {kind(data)}")
        if cls.unknown_key is not None and not cls._known_keys.issuperset(data):
            for key in data:
                if key not in cls._known_keys:
                    known = ", ".join(sorted(cls._known_keys))
                    message = cls.unknown_key.format(key=key, known=known)
                    raise problem_at((key,), message, data[key], cls.__name__)
        return data


# -- errors -------------------------------------------------------------------------------


def field_name(path: Sequence[str | int]) -> str:
    """`("outputs", 0, "url")` → `outputs[0].url`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: where (`path`) and what (`message`)."""

    path: Path
    message: str

    @property
    def field(self) -> str:
        return field_name(self.path)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.path else self.message


def _wording(error: Mapping[str, Any]) -> str:
    kind_of = kind(error.get("input"))
    ctx = error.get("ctx") or {}
    loc = error.get("loc") or ()
    match error["type"]:
        case "shape":
            return str(ctx.get("message", error["msg"]))
        case "missing":
            return f"{loc[-1]!r} is missing" if loc else "a value is missing"
        case "extra_forbidden":
            return f"unknown property {loc[-1]!r}" if loc else "unknown property"
        case "model_type" | "model_attributes_type" | "dict_type":
            return f"must be an object, not {kind_of}"
        case "list_type" | "tuple_type":
            return f"must be an array, not {kind_of}"
        case "too_long":
            return f"more than {ctx.get('max_length')} entries"
        case "too_short":
            return f"needs at least {ctx.get('min_length')} entries"
        case "string_type":
            return f"must be a string, not {kind_of}"
        case "int_type" | "int_from_float":
            return f"must be an integer, not {kind_of}"
        case "float_type" | "finite_number":
            return f"must be a finite number, not {kind_of}"
        case "bool_type":
            return f"must be true or false, not {kind_of}"
        case "value_error" if "error" in ctx:  # a ValueError raised by a validator
            return str(ctx["error"])
    return str(error["msg"])


def problems(exc: ValidationError, strip: int = 0) -> list[Problem]:
    """The problems of a ValidationError in pydantic's order, in our wording.

    `strip` drops that many leading path parts (a wrapper the input does not have).
    """
    out: list[Problem] = []
    for error in exc.errors(include_url=False):
        path = tuple(p for p in error["loc"] if isinstance(p, (str, int)))[strip:]
        out.append(Problem(path, _wording(error)))
    return out


class ShapeError(ValueError):
    """An input does not have its declared shape; the text is the first problem."""

    def __init__(self, found: Iterable[Problem]) -> None:
        self.problems = list(found)
        first = self.problems[0] if self.problems else Problem((), "invalid input")
        more = len(self.problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        super().__init__(f"{first}{suffix}")


def validate(shape: type[S], data: Any, *, context: Mapping[str, Any] | None = None) -> S:
    """`shape` validated from `data`; raises ShapeError naming the field."""
    try:
        return shape.model_validate(data, context=dict(context) if context else None)
    except ValidationError as exc:
        raise ShapeError(problems(exc)) from None
