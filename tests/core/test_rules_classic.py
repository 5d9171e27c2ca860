"""Classic charging rules on a virtual timeline (just increasing `now`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from chargebrain.core.formula import DictEvalContext
from chargebrain.core.rules import (
    MET,
    NO_VARIABLES,
    CompiledRules,
    LocalClock,
    RuleContext,
    RuleResult,
    RuleState,
    compile_rules,
    evaluate_all,
    evaluate_evse_rules,
)

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = (2024, 6, 3)  # 2024-06-03 is a Monday


def at(day_offset: int, hour: int, minute: int = 0, second: int = 0) -> float:
    y, m, d = MONDAY
    return datetime(y, m, d + day_offset, hour, minute, second, tzinfo=BERLIN).timestamp()


def ctx(**kw: Any) -> RuleContext:
    base: dict[str, Any] = {"dev_id": "E1", "evse_max_ma": 16000, "tz": BERLIN}
    base.update(kw)
    return RuleContext(**base)


def run(
    evse: list[dict[str, Any]] | None,
    now: float,
    user: list[dict[str, Any]] | None = None,
    state: RuleState | None = None,
    **kw: Any,
) -> tuple[RuleResult, RuleState]:
    return evaluate_evse_rules(
        compile_rules(evse) if evse is not None else None,
        compile_rules(user) if user is not None else None,
        ctx(**kw),
        state or RuleState(),
        now,
    )


def wish(evse: list[dict[str, Any]] | None, now: float, **kw: Any) -> int | None:
    return run(evse, now, **kw)[0].wish_ma


# -- time and weekdays ---------------------------------------------------------------------


def test_time_window_over_a_day() -> None:
    rules = [{"time": 480, "dur": 600, "mode": 0, "current": 10000, "enabled": True}]
    timeline = {
        at(0, 0): 0,
        at(0, 7, 59): 0,
        at(0, 8, 0): 10000,
        at(0, 12, 0): 10000,
        at(0, 17, 59): 10000,
        at(0, 18, 0): 0,
        at(0, 23, 59): 0,
    }
    for now, expected in timeline.items():
        result, _ = run(rules, now)
        assert result.wish_ma == expected, datetime.fromtimestamp(now, BERLIN)
        assert result.source == (
            "EVSE rule 1 (time, fixed current)" if expected else "EVSE rules: none applies"
        )


def test_window_across_midnight_belongs_to_its_start_day() -> None:
    monday_night = [{"days": 0b0000001, "time": 22 * 60, "dur": 8 * 60, "current": 11000}]
    assert wish(monday_night, at(0, 21, 59)) == 0
    assert wish(monday_night, at(0, 22, 0)) == 11000
    assert wish(monday_night, at(1, 0, 0)) == 11000  # Tuesday 00:00
    assert wish(monday_night, at(1, 5, 59)) == 11000
    assert wish(monday_night, at(1, 6, 0)) == 0
    assert wish(monday_night, at(0, 3, 0)) == 0  # started Sunday night: Sunday not selected
    assert wish(monday_night, at(1, 22, 30)) == 0  # Tuesday not selected
    every_night = [{"time": 22 * 60, "dur": 8 * 60, "current": 11000}]
    assert wish(every_night, at(0, 3, 0)) == 11000
    assert wish(every_night, at(1, 23, 0)) == 11000


def test_whole_day_window_and_weekdays() -> None:
    weekend = [{"days": 0b1100000, "current": 16000}]  # Saturday and Sunday
    assert wish(weekend, at(0, 12)) == 0  # Monday
    assert wish(weekend, at(4, 12)) == 0  # Friday
    assert wish(weekend, at(5, 12)) == 16000  # Saturday
    assert wish(weekend, at(6, 12)) == 16000  # Sunday
    everyday = [{"days": 0, "current": 7000}]
    assert all(wish(everyday, at(d, 12)) == 7000 for d in range(7))
    full = [{"time": 0, "dur": 1440, "current": 7000, "days": 1}]
    assert wish(full, at(0, 23, 59)) == 7000
    assert wish(full, at(1, 0, 0)) == 0


def test_local_clock_is_wall_clock_time() -> None:
    clock = LocalClock.at(at(6, 13, 5, 7), BERLIN)
    assert (clock.weekday, clock.dayminute, clock.daysecond) == (6, 13 * 60 + 5, 47107)
    precomputed = ctx(clock=LocalClock(weekday=5, dayminute=0, daysecond=0))
    rules = compile_rules([{"days": 0b0100000, "current": 9000}])
    assert evaluate_evse_rules(rules, None, precomputed, RuleState(), at(0, 12))[0].wish_ma == 9000


# -- modes ---------------------------------------------------------------------------------


def test_modes_absolute_and_percent() -> None:
    assert wish([{"mode": 0, "current": 9000}], at(0, 12)) == 9000
    assert wish([{"mode": 1, "current": 50}], at(0, 12)) == 8000  # 50 % of 16 A
    assert wish([{"mode": 1, "current": 50}], at(0, 12), evse_max_ma=32000) == 16000
    assert wish([{"mode": 0, "current": 40000}], at(0, 12)) == 16000  # clipped to max
    assert wish([{"mode": 0, "current": 0}], at(0, 12)) == 0


def test_solar_modes() -> None:
    now = at(0, 12)
    assert wish([{"mode": 2}], now, solar_ma=9000) == 9000
    assert wish([{"mode": 2}], now, solar_ma=5000) == 0  # below min current: not met
    assert wish([{"mode": 3, "current": 50}], now, solar_ma=14000) == 7000
    assert wish([{"mode": 3, "current": 50}], now, solar_ma=10000) == 0
    assert wish([{"mode": 4, "current": 3000}], now, solar_ma=12000) == 9000
    assert wish([{"mode": 4, "current": 3000}], now, solar_ma=8000) == 0
    assert wish([{"mode": 5}], now, surplus_ma=7200) == 7200
    assert wish([{"mode": 5}], now, surplus_ma=30000) == 16000
    result, _ = run([{"mode": 5}], now, surplus_ma=7200)
    assert result.surplus and result.source == "EVSE rule 1 (solar surplus)"


def test_surplus_start_threshold() -> None:
    rule = [{"mode": 5, "solar": 6500}]
    now = at(0, 12)
    assert wish(rule, now, surplus_ma=6200) == 0  # above min current, below threshold
    assert wish(rule, now, surplus_ma=6500) == 6500
    low = [{"mode": 5, "solar": 3000}]  # threshold below min current: min current counts
    assert wish(low, now, surplus_ma=5000) == 0
    assert wish(low, now, surplus_ma=6000) == 6000


def test_solar_threshold_on_absolute_rule() -> None:
    rule = [{"mode": 0, "current": 16000, "solar": 10000}]
    assert wish(rule, at(0, 12), solar_ma=9000) == 0
    result, _ = run(rule, at(0, 12), solar_ma=10000)
    assert result.wish_ma == 16000 and not result.surplus
    assert result.source == "EVSE rule 1 (solar, fixed current)"


def test_solar_day_with_clouds_and_undercut() -> None:
    rules = [{"mode": 5, "solar": 6500, "udur": 300, "enabled": True}]
    # (seconds after 08:00, surplus mA, expected wish, undercut?)
    story = [
        (0, 0, 0, False),
        (3600, 6000, 0, False),  # not enough to start
        (7200, 8000, 8000, False),  # starts
        (7203, 9100, 9100, False),
        (7206, 2000, 6000, True),  # cloud: held at min current
        (7300, 1500, 6000, True),
        (7400, 8200, 8200, False),  # sun back: follows surplus again
        (7403, 3000, 6000, True),  # longer cloud begins at 7403
        (7703, 3000, 6000, True),  # 300 s later: still within undercut
        (7704, 3000, 0, False),  # undercut over: stops
        (7800, 3000, 0, False),
        (7900, 6400, 0, False),  # below start threshold: stays off
        (8000, 7000, 7000, False),  # restarts
    ]
    state = RuleState()
    start = at(0, 8)
    for offset, surplus, expected, undercut in story:
        result, state = run(rules, start + offset, surplus_ma=surplus, state=state)
        assert (result.wish_ma, result.undercut) == (expected, undercut), offset
        if undercut:
            assert result.source == "EVSE rule 1 (solar surplus, undercut)"


def test_undercut_zero_stops_at_once() -> None:
    rules = [{"mode": 5, "udur": 0}]
    state = RuleState()
    result, state = run(rules, at(0, 12), surplus_ma=8000, state=state)
    assert result.wish_ma == 8000
    result, state = run(rules, at(0, 12, 0, 3), surplus_ma=2000, state=state)
    assert result.wish_ma == 0
    assert state.entries == {}


def test_solar_rule_without_udur_holds_through_a_cloud_for_600_s() -> None:
    rules = [{"mode": 5}]
    state = RuleState()
    result, state = run(rules, at(0, 12), surplus_ma=8000, state=state)
    assert result.wish_ma == 8000
    result, state = run(rules, at(0, 12, 0, 3), surplus_ma=2000, state=state)
    assert (result.wish_ma, result.undercut) == (6000, True)
    result, state = run(rules, at(0, 12, 10, 3), surplus_ma=2000, state=state)
    assert (result.wish_ma, result.undercut) == (6000, True)
    result, state = run(rules, at(0, 12, 10, 4), surplus_ma=2000, state=state)
    assert result.wish_ma == 0
    # A fixed-current rule has no undercut unless it says so.
    def udur(rule: dict[str, Any]) -> float:
        return compile_rules([rule]).classic[0].udur

    assert udur({"mode": 0, "current": 8000}) == 0
    assert udur({"mode": 2}) == 600
    assert udur({"mode": 0, "current": 8000, "solar": 7000}) == 600


def test_undercut_memory_follows_weather_even_when_another_rule_wins() -> None:
    rules = [
        {"time": 600, "dur": 60, "current": 10000},  # 10:00-11:00 fixed
        {"mode": 5, "udur": 300},
    ]
    state = RuleState()
    result, state = run(rules, at(0, 10, 30), surplus_ma=9000, state=state)
    assert result.wish_ma == 10000
    assert state.get(("E1", "evse", 1)) == MET
    result, state = run(rules, at(0, 10, 40), surplus_ma=1000, state=state)  # cloud at 10:40
    assert result.wish_ma == 10000
    # At 11:00 the time rule ends; the cloud began 20 min ago, so no undercut is left.
    result, state = run(rules, at(0, 11, 0), surplus_ma=1000, state=state)
    assert result.wish_ma == 0


def test_state_is_immutable_and_per_device() -> None:
    rules = [{"mode": 5, "udur": 300}]
    original = RuleState()
    _, after = run(rules, at(0, 12), surplus_ma=9000, state=original)
    assert original.entries == {}
    assert after.entries == {("E1", "evse", 0): MET}
    _, same = run(rules, at(0, 12, 0, 3), surplus_ma=9000, state=after)
    assert same is after  # nothing changed: no copy
    assert after.without_device("E2") is after
    assert after.without_device("E1").entries == {}


# -- price, input, formula -------------------------------------------------------------------


def test_price_level_rule() -> None:
    rules = [{"price_level": -5, "mode": 0, "current": 16000}]  # cheap or very cheap
    now = at(0, 12)
    assert wish(rules, now, price_level=-4) == 0  # normal: not cheap enough
    assert wish(rules, now, price_level=-5) == 16000
    assert wish(rules, now, price_level=-6) == 16000
    assert wish(rules, now, price_level=None) == 0  # unknown price: rule does not apply
    assert wish([{"price_level": 0, "current": 5000}], now) == 5000  # 0 = no price condition


def test_input_rules() -> None:
    fctx = DictEvalContext(pb={"input1": 1}, devices={"E1": {"input2": 0}})
    now = at(0, 12)
    assert wish([{"input": "PB.input1", "current": 9000}], now, formula=fctx) == 9000
    assert wish([{"input": "PB.input1 0", "current": 9000}], now, formula=fctx) == 0
    assert wish([{"input": "E1.input2 0", "current": 7000}], now, formula=fctx) == 7000
    assert wish([{"input": "E1.input2 1", "current": 7000}], now, formula=fctx) == 0
    assert wish([{"input": "PB.input2", "current": 7000}], now, formula=fctx) == 0
    result, _ = run([{"input": "PB.input1", "current": 9000}], now, formula=fctx)
    assert result.source == "EVSE rule 1 (input, fixed current)"


def test_expression_rules() -> None:
    fctx = DictEvalContext(now=at(0, 7), tz=BERLIN, devices={"M1": {"current": 9000}})
    rule = [{"expr": "date.dayminute >= 480 ? 8000 : 0"}]
    result, _ = run(rule, at(0, 7), formula=fctx)
    assert (result.wish_ma, result.source) == (0, "EVSE rule 1 (formula)")
    fctx.set_now(at(0, 9))
    assert wish(rule, at(0, 9), formula=fctx) == 8000
    assert wish([{"expr": "16000 - M1.current"}], at(0, 9), formula=fctx) == 7000
    assert wish([{"expr": "-5"}], at(0, 9), formula=fctx) == 0
    timed: list[dict[str, Any]] = [{"expr": "12000", "time": 600, "dur": 60}, {"current": 6000}]
    assert wish(timed, at(0, 10, 30), formula=fctx) == 12000
    assert wish(timed, at(0, 11, 30), formula=fctx) == 6000


def test_first_applying_rule_wins() -> None:
    rules = [
        {"time": 600, "dur": 120, "current": 6000},
        {"current": 16000},
    ]
    assert wish(rules, at(0, 10, 30)) == 6000
    assert wish(rules, at(0, 13, 0)) == 16000
    disabled_first = [{"current": 6000, "enabled": False}, {"current": 11000}]
    assert wish(disabled_first, at(0, 10)) == 11000


# -- EVSE and user lists ---------------------------------------------------------------------


def test_empty_lists_mean_no_wish() -> None:
    result, _ = run([], at(0, 12))
    assert (result.wish_ma, result.source) == (None, "no rules")
    assert wish(None, at(0, 12)) is None
    assert wish([{"current": 7000, "enabled": False}], at(0, 12)) is None  # all disabled
    result, _ = run([], at(0, 12), user=[])
    assert result.wish_ma is None


def test_non_empty_list_without_applying_rule_pauses() -> None:
    result, _ = run([{"time": 0, "dur": 60, "current": 16000}], at(0, 12))
    assert (result.wish_ma, result.source) == (0, "EVSE rules: none applies")


def test_lower_of_evse_and_user_wins() -> None:
    evse = [{"current": 16000}]
    user = [{"current": 10000}]
    result, _ = run(evse, at(0, 12), user=user)
    assert (result.wish_ma, result.source) == (10000, "user rule 1 (fixed current)")
    result, _ = run([{"current": 8000}], at(0, 12), user=user)
    assert (result.wish_ma, result.source) == (8000, "EVSE rule 1 (fixed current)")
    result, _ = run([{"current": 10000}], at(0, 12), user=user)  # tie: EVSE named
    assert result.source.startswith("EVSE")
    # A user list with no applying rule pauses even though the EVSE list wants current.
    result, _ = run(evse, at(0, 12), user=[{"time": 0, "dur": 10, "current": 16000}])
    assert (result.wish_ma, result.source) == (0, "user rules: none applies")
    # Only a user list: it alone decides.
    assert run(None, at(0, 12), user=user)[0].wish_ma == 10000
    assert run([], at(0, 12), user=user)[0].wish_ma == 10000


def test_overrides_switch_lists_off() -> None:
    evse = [{"current": 8000}]
    user = [{"current": 10000}]
    result, _ = run(evse, at(0, 12), user=user, override_evse_rules=True)
    assert result.wish_ma == 10000
    result, _ = run(evse, at(0, 12), user=user, override_user_rules=True)
    assert result.wish_ma == 8000
    result, _ = run(evse, at(0, 12), user=user, override_evse_rules=True, override_user_rules=True)
    assert result.wish_ma is None
    assert result.source == "no rules (EVSE rules overridden, user rules overridden)"
    paused = [{"time": 0, "dur": 10, "current": 16000}]
    assert run(paused, at(0, 12), override_evse_rules=True)[0].wish_ma is None


def test_user_solar_rule_has_its_own_memory() -> None:
    user = [{"mode": 5, "udur": 60}]
    state = RuleState()
    result, state = run(None, at(0, 12), user=user, surplus_ma=8000, state=state)
    assert result.wish_ma == 8000 and result.surplus
    assert ("E1", "user", 0) in state.entries
    result, state = run(None, at(0, 12, 0, 30), user=user, surplus_ma=100, state=state)
    assert (result.wish_ma, result.undercut) == (6000, True)
    result, state = run(None, at(0, 12, 2), user=user, surplus_ma=100, state=state)
    assert result.wish_ma == 0


# -- robustness and batch ------------------------------------------------------------------


def test_invalid_rules_are_inert_and_reported() -> None:
    compiled = compile_rules([{"expr": "1 +"}, {"mode": 9, "current": 5}, "x"])
    assert len(compiled.errors) == 3
    assert all(r.error for r in compiled.classic)
    result, _ = evaluate_evse_rules(compiled, None, ctx(), RuleState(), at(0, 12))
    assert result.wish_ma == 0
    mixed = compile_rules([{"expr": "nope("}, {"current": 7000}])
    assert evaluate_evse_rules(mixed, None, ctx(), RuleState(), at(0, 12))[0].wish_ma == 7000
    assert compile_rules(None).is_empty
    assert compile_rules(42).errors
    assert compile_rules([{"expr": "M4.current + E2.power_w"}]).device_ids() == {"M4", "E2"}


def test_default_formula_context_has_no_variables() -> None:
    assert ctx().formula is NO_VARIABLES
    assert wish([{"expr": "M1.current + 7000"}], at(0, 12)) == 7000


def test_evaluate_all_matches_single_evaluation() -> None:
    rules: CompiledRules = compile_rules([{"mode": 5, "udur": 300}, {"time": 0, "dur": 1440}])
    contexts = [ctx(dev_id=f"E{i}", surplus_ma=5000 + 500 * i) for i in range(6)]
    results, state = evaluate_all(((rules, None, c) for c in contexts), RuleState(), at(0, 12))
    single_state = RuleState()
    for c in contexts:
        single, single_state = evaluate_evse_rules(rules, None, c, single_state, at(0, 12))
        assert results[c.dev_id] == single
    assert state.entries == single_state.entries


@pytest.mark.parametrize("phases", [1, 3])
def test_phases_do_not_change_current_rules(phases: int) -> None:
    assert wish([{"current": 9000}], at(0, 12), phases=phases) == 9000
