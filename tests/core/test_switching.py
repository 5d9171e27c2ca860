"""The decision of automatic 1/3-phase switching for surplus charging (core/switching.py)."""

from __future__ import annotations

from chargebrain.core.switching import NO_SWITCH, SwitchMemory, SwitchTuning, decide

V = 230.0
MIN = 6000
THREE_MIN_W = 3 * 6 * V  # 4140 W: three phases at the minimum
UP_W = 3 * 7 * V  # 4830 W: three phases at the minimum plus the 1 A margin


def run(phases: int, surplus: list[tuple[float, float]], surplus_mode: bool = True,
        delay_s: float = 180.0, mem: SwitchMemory = NO_SWITCH) -> list[tuple[float, int]]:
    """(time, phases asked for) for a surplus given as (from time, W) steps, every 3 s,
    the EVSE switching as asked."""
    out = []
    t, end = surplus[0][0], surplus[-1][0]
    while t <= end:
        w = next(w for start, w in reversed(surplus) if start <= t)
        phases, mem = decide(phases, surplus_mode, w, MIN, V, t, delay_s, mem)
        out.append((t, phases))
        t += 3.0
    return out


def switches(seen: list[tuple[float, int]]) -> list[tuple[float, int]]:
    return [(t, p) for (t, p), (_, before) in zip(seen[1:], seen, strict=False) if p != before]


def test_too_little_for_three_phases_for_a_minute_switches_to_one() -> None:
    seen = run(3, [(0, 6000), (30, THREE_MIN_W - 10), (300, THREE_MIN_W - 10)])
    assert switches(seen) == [(90, 1)]  # 60 s after the surplus fell


def test_a_short_dip_changes_nothing() -> None:
    seen = run(3, [(0, 6000), (30, 2000), (60, 6000), (300, 6000)])
    assert switches(seen) == []


def test_back_to_three_phases_needs_the_margin_for_two_minutes() -> None:
    # Just above the three-phase minimum is within the hysteresis: it stays on one phase.
    assert switches(run(1, [(0, THREE_MIN_W + 100), (600, THREE_MIN_W + 100)])) == []
    seen = run(1, [(0, 2000), (60, UP_W), (600, UP_W)])
    assert switches(seen) == [(180, 3)]


def test_never_sooner_than_the_delay_after_the_last_switch() -> None:
    # Switched to one phase at 90 s; the sun is back at 100 s: three phases after the
    # two minutes it must last, but not before 90 + 600 s, the delay.
    seen = run(3, [(0, 1000), (100, 8000), (900, 8000)], delay_s=600)
    assert switches(seen) == [(60, 1), (660, 3)]


def test_without_a_surplus_rule_it_charges_on_three_phases() -> None:
    seen = run(1, [(0, 0), (60, 0)], surplus_mode=False, mem=SwitchMemory(last_switch=-500))
    assert switches(seen) == [] and seen[0][1] == 3
    # ... once the delay has passed since its last switch.
    seen = run(1, [(0, 0), (60, 0)], surplus_mode=False, mem=SwitchMemory(last_switch=-150))
    assert switches(seen) == [(30, 3)]


def test_the_memory_stays_the_same_object_while_nothing_changes() -> None:
    phases, mem = decide(3, True, 8000, MIN, V, 0.0, 180, NO_SWITCH)
    assert (phases, mem) == (3, NO_SWITCH) and mem is NO_SWITCH
    _, held = decide(3, True, 1000, MIN, V, 3.0, 180, NO_SWITCH, SwitchTuning())
    assert held == SwitchMemory(since=3.0)
    assert decide(3, True, 1000, MIN, V, 6.0, 180, held)[1] is held
