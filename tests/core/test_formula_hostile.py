"""Random and hostile formula text: only FormulaError, never a hang, always a finite value."""

from __future__ import annotations

import math
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from chargebrain.core.formula import (
    RESULT_LIMIT,
    DictEvalContext,
    FormulaError,
    PriceSchedule,
    compile_formula,
)

CTX = DictEvalContext(
    now=1_717_400_000.0,
    devices={"M1": {"current": 5000, "power_w": -300}, "E1": {"current_l1": 16000}},
    cm={"x": 3, "_price": 1e300},
    self_values={"dt": 3, "big": 1e308, "nan": math.nan, "inf": math.inf},
    params={1: 2},
    prices=PriceSchedule.fixed(30),
)

FORMULA_CHARS = '0123456789.xXeEaAfF+-*/%^&|!=<>?:()," _MEcmpdtbginuw\\\n'
ATOMS = st.sampled_from(
    [
        "0",
        "1",
        "-1",
        "0.5",
        "1e308",
        "0xFFFFFFFFFFFFFFFFFF",
        "M1.current",
        "E1.current",
        "M9.power_w",
        "CM.x",
        "CM._price",
        "dt",
        "big",
        "nan",
        "inf",
        "date.hour",
        "param(1)",
        "min_price(0)",
        "max_price_secs(86400)",
        '"7"',
    ]
)
BINARY = ["+", "-", "*", "/", "%", "^", "&", "|", "==", "!=", "<", "<=", ">", ">=", "&&", "||"]


def expressions() -> st.SearchStrategy[str]:
    return st.recursive(
        ATOMS,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(BINARY), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            st.tuples(st.sampled_from(["-", "!", "+"]), inner).map(lambda t: f"{t[0]}{t[1]}"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
            st.tuples(
                st.sampled_from(["min", "max", "abs", "round", "sqrt", "clamp", "exists"]),
                st.lists(inner, min_size=1, max_size=3),
            ).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        ),
        max_leaves=40,
    )


def _compile_and_run(text: str) -> None:
    try:
        f = compile_formula(text)
    except FormulaError as exc:
        assert str(exc)
        return
    value = f.evaluate(CTX)
    assert isinstance(value, float | int)
    assert math.isfinite(value)
    assert -RESULT_LIMIT <= value <= RESULT_LIMIT


@settings(max_examples=400, deadline=timedelta(milliseconds=500))
@given(st.text(alphabet=FORMULA_CHARS, max_size=200))
def test_random_formula_text_only_raises_formula_error(text: str) -> None:
    _compile_and_run(text)


@settings(max_examples=200, deadline=timedelta(milliseconds=500))
@given(st.text(max_size=300))
def test_arbitrary_unicode_only_raises_formula_error(text: str) -> None:
    _compile_and_run(text)


@settings(max_examples=300, deadline=timedelta(milliseconds=500))
@given(expressions())
def test_generated_expressions_evaluate_to_finite_values(text: str) -> None:
    _compile_and_run(text)


@settings(max_examples=50, deadline=timedelta(seconds=2))
@given(
    st.sampled_from(["(", "-", "!", "1+", "min(", "1?", "((1)", "0x", '"', "^2"]),
    st.integers(min_value=100, max_value=3000),
)
def test_long_repetitions_fail_fast(chunk: str, count: int) -> None:
    _compile_and_run(chunk * count)
