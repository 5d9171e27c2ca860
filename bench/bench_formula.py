"""Benchmarks of the formula language and the charging-rule evaluation.

Figures: evaluation time of a typical formula against the same arithmetic written as a
Python lambda; compile time against the bare parse; one cycle of rule evaluation for
250 EVSEs against the 5 ms goal. This module only measures; it must never change
configuration or write files.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bench.common import Figure, per_call_seconds
from chargebrain.core.formula import DictEvalContext, compile_formula, compile_uncached
from chargebrain.core.formula.grammar import parser
from chargebrain.core.rules import (
    LocalClock,
    RuleContext,
    RuleState,
    compile_rules,
    evaluate_all,
)

TYPICAL = "min(16000, 29000 - M3.current + E3.current)"
EVSE_COUNT = 250
GOAL_CYCLE_MS = 5.0


def _formula_figures(min_time: float) -> list[Figure]:
    ctx = DictEvalContext(devices={"M3": {"current": 12000}, "E3": {"current": 6000}})
    formula = compile_formula(TYPICAL)
    ours = per_call_seconds(lambda: formula.evaluate(ctx), min_time=min_time) * 1e6
    m3 = {"current": 12000.0}
    e3 = {"current": 6000.0}
    hand = per_call_seconds(
        lambda: min(16000.0, 29000.0 - m3["current"] + e3["current"]), min_time=min_time
    )
    hand_us = hand * 1e6

    lark = parser()
    parse_us = per_call_seconds(lambda: lark.parse(TYPICAL), min_time=min_time) * 1e6
    compile_us = per_call_seconds(lambda: compile_uncached(TYPICAL), min_time=min_time) * 1e6
    return [
        Figure(
            name=f"formula evaluate {TYPICAL!r} (baseline: same arithmetic as a Python lambda)",
            value=round(ours, 3),
            unit="us",
            baseline=round(hand_us, 3),
            ratio=round(ours / hand_us, 2),
            goal="a few microseconds",
        ),
        Figure(
            name="formula compile, typical formula (baseline: LALR parse alone)",
            value=round(compile_us, 1),
            unit="us",
            baseline=round(parse_us, 1),
            ratio=round(compile_us / parse_us, 2),
            goal="compile once per configuration change",
        ),
    ]


def _rules_figure(min_time: float) -> Figure:
    tz = ZoneInfo("Europe/Berlin")
    now = datetime(2024, 6, 3, 12, 0, tzinfo=tz).timestamp()
    base = DictEvalContext(now=now, tz=tz, cm={"_price_level": -5})
    for i in range(1, EVSE_COUNT + 1):
        base.set_device(f"E{i}", {"current": 6000 + i, "power_w": 4140, "input1": i % 2})
    base.set_device("M1", {"current": 9000, "power_w": 6000})
    evse_rules = compile_rules(
        [
            {"time": 22 * 60, "dur": 8 * 60, "mode": 0, "current": 16000},
            {"mode": 5, "solar": 6500, "udur": 300},
            {"expr": "min(16000, 29000 - M1.current + current)", "price_level": -5},
            {"input": "PB.input1", "current": 6000},
        ]
    )
    user_rules = compile_rules([{"days": 0x1F, "mode": 1, "current": 80}])
    ids = [f"E{i}" for i in range(1, EVSE_COUNT + 1)]
    state = RuleState()
    tick = 0

    def cycle() -> None:
        # What the manager does each cycle: one clock, per EVSE a formula view and a
        # RuleContext, then all rules in one pass. The surplus moves so undercut memory
        # changes too.
        nonlocal state, tick
        tick += 1
        clock = LocalClock.at(now, tz)
        contexts = [
            RuleContext(
                dev_id=dev_id,
                evse_max_ma=16000,
                surplus_ma=3000 + 20 * i + (4000 if tick % 2 else 0),
                price_level=-5,
                formula=base.derive(self_device=dev_id),
                clock=clock,
            )
            for i, dev_id in enumerate(ids)
        ]
        _results, state = evaluate_all(
            ((evse_rules, user_rules, c) for c in contexts), state, now + 3 * tick
        )

    ms = per_call_seconds(cycle, min_time=min_time, max_calls=10_000) * 1e3
    return Figure(
        name=f"rules: one cycle for {EVSE_COUNT} EVSEs (baseline = 5 ms goal, ratio = value/goal)",
        value=round(ms, 3),
        unit="ms",
        baseline=GOAL_CYCLE_MS,
        ratio=round(ms / GOAL_CYCLE_MS, 3),
        goal="<= 5 ms",
    )


def run(quick: bool) -> list[Figure]:
    min_time = 0.05 if quick else 0.5
    return [*_formula_figures(min_time), _rules_figure(min_time)]


if __name__ == "__main__":
    for fig in run(quick=False):
        print(fig.json_line())
