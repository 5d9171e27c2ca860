"""Rule validation for the API, and the surplus / price inputs of the rules."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargebrain.core.formula import DictEvalContext, compile_formula
from chargebrain.core.phases import Phases
from chargebrain.core.rules import (
    MAX_RULES,
    PRICE_LEVEL_NORMAL,
    PRICE_MODEL_CM,
    PRICE_MODEL_FIXED,
    RuleContext,
    RuleState,
    compile_rules,
    evaluate_evse_rules,
    power_to_phase_current_ma,
    price_cm_vars,
    resolve_price,
    surplus_current_ma,
    surplus_phases_from_grid,
    surplus_w_from_balance,
    surplus_w_from_formula,
    surplus_w_from_grid,
    validate_rules,
)

SEED_RULE: dict[str, Any] = {
    "days": 31,
    "mode": 0,
    "current": 16000,
    "enabled": True,
    "udur": 300,
    "time": 480,
    "dur": 600,
    "expr": "",
    "input": "",
    "price_level": 0,
    "solar": 0,
}


def test_valid_rules_pass() -> None:
    assert validate_rules([]) == []
    assert validate_rules(None) == []
    assert validate_rules([SEED_RULE]) == []
    assert validate_rules([{"mode": 5, "solar": 6500, "udur": 300}]) == []
    assert (
        validate_rules([{"expr": "min(16000, 29000 - M3.current)", "input": "E1.input2 1"}]) == []
    )
    assert (
        validate_rules([{"mode": 1, "current": 50.0, "enabled": 1, "cmt": "extra keys ok"}]) == []
    )
    assert validate_rules({"rule_set": {"": [{"ctype": 2, "cexpr": "6000", "aexpr": 1}]}}) == []


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"days": 200}, "days must be an integer 0..127"),
        ({"days": "mon"}, "days must be an integer"),
        ({"days": True}, "days must be an integer"),
        ({"mode": 6}, "mode must be an integer 0..5"),
        ({"mode": 2.5}, "mode must be an integer"),
        ({"time": 1440}, "time must be an integer 0..1439"),
        ({"dur": -1}, "dur must be an integer 0..1440"),
        ({"udur": 10**9}, "udur"),
        ({"price_level": 2}, "price_level must be an integer -6..0"),
        ({"current": -5}, "current must be a number"),
        ({"current": float("nan")}, "current must be a number"),
        ({"current": "16A"}, "current must be a number"),
        ({"solar": [1]}, "solar must be a number"),
        ({"mode": 1, "current": 150}, "percentage"),
        ({"enabled": "yes"}, "enabled must be true or false"),
        ({"expr": "16000 - "}, "expr: column"),
        ({"expr": 5}, "expr must be a formula string"),
        ({"expr": "os.system(1)"}, "unknown function"),
        ({"expr": "os.path"}, "unknown name"),
        ({"input": 3}, "input must be a string"),
        ({"input": "PB.input1 2"}, "input level must be 0 or 1"),
        ({"input": "a b c"}, "input must be"),
        ({"input": "lb_cur"}, "must name a device input"),
    ],
)
def test_bad_classic_rules(rule: dict[str, Any], fragment: str) -> None:
    errors = validate_rules([rule])
    assert errors, rule
    assert errors[0].startswith("rule 1: ")
    assert any(fragment in e for e in errors), errors


def test_bad_shapes() -> None:
    assert validate_rules("x") == ["rules must be a list of rule objects or a rule-set object"]
    assert validate_rules([1]) == ["rule 1: must be an object"]
    assert validate_rules([{}] * (MAX_RULES + 1))[0].startswith("too many rules")
    assert validate_rules({"rule_set": []}) == ["rule_set must be an object of rule lists"]
    errors = validate_rules(
        {
            "rule_set": {"": [{"ctype": "a", "ena": 3, "cexpr": "(", "cmt": 5}], "x": 5},
            "selected_id": 1,
        }
    )
    joined = "\n".join(errors)
    for fragment in ["selected_id", "ctype", "ena", "cexpr", "cmt", "rule set 'x' must be a list"]:
        assert fragment in joined


def test_known_devices() -> None:
    rules = [{"expr": "M3.current + E9.current"}, {"input": "E7.input1"}]
    errors = validate_rules(rules, known_devices=["m3", "E1"])
    assert errors == [
        "rule 1: expr: unknown device 'E9'",
        "rule 2: input: unknown device 'E7'",
    ]


def test_hostile_formulas_rejected_quickly() -> None:
    nasty = ["(" * 4000, "-" * 4090 + "1", "x" * 10_000, "min(" * 1000, "1?" * 1000 + "1", "1 +"]
    rules = [{"expr": text} for text in nasty]
    start = time.perf_counter()
    errors = validate_rules(rules)
    assert len(errors) == len(rules)
    # Too much formula text in one request is refused without compiling anything.
    flood = [{"expr": "1+" * 2000 + "1"} for _ in range(MAX_RULES)]
    assert validate_rules(flood) == ["formulas too long in total (more than 32768 characters)"]
    assert validate_rules({"rule_set": {"": [{"cexpr": "1" * 4000}] * 20}})[0].startswith(
        "formulas too long"
    )
    assert time.perf_counter() - start < 2.0
    # A long but flat sum is legitimate: accepted, and cheap to evaluate.
    assert validate_rules([{"expr": "1+" * 2000 + "1"}]) == []


# -- surplus -------------------------------------------------------------------------------


def test_surplus_sources() -> None:
    # Grid meter shows 1 kW export while the car draws 4 kW: 5 kW surplus.
    assert surplus_w_from_grid(grid_power_w=-1000, evse_power_w=4000) == 5000
    assert surplus_w_from_grid(grid_power_w=500, evse_power_w=0) == -500
    assert surplus_w_from_balance(production_w=6000, consumption_w=1500) == 4500
    ctx = DictEvalContext(cm={"reserve": 300})
    formula = compile_formula("CM._org_surplus - CM.reserve")
    assert surplus_w_from_formula(formula, ctx, org_surplus_w=5000) == 4700
    assert ctx.cm_value("_org_surplus") is None  # the context itself is not changed


def test_power_to_current_per_phase() -> None:
    assert surplus_current_ma(4600, 1) == 20000
    assert surplus_current_ma(4140, 3) == 6000
    assert surplus_current_ma(-690, 3) == -1000
    assert power_to_phase_current_ma(4600, 0) == 20000  # phases clamped to 1..3
    assert power_to_phase_current_ma(6900, 5) == 10000
    assert power_to_phase_current_ma(float("inf"), 3) == 0
    assert power_to_phase_current_ma(1000, 1, voltage=0) == 0
    per_phase = surplus_phases_from_grid(Phases(-2000, 1000, 0), Phases(6000, 6000, 6000))
    assert per_phase == Phases(8000, 5000, 6000)


# -- prices --------------------------------------------------------------------------------


def test_price_sources() -> None:
    assert resolve_price(PRICE_MODEL_FIXED, {}, fixed_price=30.0) == (30.0, PRICE_LEVEL_NORMAL)
    assert resolve_price(PRICE_MODEL_FIXED, {}, fixed_price=30.0, fixed_level=-6) == (30.0, -6)
    assert resolve_price(PRICE_MODEL_FIXED, {}) == (None, None)
    cm = {"_SET_PRICE": 12.5, "_set_price_level": -5.2}
    assert resolve_price(PRICE_MODEL_CM, cm) == (12.5, -5)
    assert resolve_price(PRICE_MODEL_CM, {}) == (None, None)
    assert resolve_price(PRICE_MODEL_CM, {"_set_price": float("nan")}) == (None, None)
    assert resolve_price("tibber", cm) == (None, None)
    assert price_cm_vars(12.5, -5) == {"_price": 12.5, "_price_level": -5.0}
    assert price_cm_vars(None, None) == {}
    ctx = DictEvalContext()
    ctx.update_cm(price_cm_vars(*resolve_price(PRICE_MODEL_CM, cm)))
    assert compile_formula("CM._price_level <= -5 ? CM._price : 0").evaluate(ctx) == 12.5


# -- robustness ----------------------------------------------------------------------------

JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["PB.input1 1", "M1.current > 0", "1 +", "(" * 70, "E1.input2 0"]),
    st.lists(st.integers(), max_size=2),
)
CLASSIC_KEYS = ["days", "time", "dur", "mode", "current", "enabled", "udur", "expr", "input"]
PROGRAM_KEYS = ["days", "ctype", "cexpr", "atype", "aexpr", "time", "dur", "udur", "flags", "ena"]


@settings(max_examples=200, deadline=timedelta(milliseconds=500))
@given(
    st.lists(
        st.dictionaries(st.sampled_from([*CLASSIC_KEYS, "price_level", "solar"]), JSON_VALUES),
        max_size=5,
    ),
    st.lists(st.dictionaries(st.sampled_from(PROGRAM_KEYS), JSON_VALUES), max_size=5),
    st.integers(min_value=-20000, max_value=20000),
)
def test_any_rule_objects_compile_and_evaluate_without_raising(
    classic: list[dict[str, Any]], program: list[dict[str, Any]], surplus: int
) -> None:
    ctx = RuleContext("E1", 16000, surplus_ma=surplus, solar_ma=surplus, price_level=-5)
    state = RuleState()
    for raw in (classic, {"rule_set": {"": program}}):
        assert isinstance(validate_rules(raw), list)
        compiled = compile_rules(raw)
        for now in (0.0, 100.0, 1e9):
            result, state = evaluate_evse_rules(compiled, compiled, ctx, state, now)
            assert result.wish_ma is None or 0 <= result.wish_ma <= 16000
