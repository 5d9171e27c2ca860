"""The JSON5 reader: both of its paths give the same values, positions, bounded nesting."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargebrain.devices.meterdef import MeterDefinitionError, parse_definition, parse_query
from chargebrain.devices.meterdef.json5 import (
    MAX_NESTING,
    _read,  # the exact reader alone, to compare the fast path with
    read_document,
    read_value,
)

IDENT = re.compile(r"[A-Za-z_$*][A-Za-z0-9_$.*]*")

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
keys = st.one_of(st.sampled_from(["a", "b_1", "*shown", "CM.x", "power_w"]), st.text(max_size=6))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


def render(value: Any, draw: Any) -> str:
    """`value` written with a random mix of JSON5 spellings."""
    gap = draw(st.sampled_from(["", " ", "\n", " // note\n", "/* a\n b */", "\t"]))
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        if draw(st.booleans()):
            return ("-" if value < 0 else draw(st.sampled_from(["", "+"]))) + hex(abs(value))
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if text.startswith("0.") and draw(st.booleans()):
            text = text[1:]  # .5
        return text
    if isinstance(value, str):
        if "'" not in value and "\\" not in value and "\n" not in value and draw(st.booleans()):
            return "'" + value.replace('"', '\\"') + "'"
        return json.dumps(value)
    trailing = draw(st.sampled_from(["", ","])) if value else ""
    if isinstance(value, list):
        items = [gap + render(v, draw) for v in value]
        return "[" + ",".join(items) + trailing + gap + "]"
    members = []
    for k, v in value.items():
        key = k if IDENT.fullmatch(k) and draw(st.booleans()) else json.dumps(k)
        members.append(f"{gap}{key}{draw(st.sampled_from(['', ' ']))}:{gap}{render(v, draw)}")
    return "{" + ",".join(members) + trailing + gap + "}"


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_any_json5_spelling_reads_the_value(value: Any, data: st.DataObject) -> None:
    text = render(value, data.draw)
    fast, _positions = read_document(text)
    exact = _read(text, 0, whole=True)[0]
    assert same(fast, value)
    assert same(exact, value)


@settings(max_examples=500, deadline=None)
@given(values, st.data())
def test_fast_and_exact_agree_on_broken_texts(value: Any, data: st.DataObject) -> None:
    text = render(value, data.draw)
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    junk = data.draw(st.sampled_from([",", "{", "}", "[", "]", '"', "'", ":", "/", "*", "x", "0x"]))
    text = text[:at] + junk + text[at:]
    try:
        exact: Any = ("value", _read(text, 0, whole=True)[0])
    except MeterDefinitionError as exc:
        exact = ("error", str(exc))
    try:
        fast: Any = ("value", read_document(text)[0])
    except MeterDefinitionError as exc:
        fast = ("error", str(exc))
    assert fast[0] == exact[0]
    if fast[0] == "value":
        assert same(fast[1], exact[1])
    else:
        assert fast[1] == exact[1]


def test_positions_of_nested_keys_and_elements() -> None:
    text = '{\n "a": {\n  /* two\n     lines */ "b": [1,\n   2]},\n "c": 0x10 // hex\n}'
    doc, positions = read_document(text)
    assert doc == {"a": {"b": [1, 2]}, "c": 16}
    assert positions.line(("a",)) == 2
    assert positions.line(("a", "b")) == 4
    assert positions.line(("a", "b", 1)) == 5
    assert positions.line(("c",)) == 6
    assert positions.line(("a", "missing")) == 2  # the nearest part that exists
    assert positions.line(()) is None


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deep_nesting_is_a_clear_error(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    fine = opener * MAX_NESTING + "1" + closer * MAX_NESTING
    assert read_document(fine)[0] is not None
    for depth in (MAX_NESTING + 1, 100_000):
        with pytest.raises(MeterDefinitionError, match="nesting too deep"):
            read_document(opener * depth + "1" + closer * depth)


def test_deep_nesting_in_definitions_and_queries() -> None:
    with pytest.raises(MeterDefinitionError, match="nesting too deep") as caught:
        parse_definition('{"rtype": 0, "dev_type": "x",\n "v": ' + "[" * 50_000)
    assert caught.value.line == 2
    with pytest.raises(MeterDefinitionError, match="bad index"):
        parse_query("a[" + '{"x":' * 50_000 + "1" + "}" * 50_000 + "]")


@pytest.mark.parametrize(
    "text",
    [
        "{" + " " * 50_000 + "#",
        '{"a": ' + "1" * 50_000 + "x}",
        '{"a": "' + "x" * 50_000,
        "{" + "/* */" * 10_000 + ",}",
        '{"a": ' + "-" * 50_000 + "}",
    ],
)
def test_hostile_texts_end_in_an_error(text: str) -> None:
    with pytest.raises(MeterDefinitionError):
        read_document(text)


def test_read_value_inside_other_text() -> None:
    assert read_value('a[{"id": 3}].v', 2) == ({"id": 3}, 11)
    assert read_value("a[ 0x1F ]", 2) == (31, 7)
    assert read_value("a['k']", 2) == ("k", 5)
    with pytest.raises(MeterDefinitionError):
        read_value("a[x]", 2)


def test_a_hex_number_followed_by_a_fraction_is_no_number_in_either_reader() -> None:
    for text in ('{"a": -0x1.5e+3}', '[0x1.0]'):
        with pytest.raises(MeterDefinitionError, match="expected"):
            _read(text, 0, whole=True)
        with pytest.raises(MeterDefinitionError, match="expected"):
            read_document(text)
