"""Hostile meter definitions: every one is a MeterDefinitionError naming the problem,
never another exception (an upload answered 500), and nothing a definition holds can
make a reading infinite or fail a later answer."""

from __future__ import annotations

import pytest

from chargebrain.devices.meterdef import (
    MAX_EXPR_TOKENS,
    MAX_NESTING,
    MAX_VARIABLES,
    MeterDefinitionError,
    parse_definition,
    parse_expression,
    parse_json5,
)


def definition(variables: str, rtype: int = 1) -> str:
    return f'{{"rtype": {rtype}, "dev_type": "hostile", {variables}}}'


def refused(text: str) -> str:
    with pytest.raises(MeterDefinitionError) as caught:
        parse_definition(text)
    return caught.value.message


@pytest.mark.parametrize("number", ["9" * 5000, "-" + "9" * 5000, "0x" + "f" * 5000,
                                    "1" * 65, "1." + "0" * 70])
def test_numbers_with_too_many_digits_are_refused(number: str) -> None:
    assert "number" in refused(definition(f'"a": {{"fixed": {number}}}'))
    assert "number" in refused(f'{{"rtype": {number}, "dev_type": "x"}}')


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1e309"])
def test_numbers_no_float_holds_are_refused(number: str) -> None:
    assert "out of range" in refused(definition(f'"power_w": {{"fixed": {number}}}'))


def test_numbers_that_fit_are_read() -> None:
    assert parse_json5("[1e308, -0x7fffffff, 12345678901234567890]") == [
        1e308, -0x7FFFFFFF, 12345678901234567890]


def test_surrogate_pairs_are_one_character_and_lone_ones_are_refused() -> None:
    assert parse_json5('"car \\ud83d\\ude97"') == "car \U0001f697"
    for text in ('"\\ud800"', '"\\udc80x"', '"\\ud83d\\u0041"', '"x\\ud83d"'):
        with pytest.raises(MeterDefinitionError, match="surrogate"):
            parse_json5(text)
    assert "surrogate" in refused('{"rtype": 1, "dev_type": "x", "name": "\\ud800"}')


@pytest.mark.parametrize("expr", ["(" * 3000 + "1" + ")" * 3000, "-" * 3000 + "1",
                                  "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1),
                                  "-(" * 40 + "1" + ")" * 40])
def test_deep_expressions_are_refused(expr: str) -> None:
    # (3000 levels are also too long: either reason is a clean refusal.)
    with pytest.raises(MeterDefinitionError, match=r"nested too deeply|too long"):
        parse_expression(expr)
    assert "expression" in refused(definition(f'"a": {{"expr": "{expr}"}}'))


def test_long_expressions_are_refused() -> None:
    # A flat sum is a deep tree: evaluating it recursed once per term.
    expr = "+".join(["1"] * 3000)
    with pytest.raises(MeterDefinitionError, match="too long"):
        parse_expression(expr)
    assert parse_expression("+".join(["1"] * (MAX_EXPR_TOKENS // 2))).evaluate({}) == (
        MAX_EXPR_TOKENS // 2)
    assert parse_expression("(" * MAX_NESTING + "1" + ")" * MAX_NESTING).evaluate({}) == 1


@pytest.mark.parametrize("number", ["1e999", "9" * 400])
def test_expression_numbers_no_float_holds_are_refused(number: str) -> None:
    with pytest.raises(MeterDefinitionError, match="out of range"):
        parse_expression(f"2 * {number}")


def test_a_regex_nested_too_deep_is_refused() -> None:
    message = refused(definition('"a": {"address": "/x", "regex": "' + "(" * 3000
                                 + ")" * 3000 + '"}'))
    assert "regular expression" in message


def test_a_long_chain_of_expressions_is_refused() -> None:
    chain = ", ".join(f'"v{i}": {{"expr": "v{i - 1} + 1"}}' for i in range(1, 3000))
    assert "variables" in refused(definition('"v0": {"fixed": 1}, ' + chain))
    ok = ", ".join(f'"v{i}": {{"expr": "v{i - 1} + 1"}}' for i in range(1, MAX_VARIABLES))
    parsed = parse_definition(definition('"v0": {"fixed": 1}, ' + ok))
    assert parsed.expr_order[-1] == f"v{MAX_VARIABLES - 1}"
