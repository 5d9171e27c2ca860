"""The API's markers on declared shapes: lenient values, the wording of problems, which
problem is reported, and the model-less reader of set_ajax_evse."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargebrain.api.errors import ApiError
from chargebrain.api.lenient import Body, FieldReader, Lenient, check, named
from chargebrain.api.shapes.fields import int_range
from chargebrain.api.shapes.pushes import EvsePush, MeterPush


def _must_be_small(value: Any) -> int:
    if value != 1:
        raise named("", " must be 1")
    return 1


class Inner(Body):
    small: Annotated[int, Lenient(_must_be_small)] = 1


class Sample(Body):
    a: Annotated[int, int_range(0, 9)] = 0
    b: Annotated[int, int_range(0, 9)] = 0
    inner: Inner = Inner()


def error(data: Any, order: tuple[str, ...] = ()) -> str:
    with pytest.raises(ApiError) as caught:
        check(Sample, data, order)
    assert caught.value.status == 400
    return caught.value.message


def test_lenient_values_and_the_wording() -> None:
    assert check(Sample, {"a": " '7' ", "b": "9.0", "other": []}).a == 7
    assert error({"a": "x"}) == "a: 'x' is not a number"
    assert error({"inner": {"small": 2}}) == "inner.small must be 1"
    assert error({"inner": 5}) == "inner: an object is required"
    assert error([1]) == "an object is required"


def test_the_problem_reported_is_the_first_in_the_order_given() -> None:
    assert error({"b": 10, "a": 10}) == "a: 10 out of range 0..9"  # declaration order
    assert error({"b": 10, "a": 10}, ("b", "a")) == "b: 10 out of range 0..9"
    assert error({"b": 10, "a": 10}, ("x", "a")) == "a: 10 out of range 0..9"
    assert error({"b": 10, "a": 10}, ("x",)) == "a: 10 out of range 0..9"


def test_a_reader_takes_only_shapes_whose_checks_are_their_fields() -> None:
    with pytest.raises(TypeError):
        FieldReader(MeterPush)
    with pytest.raises(TypeError):
        FieldReader(Sample)  # `inner` is a model, not a marker


VALUES = st.one_of(st.integers(-3, 7), st.sampled_from(
    ["3", " 2 ", "x", "1,2,3", "[1, 2 ,3]", "1,2", "1e16", "-1", "", "0x2"]),
    st.lists(st.integers(-2, 20_000), max_size=4), st.none(), st.booleans())


@given(st.dictionaries(st.sampled_from([*sorted(EvsePush.model_fields), "other"]), VALUES))
def test_the_reader_reads_as_the_model(fields: dict[str, Any]) -> None:
    reader = FieldReader(EvsePush)
    try:
        model = check(EvsePush, fields)
    except ApiError as exc:
        with pytest.raises(ApiError) as caught:
            reader.read(fields)
        assert caught.value.message == exc.message
        return
    read = reader.read(fields)
    assert read == {key: getattr(model, key) for key in model.model_fields_set}
