"""The API's declared shapes: lenient markers, their JSON Schema, problems as ApiError text.

The API reads values as the real controller does (api/params.py): numbers as text
(`"6000.0"`, quoted, padded, hex), booleans as `1`/`"yes"`/`"on"`, lists as `230,231,229`,
where chargebrain.shapes' own markers are strict. The markers here wrap those parsers:

* `Lenient(parse, **schema)`: a field read by `parse`, a function of the value that
  raises `Refused` (or ValueError) with the reason alone; the problem adds `field: `, so
  a message reads as it always has (`phase_rotation: 90 is not one of 0, 120, 240`).
  `schema` is the field's JSON Schema (type, minimum, maximum, enum, maxLength, formula).
* `named(before, after)`: a reason whose old wording puts the field's name inside the
  sentence (`state must be 1..5`, `unknown key 'x' in rfids[0]`): the text is
  `before + field + after`.
* `Body`: the base of the API's input shapes. Keys a shape does not declare are left to
  the caller (api/known_keys.py refuses the ones no answer shows); a value that is not
  an object is refused with `not_object`.
* `check(shape, data, order)`: the validated model, or ApiError 400 with the first
  problem, first in `order` (the body's key order, where that is the order of checks);
  `FieldReader(shape).read(data)` the same values as a dict of the keys sent, without
  the model (for set_ajax_evse, the API's hot path).
* `ui(unit, advanced)`: the form hints of a field (see api/shapes/schema.py).

This module must never import api/shapes/ or the command modules; it knows how fields are
read, not which fields there are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import (
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, SchemaValidator, core_schema

from chargebrain.api.errors import ApiError
from chargebrain.shapes import Problem, Shape, problems

__all__ = ["Body", "FieldReader", "Lenient", "check", "first_problem", "message", "named", "ui"]

B = TypeVar("B", bound="Body")
_NAMED = "api_named"


def message(reason: str) -> PydanticCustomError:
    """A problem whose text is `field: reason`."""
    return PydanticCustomError("shape", "{message}", {"message": reason})


def named(before: str, after: str = "") -> PydanticCustomError:
    """A problem whose text is `before + field + after` (the field inside the sentence)."""
    return PydanticCustomError(_NAMED, "{before}{after}", {"before": before, "after": after})


class Lenient:
    """A field read by `parse` (lenient, worded as the API always was).

    `parse` raises ValueError (`Refused`, FormulaError, …) with the reason alone, or a
    `named`/`message` error; `schema` is the JSON Schema the field shows the web UI.
    """

    __slots__ = ("parse", "schema")

    def __init__(self, parse: Callable[[Any], Any], **schema: Any) -> None:
        self.parse = parse
        self.schema = schema

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # `parse` is called as it is (no wrapper on the hot path): pydantic reports its
        # ValueError as a "value_error", which `first_problem` words as `field: reason`.
        return core_schema.no_info_plain_validator_function(self.parse)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return dict(self.schema)


def ui(unit: str = "", *, advanced: bool = False, default: bool = True) -> FieldInfo:
    """A field's form hints: its `unit`, whether it is an `advanced` setting, `formula`
    false unless its marker says a formula may stand for it, and (with `default=False`)
    no default shown (one the form cannot state, such as "the id")."""
    hints: dict[str, Any] = {"advanced": advanced}
    if unit:
        hints["unit"] = unit

    def apply(schema: dict[str, Any]) -> None:
        schema.update(hints)
        schema.setdefault("formula", False)  # (a formula field's marker says true)
        if not default:
            schema.pop("default", None)

    info: FieldInfo = Field(json_schema_extra=apply)
    return info


class Body(Shape):
    """Base of the API's input shapes: other keys are the caller's to judge (they are not
    validated here), a value that is not an object is refused with `not_object`."""

    model_config = ConfigDict(extra="ignore")
    unknown_key: ClassVar[str | None] = None
    not_object: ClassVar[str] = "an object is required"

    @model_validator(mode="before")
    @classmethod
    def _only_known_keys(cls, data: Any) -> Any:  # replaces Shape's: other keys pass
        if type(data) is not dict and not isinstance(data, Mapping):
            raise message(cls.not_object)
        return data


def first_problem(exc: ValidationError, order: Sequence[str] = ()) -> str:
    """The text of the problem to report: the first whose top key comes first in `order`
    (problems at other keys after those, in the order pydantic found them)."""
    found: list[tuple[Mapping[str, Any], Problem]] = list(
        zip(exc.errors(include_url=False), problems(exc), strict=True))
    if order:
        rank = {key: i for i, key in reversed(list(enumerate(order)))}
        last = len(order)
        found.sort(key=lambda pair: rank.get(str(pair[1].path[0]), last)
                   if pair[1].path else last + 1)
    error, problem = found[0]
    if error["type"] == _NAMED:
        ctx = error["ctx"]
        return f"{ctx['before']}{problem.field}{ctx['after']}"
    if error["type"] == "value_error":  # a parser's ValueError: its text is the reason
        return str(Problem(problem.path, str(error["ctx"]["error"])))
    return str(problem)


class FieldReader:
    """A shape's fields read into a dict of the keys sent, without making the model.

    For the hot path (set_ajax_evse, pushed every few seconds by every HTTP-input
    wallbox): making the model and running its model validator cost about 4 µs more per
    push in the running server (docs/performance.md). The same markers read the same
    values, with the same problems. Only a shape whose checks are all its fields' markers
    can be read so (a shape with validators of its own is refused when the reader is
    made); `not_object` stays.
    """

    __slots__ = ("_validate", "not_object")

    def __init__(self, shape: type[Body]) -> None:
        decorators = shape.__pydantic_decorators__
        if decorators.field_validators or decorators.model_validators.keys() - {
                "_only_known_keys"}:
            raise TypeError(f"{shape.__name__} has validators a FieldReader would skip")
        fields: dict[str, core_schema.TypedDictField] = {}
        for name, info in shape.model_fields.items():
            marker = next((m for m in info.metadata if isinstance(m, Lenient)), None)
            if marker is None:
                raise TypeError(f"{shape.__name__}.{name} is not read by a Lenient marker")
            fields[name] = core_schema.typed_dict_field(
                core_schema.no_info_plain_validator_function(marker.parse), required=False)
        schema = core_schema.typed_dict_schema(fields, extra_behavior="ignore")
        self._validate = SchemaValidator(schema).validate_python
        self.not_object = shape.not_object

    def read(self, data: Any) -> dict[str, Any]:
        """The values of the fields `data` carries, or ApiError 400 (see `first_problem`)."""
        if type(data) is not dict and not isinstance(data, Mapping):
            raise ApiError(400, self.not_object)
        try:
            values: dict[str, Any] = self._validate(data)
        except ValidationError as exc:
            raise ApiError(400, first_problem(exc)) from None
        return values


def check(shape: type[B], data: Any, order: Sequence[str] = ()) -> B:
    """`shape` validated from `data`, or ApiError 400 with the problem to report (see
    `first_problem`)."""
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, first_problem(exc, order)) from None
