"""Rule sets of the newer model (`crule_set`) run as a small program."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from chargebrain.core.formula import DictEvalContext
from chargebrain.core.rules import (
    A_PV_SURPLUS,
    A_SET,
    A_SOLAR,
    C_ALWAYS,
    C_FEED_IN,
    C_FORMULA,
    C_GRID_SUPPLY,
    C_PRICE,
    C_PRICE_LEVEL,
    C_PV_SURPLUS,
    C_SOLAR,
    C_TIME,
    F_END,
    F_NOT,
    F_PV,
    RuleContext,
    RuleResult,
    RuleState,
    compile_rules,
    evaluate_evse_rules,
    rules_from_params,
)

BERLIN = ZoneInfo("Europe/Berlin")


def at(hour: int, minute: int = 0, second: int = 0, day: int = 3) -> float:
    return datetime(2024, 6, day, hour, minute, second, tzinfo=BERLIN).timestamp()


def rule_set(rules: list[dict[str, Any]], **sets: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rule_set": {"": rules, **sets}, "selected_id": ""}


def run(
    crule: object, now: float, state: RuleState | None = None, **kw: Any
) -> tuple[RuleResult, RuleState]:
    base: dict[str, Any] = {"dev_id": "E2", "evse_max_ma": 16000, "tz": BERLIN}
    base.update(kw)
    return evaluate_evse_rules(
        compile_rules(crule), None, RuleContext(**base), state or RuleState(), now
    )


def test_empty_rule_set_gives_no_wish() -> None:
    assert run(rule_set([]), at(12))[0].wish_ma is None
    assert run({"rule_set": {}}, at(12))[0].wish_ma is None
    assert (
        run(rule_set([{"ctype": C_ALWAYS, "aexpr": "9000", "ena": False}]), at(12))[0].wish_ma
        is None
    )


def test_start_value_zero_when_nothing_fulfilled() -> None:
    crule = rule_set([{"id": 1, "ctype": C_TIME, "time": 0, "dur": 60, "aexpr": "16000"}])
    result, _ = run(crule, at(12))
    assert (result.wish_ma, result.source) == (0, "EVSE rules: none applies")
    result, _ = run(crule, at(0, 30))
    assert (result.wish_ma, result.source) == (16000, "EVSE rule id 1 (time: set value)")


def test_later_rules_override_unless_end() -> None:
    rules = [
        {"id": 1, "ctype": C_ALWAYS, "atype": A_SET, "aexpr": "6000"},
        {"id": 2, "ctype": C_TIME, "time": 22 * 60, "dur": 8 * 60, "aexpr": "16000"},
        {"id": 3, "ctype": C_FORMULA, "cexpr": "date.hour == 23", "aexpr": "11000"},
    ]
    fctx = DictEvalContext(now=at(12), tz=BERLIN)
    assert run(rule_set(rules), at(12), formula=fctx)[0].wish_ma == 6000
    fctx.set_now(at(22, 30))
    assert run(rule_set(rules), at(22, 30), formula=fctx)[0].wish_ma == 16000
    fctx.set_now(at(23, 30))
    result, _ = run(rule_set(rules), at(23, 30), formula=fctx)
    assert (result.wish_ma, result.source) == (11000, "EVSE rule id 3 (formula: set value)")
    ended = [dict(rules[1], flags=F_END), rules[2]]
    assert run(rule_set(ended), at(23, 30), formula=fctx)[0].wish_ma == 16000


def test_not_flag_and_weekdays() -> None:
    rules = [{"id": 7, "ctype": C_TIME, "time": 480, "dur": 600, "flags": F_NOT, "aexpr": "9000"}]
    assert run(rule_set(rules), at(12))[0].wish_ma == 0
    result, _ = run(rule_set(rules), at(20))
    assert (result.wish_ma, result.source) == (9000, "EVSE rule id 7 (not time: set value)")
    weekend_only = [{"ctype": C_ALWAYS, "days": 0b1100000, "aexpr": "9000"}]
    assert run(rule_set(weekend_only), at(12))[0].wish_ma == 0  # Monday
    assert run(rule_set(weekend_only), at(12, day=8))[0].wish_ma == 9000  # Saturday


def test_pv_surplus_condition_and_action() -> None:
    rules = [
        {
            "id": 1,
            "ctype": C_PV_SURPLUS,
            "cexpr": "6500",
            "atype": A_PV_SURPLUS,
            "aexpr": "1",
            "udur": 300,
            "flags": F_PV | F_END,
        },
        {"id": 2, "ctype": C_ALWAYS, "aexpr": "0"},
    ]
    state = RuleState()
    result, state = run(rule_set(rules), at(12), state, surplus_ma=9000)
    assert (result.wish_ma, result.surplus) == (9000, True)
    result, state = run(rule_set(rules), at(12, 0, 3), state, surplus_ma=2000)
    assert (result.wish_ma, result.undercut) == (6000, True)  # held at min current
    result, state = run(rule_set(rules), at(12, 6), state, surplus_ma=2000)
    assert (result.wish_ma, result.source) == (0, "EVSE rule id 2 (always: set value)")
    half = [{"ctype": C_ALWAYS, "atype": A_PV_SURPLUS, "aexpr": "0.5"}]
    assert run(rule_set(half), at(12), surplus_ma=20000)[0].wish_ma == 10000
    no_factor = [{"ctype": C_ALWAYS, "atype": A_SOLAR}]
    assert run(rule_set(no_factor), at(12), solar_ma=30000)[0].wish_ma == 16000


def test_measurement_and_price_conditions() -> None:
    def one(ctype: int, cexpr: str, **kw: Any) -> int | None:
        crule = rule_set([{"ctype": ctype, "cexpr": cexpr, "aexpr": "7000"}])
        return run(crule, at(12), **kw)[0].wish_ma

    assert one(C_SOLAR, "8000", solar_ma=8000) == 7000
    assert one(C_SOLAR, "8000", solar_ma=7999) == 0
    assert one(C_GRID_SUPPLY, "1000", grid_import_ma=1500) == 7000
    assert one(C_FEED_IN, "1000", grid_export_ma=500) == 0
    assert one(C_PRICE_LEVEL, "-5", price_level=-6) == 7000
    assert one(C_PRICE_LEVEL, "-5", price_level=-4) == 0
    assert one(C_PRICE_LEVEL, "-5") == 0
    assert one(C_PRICE, "25", price=24.9) == 7000
    assert one(C_PRICE, "25", price=25.1) == 0
    assert one(C_FORMULA, "0") == 0
    assert one(C_FORMULA, "-1") == 0


def test_unknown_codes_are_harmless() -> None:
    rules = [
        {"id": 1, "ctype": C_ALWAYS, "aexpr": "8000"},
        {"id": 2, "ctype": 999, "aexpr": "16000"},
        {"id": 3, "ctype": C_ALWAYS, "atype": 77, "aexpr": "16000", "flags": F_END},
        {"id": 4, "ctype": C_TIME, "aexpr": "16000"},  # time without duration never applies
    ]
    result, _ = run(rule_set(rules), at(12))
    assert (result.wish_ma, result.source) == (8000, "EVSE rule id 1 (always: set value)")


def test_selected_rule_set() -> None:
    crule = {
        "rule_set": {"": [{"ctype": C_ALWAYS, "aexpr": "6000"}], "eco": [{"aexpr": "9000"}]},
        "selected_id": "eco",
    }
    assert run(crule, at(12))[0].wish_ma == 9000
    crule["selected_id"] = "missing"
    assert run(crule, at(12))[0].wish_ma == 6000
    assert rules_from_params({"crule_set": crule, "charging_rules": []}) is crule
    assert rules_from_params({"charging_rules": [1]}) == [1]
    assert rules_from_params({}) is None


def test_bad_formula_in_rule_set_is_inert_and_reported() -> None:
    crule = rule_set([{"ctype": C_ALWAYS, "aexpr": "16000 +"}, {"ctype": 0, "aexpr": 7000}])
    compiled = compile_rules(crule)
    assert compiled.errors and "aexpr" in compiled.errors[0]
    assert compiled.program[0].error is not None
    result, _ = evaluate_evse_rules(compiled, None, RuleContext("E2", 16000), RuleState(), at(12))
    assert result.wish_ma == 7000  # numeric aexpr accepted
    assert compiled.device_ids() == set()


def test_rule_set_combined_with_classic_user_rules() -> None:
    evse = compile_rules(rule_set([{"ctype": C_ALWAYS, "aexpr": "16000"}]))
    user = compile_rules([{"current": 10000}])
    result, _ = evaluate_evse_rules(evse, user, RuleContext("E2", 16000), RuleState(), at(12))
    assert (result.wish_ma, result.source) == (10000, "user rule 1 (fixed current)")
