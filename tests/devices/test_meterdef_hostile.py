"""Hostile meter definitions: every one is a MeterDefinitionError naming the problem,
never another exception (an upload answered 500), and nothing a definition holds can
make a reading infinite or fail a later answer."""

from __future__ import annotations

import time

import pytest

from chargebrain.core.formula import MAX_DEPTH, MAX_LENGTH
from chargebrain.devices.meterdef import (
    MAX_NUMBER_CHARS,
    MAX_VARIABLES,
    MeterDefinitionError,
    parse_definition,
    parse_expression,
    parse_json5,
    parse_query,
)
from chargebrain.devices.meterdef.json5 import _read  # the exact reader alone


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
                                  "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
                                  "-(" * 40 + "1" + ")" * 40])
def test_deep_expressions_are_refused(expr: str) -> None:
    # (3000 levels are also too long: either reason is a clean refusal.)
    with pytest.raises(MeterDefinitionError, match=r"nested too deeply|too long"):
        parse_expression(expr)
    assert "expression" in refused(definition(f'"a": {{"expr": "{expr}"}}'))


def test_long_expressions_are_refused() -> None:
    # An `expr` is a formula: at most MAX_LENGTH characters, a flat sum evaluated in a loop.
    expr = "+".join(["1"] * 3000)
    with pytest.raises(MeterDefinitionError, match="too long"):
        parse_expression(expr)
    longest = "+".join(["1"] * ((MAX_LENGTH + 1) // 2))
    assert len(longest) <= MAX_LENGTH
    assert parse_expression(longest).evaluate({}) == (MAX_LENGTH + 1) // 2
    with pytest.raises(MeterDefinitionError, match="too long"):
        parse_expression(longest + "+1")
    # The formula language counts the whole expression as one level of its MAX_DEPTH.
    deepest = "(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1)
    assert parse_expression(deepest).evaluate({}) == 1
    with pytest.raises(MeterDefinitionError, match="nested too deeply"):
        parse_expression("(" + deepest + ")")


@pytest.mark.parametrize("number", ["1e999", "9" * 400])
def test_expression_numbers_no_float_holds_are_refused(number: str) -> None:
    with pytest.raises(MeterDefinitionError, match="too large"):
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


# -- both readers refuse the same literals, naming their line ------------------------------

HOSTILE_LITERALS = [
    ("9" * 65, "number longer than"),
    ("-0x" + "f" * 62, "number longer than"),
    ("1e999", "out of range"),
    ("-1e309", "out of range"),
    ('"\\ud800"', "surrogate"),
    ('"car \\ude97 \\ud83d\\ude97"', "surrogate"),
    ("'\\udbff'", "surrogate"),
    ('"\ud800"', "surrogate"),  # a raw one, in a text that was never UTF-8
]


@pytest.mark.parametrize(("literal", "message"), HOSTILE_LITERALS)
@pytest.mark.parametrize("json5", [False, True])
def test_both_readers_refuse_a_literal_on_its_line(literal: str, message: str,
                                                   json5: bool) -> None:
    # Plain JSON goes through the standard library's decoder, JSON5 through the rewriting.
    gap = " // a comment\n" if json5 else "\n"
    text = '{"rtype": 1, "dev_type": "x",' + gap + '"a": {"fixed": 1},\n"b": {"fixed": ' + (
        literal + "}}")
    for read in (parse_json5, lambda t: _read(t, 0, whole=True)):
        with pytest.raises(MeterDefinitionError, match=message) as caught:
            read(text)
        assert caught.value.line == 3
    assert message in refused(text)


def test_a_lone_surrogate_in_a_key_is_refused() -> None:
    with pytest.raises(MeterDefinitionError, match="surrogate") as caught:
        parse_definition('{"rtype": 1, "dev_type": "x",\n"a\\udc00": {"fixed": 1}}')
    assert caught.value.line == 2


def test_the_longest_numbers_are_read_by_both_readers() -> None:
    longest = ["1" * MAX_NUMBER_CHARS, "-0x" + "f" * (MAX_NUMBER_CHARS - 3),
               "0." + "5" * (MAX_NUMBER_CHARS - 2), "1.5e308"]
    text = "[" + ", ".join(longest) + "]"
    expected = [int(longest[0]), -int("f" * (MAX_NUMBER_CHARS - 3), 16), float(longest[2]),
                1.5e308]
    assert parse_json5(text) == expected
    assert _read(text, 0, whole=True)[0] == expected
    assert parse_json5('["\\ud83d\\ude97", "\\uD83D\\uDE97", "\\ue000"]') == [
        "\U0001f697", "\U0001f697", "\ue000"]


@pytest.mark.parametrize("index", ["1e999", "9" * 65, "'\\\\ud800'", "{'id': 1e999}"])
def test_hostile_query_indexes_are_refused(index: str) -> None:
    # (The definition's string holds `\\ud800`: the query itself has the escape.)
    assert "bad index" in refused(definition(f'"a": {{"address": "/x", "query": "a[{index}]"}}'))
    with pytest.raises(MeterDefinitionError, match="bad index"):
        parse_query("a[" + index.replace("'", '"').replace("\\\\", "\\") + "]")


def test_a_regex_repeating_beyond_any_count_is_refused() -> None:
    message = refused(definition('"a": {"address": "/x", "regex": "a{4294967296}"}'))
    assert "regular expression" in message


def test_too_many_variables_name_the_first_one_too_many() -> None:
    many = ",\n".join(f'"v{i}": {{"fixed": {i}}}' for i in range(MAX_VARIABLES + 1))
    with pytest.raises(MeterDefinitionError, match="variables") as caught:
        parse_definition('{"rtype": 1, "dev_type": "x",\n' + many + "}")
    assert caught.value.line == MAX_VARIABLES + 2
    assert caught.value.field == f"v{MAX_VARIABLES}"


def test_a_query_of_thousands_of_indexes_is_read_in_linear_time() -> None:
    # Each index looked for surrogate escapes in the rest of the query: 70 s for this one.
    query = "a" + '[{"x":1}]' * 10_000
    start = time.perf_counter()
    assert len(parse_query(query).steps) == 10_001
    assert time.perf_counter() - start < 5.0
