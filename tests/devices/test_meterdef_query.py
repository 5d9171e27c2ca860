"""The JSON query language, and `expr` variables in the formula language."""

from __future__ import annotations

from typing import Any

import pytest

from chargebrain.core.formula import DictEvalContext
from chargebrain.devices.meterdef import (
    MeterDefinitionError,
    QueryMiss,
    parse_expression,
    parse_query,
    parse_template,
)

DOC: dict[str, Any] = {
    "a": {"b": 5, "u2": {"x": 1}, "0": "zero", "with space": 7},
    "list": [10, 20, 30],
    "emeters": [
        {"power": 12.5, "current": 0.25},
        {"power": -3, "current": 1},
    ],
    "sensors": [
        {"el": "v1", "el2": 3, "value": 111},
        {"el": "v1", "el2": 4, "value": 222},
        {"el": "v2", "el2": 3.0, "value": 333, "flag": True},
    ],
    "by_id": {"k1": {"id": 1, "v": "one"}, "k2": {"id": 2, "v": "two"}},
    "n": None,
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a", DOC["a"]),
        ("a.b", 5),
        ('a["u2"].x', 1),
        ("a['u2']['x']", 1),
        ('a["with space"]', 7),
        ("list[0]", 10),
        ("list[2]", 30),
        ("list[-1]", 30),
        ("emeters[1].power", -3),
        ("emeters[0].current", 0.25),
        ('sensors[{"el":"v1","el2":4}].value', 222),
        ('sensors[{"el": "v1"}].value', 111),  # the first element that matches
        ('sensors[{"el2": 3, "el": "v2"}].value', 333),  # 3 matches 3.0
        ('sensors[{"flag": true}].value', 333),
        ('by_id[{"id": 2}].v', "two"),  # selecting among an object's values
        ("a[0]", "zero"),  # an integer index on an object looks up the key "0"
        (" emeters [1] . power ", -3),
        ("n", None),
        ("", DOC),
    ],
)
def test_query_selects(query: str, expected: Any) -> None:
    assert parse_query(query).apply(DOC) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("missing", "no key 'missing' (step 1"),
        ("a.b.c", "no key 'c' (step 3"),
        ("list[3]", "no element [3]"),
        ("list[-4]", "no element [-4]"),
        ("a.b[0]", "no element [0]"),
        ('sensors[{"el": "v9"}].value', "no element matches {'el': 'v9'}"),
        ('sensors[{"el2": "3"}]', "no element matches"),  # a string is not a number
        ('sensors[{"flag": 1}]', "no element matches"),  # true is not 1
        ("list.x", "no key 'x'"),
    ],
)
def test_query_misses(query: str, message: str) -> None:
    with pytest.raises(QueryMiss) as caught:
        parse_query(query).apply(DOC)
    assert message in str(caught.value)
    assert repr(query) in str(caught.value)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("a..b", "name expected after '.'"),
        (".a", "name expected before '.'"),
        ("a.", "name expected after '.'"),
        ("a[", "bad index"),
        ("a[1", "']' expected"),
        ("a[x]", "bad index"),
        ("a[1.5]", "index must be an integer"),
        ("a[true]", "index must be an integer"),
        ("a[{}]", "at least one field"),
        ("a b", "unexpected 'b'"),
        ("a[0]b", "unexpected 'b'"),
    ],
)
def test_query_syntax_errors(query: str, message: str) -> None:
    with pytest.raises(MeterDefinitionError) as caught:
        parse_query(query)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),
        ("12 / 3 / 2", 2.0),
        ("-a + b", 1.0),
        ("-(a + b) * 2", -10.0),
        ("--a", 2.0),
        ("+a", 2.0),
        ("0x10 + 1.5e1", 31.0),
        (".5 * 4", 2.0),
        ("a / zero", 0.0),  # a zero divisor gives 0
        ("M1.x * 2", 8.0),  # a variable spelt like a device field is the variable
        ("CM.var1 + cm.VAR1", 10.0),  # so is one spelt like a CM variable, in any case
        ("power_w_l1+power_w_l2", 3.0),
        ("POWER_W_L1", 1.0),  # names are case-insensitive, as everywhere in formulas
        # The whole formula language: functions, %, ^, comparisons, ?:, exists().
        ("max(a, b) + min(a, b)", 5.0),
        ("a % 2 + b % 2", 1.0),
        ("a ^ 3", 8.0),
        ("a > 1 ? 10 : 20", 10.0),
        ("abs(-b) + round(2.5) + clamp(a, 0, 1)", 7.0),
        ("exists(a)", 1.0),
    ],
)
def test_expressions_evaluate(text: str, expected: float) -> None:
    env = {
        "a": 2.0,
        "b": 3.0,
        "zero": 0.0,
        "M1.x": 4.0,
        "CM.var1": 5.0,
        "power_w_l1": 1.0,
        "power_w_l2": 2.0,
    }
    assert parse_expression(text).evaluate(env) == expected


def test_expression_names_and_missing_values() -> None:
    expr = parse_expression("a * (b - c) / 2")
    assert expr.names == {"a", "b", "c"}
    with pytest.raises(KeyError):
        expr.evaluate({"a": 1.0})
    assert parse_expression("CM.Var1 + M1.x + Power_W").names == {"CM.var1", "M1.x", "power_w"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("1 +", "expression '1 +': unexpected end of formula at position 4"),
        ("(1 + 2", "unexpected end of formula"),
        ("1 + 2)", "unexpected ')' at position 6"),
        ("a b", "unexpected 'b'"),
        ("foo(a, b)", "unknown function 'foo'"),
        ("max()", "max() takes at least 1 argument(s), got 0"),
        ("a.b.c.d", "unknown name 'a.b.c.d'"),
        ("*", "unexpected '*'"),
    ],
)
def test_expression_errors(text: str, message: str) -> None:
    with pytest.raises(MeterDefinitionError) as caught:
        parse_expression(text)
    assert message in str(caught.value)


def test_output_templates_render_in_the_managers_context() -> None:
    template = parse_template(
        "/set?p=${M1.power_w / 2}&on=${if M1.power_w > 0`yes`no}&a=${address}"
    )
    ctx = DictEvalContext(devices={"M1": {"power_w": 1001}})
    fields = {"address": "10.0.0.5", "id": "M3"}
    assert template.render(ctx, fields) == "/set?p=500.5&on=yes&a=10.0.0.5"
    ctx.set_device("M1", {"power_w": -4})
    assert template.render(ctx, fields) == "/set?p=-2&on=no&a=10.0.0.5"
    assert parse_template("${ id }").render(ctx, fields) == "M3"
    assert parse_template("plain").parts == ("plain",)
