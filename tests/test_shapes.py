"""Shapes declared with pydantic: lenient scalars, our wording, paths of problems."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar

import pytest
from pydantic import Field, ValidationError, model_validator

from chargebrain.shapes import (
    Boolean,
    Integer,
    Lowered,
    Number,
    OneOf,
    Parsed,
    Problem,
    Shape,
    ShapeError,
    Text,
    field_name,
    kind,
    problem_at,
    problems,
    validate,
)


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


def _pattern(value: Any) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {kind(value)}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"bad regular expression: {exc}") from None


class Inner(Shape):
    unknown_key: ClassVar[str] = "unknown inner property {key!r} (known: {known})"
    count: Annotated[int, Integer(1, 16)] = 1
    flag: Annotated[bool, Boolean()] = False


class Outer(Shape):
    port: Annotated[int, Integer(1, 65535)]
    mode: Annotated[int, OneOf(3, 4)] = 3
    scale: Annotated[float, Number(nonzero=True)] = 1.0
    label: Annotated[str, Text()] = ""
    colour: Annotated[Colour, Lowered(Colour, "colour")] = Colour.RED
    pattern: Annotated[re.Pattern[str] | None, Parsed(_pattern)] = None
    inner: Inner = Inner()
    items: Annotated[tuple[Inner, ...], Field(max_length=2)] = ()

    @model_validator(mode="after")
    def _label_needs_port(self) -> Outer:
        if self.label == "forbidden":
            raise problem_at(("label",), "this label is reserved", self.label)
        return self


def first_problem(data: Any) -> Problem:
    with pytest.raises(ShapeError) as caught:
        validate(Outer, data)
    return caught.value.problems[0]


def test_lenient_values_are_read() -> None:
    shape = validate(
        Outer,
        {
            "port": 502.0,
            "mode": 4,
            "scale": 2,
            "colour": "BLUE",
            "pattern": "a+",
            "inner": {"count": 3, "flag": 1},
            "items": [{"count": 2}],
        },
    )
    assert shape.port == 502 and isinstance(shape.port, int)
    assert shape.scale == 2.0 and isinstance(shape.scale, float)
    assert shape.colour is Colour.BLUE
    assert shape.pattern is not None and shape.pattern.pattern == "a+"
    assert shape.inner.count == 3 and shape.inner.flag is True
    assert shape.items[0].count == 2


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, "port", "'port' is missing"),
        ({"port": "502"}, "port", "must be an integer, not the string '502'"),
        ({"port": True}, "port", "must be an integer, not a boolean"),
        ({"port": 1.5}, "port", "must be an integer, not the number 1.5"),
        ({"port": 0}, "port", "0 is out of range 1..65535"),
        ({"port": 1, "mode": 5}, "mode", "5 is out of range 3..4"),
        ({"port": 1, "scale": 0}, "scale", "must not be 0"),
        ({"port": 1, "scale": float("inf")}, "scale", "must be a finite number"),
        ({"port": 1, "scale": "2"}, "scale", "must be a number, not the string '2'"),
        ({"port": 1, "label": 5}, "label", "must be a string, not the number 5"),
        ({"port": 1, "colour": "green"}, "colour", "unknown colour 'green' (expected one of"),
        ({"port": 1, "pattern": "(a"}, "pattern", "bad regular expression"),
        ({"port": 1, "inner": []}, "inner", "must be an object, not an array"),
        ({"port": 1, "inner": {"flag": 2}}, "inner.flag", "must be true or false, not the number"),
        ({"port": 1, "inner": {"cnt": 2}}, "inner.cnt", "'cnt' (known: count, flag)"),
        ({"port": 1, "items": {}}, "items", "must be an array, not an object"),
        ({"port": 1, "items": [{}, {}, {}]}, "items", "more than 2 entries"),
        ({"port": 1, "items": [{}, {"count": 0}]}, "items[1].count", "0 is out of range 1..16"),
        ({"port": 1, "spare": 1}, "spare", "unknown property 'spare'"),
        ({"port": 1, "label": "forbidden"}, "label", "this label is reserved"),
    ],
)
def test_problems_name_the_field_in_our_words(data: Any, field: str, message: str) -> None:
    problem = first_problem(data)
    assert problem.field == field
    assert message in problem.message
    assert str(problem) == f"{field}: {problem.message}"


def test_every_problem_is_reported_and_the_text_is_the_first() -> None:
    with pytest.raises(ShapeError) as caught:
        validate(Outer, {"port": 0, "mode": 9, "label": 1})
    error = caught.value
    assert [p.field for p in error.problems] == ["port", "mode", "label"]
    assert str(error) == "port: 0 is out of range 1..65535 (and 2 more problems)"


def test_problems_of_a_validation_error_and_stripped_paths() -> None:
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"port": 1, "inner": {"count": "x"}})
    assert problems(caught.value) == [
        Problem(("inner", "count"), "must be an integer, not the string 'x'")
    ]
    assert problems(caught.value, strip=1)[0].field == "count"


def test_not_an_object() -> None:
    problem = first_problem([1, 2])
    assert problem.path == () and problem.message == "must be an object, not an array"
    assert str(problem) == "must be an object, not an array"


def test_field_names_and_kinds() -> None:
    assert field_name(("outputs", 0, "url")) == "outputs[0].url"
    assert field_name(("v", "reserved", 0)) == "v.reserved[0]"
    assert field_name(()) == ""
    assert kind(None) == "null"
    assert kind({"a": 1}) == "an object"
    assert kind("x" * 100).startswith("the string 'xxx") and len(kind("x" * 100)) < 80


def test_json_schema_carries_ranges_and_choices() -> None:
    schema = Outer.model_json_schema()
    props = schema["properties"]
    assert props["port"]["minimum"] == 1 and props["port"]["maximum"] == 65535
    assert props["mode"]["enum"] == [3, 4]
    assert schema["$defs"]["Colour"]["enum"] == ["red", "blue"]
    assert props["pattern"]["type"] == "string"
    assert schema["required"] == ["port"]


class Bounded(Shape):
    share: Annotated[float, Number(lo=0, hi=1)] = 0.5
    size: Annotated[float, Number(above=0)] = 1.0
    start: Annotated[int, Integer()] = Field(0, alias="from")
    """Written as `from`, a Python keyword."""

    @model_validator(mode="after")
    def _share_below_size(self) -> Bounded:
        if self.share > self.size:
            raise ValueError("share must not exceed size")
        return self


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"share": 1.5}, "share", "1.5 is out of range 0..1"),
        ({"share": -0.25}, "share", "-0.25 is out of range 0..1"),
        ({"size": 0}, "size", "must be more than 0, not 0"),
        ({"from": "x"}, "from", "must be an integer, not the string 'x'"),
        ({"start": 1}, "start", "unknown property 'start'"),
        ({"share": 1, "size": 0.5}, "", "share must not exceed size"),
    ],
)
def test_bounded_numbers_aliases_and_plain_value_errors(
    data: Any, field: str, message: str
) -> None:
    with pytest.raises(ShapeError) as caught:
        validate(Bounded, data)
    problem = caught.value.problems[0]
    assert (problem.field, problem.message) == (field, message)


def test_bounded_numbers_and_aliases_in_json_schema() -> None:
    assert validate(Bounded, {"from": 3}).start == 3
    props = Bounded.model_json_schema()["properties"]
    assert (props["share"]["minimum"], props["share"]["maximum"]) == (0, 1)
    assert props["size"]["exclusiveMinimum"] == 0
    assert "from" in props and props["from"]["description"].startswith("Written as")
