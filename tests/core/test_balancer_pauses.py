"""Pauses that last only as long as their cause: missing readings, a meter that is not
fresh, a changed configuration, a car that never started, the overdraft penalty."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from chargebrain.core.balancer import (
    Allocation,
    BalancerState,
    EvseInput,
    Limit,
    Measurement,
    PauseReason,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.model import EvseState
from chargebrain.core.phases import ZERO, Phases
from tests.core.balancer_helpers import A, currents, ev


def site(max_a: float, *evses: EvseInput, load: Measurement | None = None,
         **kw: object) -> SiteInput:
    cfg = SiteConfig(max_total_current=int(max_a * A), **kw)  # type: ignore[arg-type]
    return SiteInput(cfg, load or Measurement(), (), tuple(evses))


def feed(s: SiteInput, a: Allocation, draw: Callable[[str, int], int] | None = None) -> SiteInput:
    """Cars draw what they were given (or `draw(id, given)`) on their building phases;
    offline EVSEs keep their reading."""
    by = a.by_id()
    out = []
    for e in s.evses:
        if e.offline_since is not None:
            out.append(e)
            continue
        shift = {0: 0, 120: 1, 240: 2}[e.rotation]
        got = by[e.id].load.as_tuple() if by[e.id].controlled else (0, 0, 0)
        if draw is not None:
            got = tuple(draw(e.id, v) if v else 0 for v in got)
        out.append(dataclasses.replace(e, measured=Phases.of([got[(i + shift) % 3]
                                                             for i in range(3)])))
    return dataclasses.replace(s, evses=tuple(out))


def run(s: SiteInput, state: BalancerState, now: float, cycles: int,
        dt: float = 3.0) -> tuple[Allocation, SiteInput, float]:
    a = allocate(s, state, now)
    for _ in range(cycles - 1):
        s, now = feed(s, a), now + dt
        a = allocate(s, a.state, now)
    return a, feed(s, a), now


def four_at_8a() -> tuple[Allocation, SiteInput, float]:
    cars = [ev(f"E{i}", used_phases=7, plugged_since=float(i)) for i in range(1, 5)]
    return run(site(32, *cars, max_imbalance_cur=0), BalancerState(), 0.0, 3)


# --- missing readings ---------------------------------------------------------------------


def test_two_evses_not_read_yet_pause_the_others_only_until_they_answer() -> None:
    a, s, now = four_at_8a()
    assert set(currents(a).values()) == {8 * A}
    # Two EVSEs are added; not read yet, they count at their maximum: nothing is left.
    new = [ev(f"E{i}", used_phases=7, offline_since=now, max_current=16 * A) for i in (5, 6)]
    s = dataclasses.replace(s, evses=(*s.evses, *new))
    a = allocate(s, a.state, now + 1)
    by = a.by_id()
    for i in range(1, 5):
        d = by[f"E{i}"]
        assert d.paused and d.current_ma == 0
        assert d.reason == "minimum current not available (site phase L1, readings missing)"
    # They answer (cars plugged in, not drawing yet): the four are charging cars again at
    # once, one newcomer fits beside them, the other waits. No pause timer anywhere.
    answered = [dataclasses.replace(e, offline_since=None, state=EvseState.EV_PRESENT,
                                    plugged_since=now + 1) for e in new]
    s = dataclasses.replace(s, evses=(*s.evses[:4], *answered))
    a = allocate(feed(s, a), a.state, now + 2)
    a, s, now = run(feed(s, a), a.state, now + 5, 3)
    by = a.by_id()
    assert sorted(currents(a).values()) == [0] + [6400] * 5
    assert all(by[f"E{i}"].current_ma == 6400 for i in range(1, 5))
    waiting = next(d for d in a.evses if d.current_ma == 0)
    assert waiting.reason == "minimum current not available (site phase L1)"
    assert not any(m.pause_until > now for m in a.state.evses.values())


def test_a_pause_for_a_stale_meter_ends_when_the_reading_is_back() -> None:
    a, s, now = four_at_8a()
    stale = dataclasses.replace(s, load=Measurement(Phases(2 * A, 2 * A, 2 * A), stale=7))
    a = allocate(stale, a.state, now + 3)
    assert all(d.paused for d in a.evses)
    assert a.evses[0].pause_reason is PauseReason.SHORTAGE
    back = dataclasses.replace(s, load=Measurement(Phases(2 * A, 2 * A, 2 * A)))
    a = allocate(feed(back, a), a.state, now + 6)
    assert set(currents(a).values()) == {7500}  # (32 - 2) / 4, not after 300 s


def test_while_readings_stay_missing_a_car_paused_for_them_waits_without_a_timer() -> None:
    a, s, now = four_at_8a()
    # An unreachable EVSE takes 16 A: room for two cars only. The two that do not fit are
    # not sentenced to a pause; they do not take turns with the charging ones either.
    gone = ev("E9", used_phases=7, offline_since=now, max_current=16 * A)
    s = dataclasses.replace(s, evses=(*s.evses, gone))
    a, s, now = run(s, a.state, now + 3, 20)
    charging = sorted(d.id for d in a.evses if d.current_ma and d.id != "E9")
    assert len(charging) == 2
    for _ in range(40):  # two minutes: nobody swaps
        s, now = feed(s, a), now + 3
        a = allocate(s, a.state, now)
        assert sorted(d.id for d in a.evses if d.current_ma and d.id != "E9") == charging
    # The EVSE answers, drawing nothing: everyone charges at once.
    s = dataclasses.replace(s, evses=(*s.evses[:4], dataclasses.replace(
        gone, offline_since=None, state=EvseState.WAITING)))
    a, s, now = run(s, a.state, now + 3, 3)
    assert set(currents(a).values()) - {0} == {8 * A}
    assert sum(1 for d in a.evses if d.current_ma) == 4


def test_a_car_given_current_that_never_started_gets_no_pause_timer() -> None:
    s = site(16, ev("E1", used_phases=1), ev("E2", used_phases=1, state=EvseState.EV_PRESENT))
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"E1": 8 * A, "E2": 8 * A}
    # E2's car has not started drawing when the room shrinks: it stops, without a timer.
    s = feed(dataclasses.replace(s, config=SiteConfig(10 * A)), a,
             lambda i, g: 0 if i == "E2" else g)
    a = allocate(s, a.state, 3.0)
    assert a.by_id()["E2"].paused
    assert a.state.evses["E2"].pause_until == 0.0
    # Room comes back: it starts again within a cycle or two (E1 comes down first), not
    # after 300 s.
    s = dataclasses.replace(s, config=SiteConfig(16 * A))
    for now in (6.0, 9.0, 12.0):
        s = feed(s, a, lambda i, g: 0 if i == "E2" else g)
        a = allocate(s, a.state, now)
    assert currents(a) == {"E1": 8 * A, "E2": 8 * A}


def test_a_car_that_was_charging_says_how_long_its_pause_timer_runs() -> None:
    s = site(16, ev("E1", used_phases=1), ev("E2", used_phases=1))
    a, s, now = run(s, BalancerState(), 0.0, 2)
    a = allocate(dataclasses.replace(s, config=SiteConfig(10 * A)), a.state, now + 3)
    stopped = next(d.id for d in a.evses if d.paused)
    a = allocate(feed(s, a), a.state, now + 63)
    assert a.by_id()[stopped].reason == "pause timer, 240 s left"
    assert a.by_id()[stopped].pause_reason is PauseReason.SHORTAGE


# --- a meter that is not fresh ------------------------------------------------------------


def test_no_car_is_raised_on_a_meter_reading_that_is_not_fresh() -> None:
    load = Measurement(Phases(10 * A, 10 * A, 10 * A))
    s = site(32, ev("E1", used_phases=7, max_current=32 * A), load=load)
    a, s, now = run(s, BalancerState(), 0.0, 2)
    assert currents(a) == {"E1": 22 * A}
    # The house seems to have dropped, but the meter's reading is older than the EVSE's:
    # the car keeps what it had; a newly plugged car does not start.
    quiet = dataclasses.replace(
        s, load=Measurement(Phases(2 * A, 2 * A, 2 * A), fresh=False),
        evses=(*s.evses, ev("E2", used_phases=7)))
    a = allocate(quiet, a.state, now + 3)
    by = a.by_id()
    assert by["E1"].current_ma == 22 * A
    assert by["E1"].reason == "no fresh meter reading (site)"
    assert by["E1"].lreason is Limit.SITE
    assert by["E2"].current_ma == 0 and by["E2"].reason == (
        "waiting for a fresh meter reading (site)")
    # It still comes down if the (not fresh) reading says the house went up.
    up = dataclasses.replace(quiet, load=Measurement(Phases(20 * A, 20 * A, 20 * A),
                                                     fresh=False))
    assert allocate(feed(up, a), a.state, now + 6).by_id()["E1"].current_ma <= 12 * A
    # Fresh again: both charge.
    fresh = dataclasses.replace(quiet, load=Measurement(Phases(2 * A, 2 * A, 2 * A)))
    a, _, _ = run(fresh, a.state, now + 9, 3)
    assert currents(a) == {"E1": 15 * A, "E2": 15 * A}


# --- overdraft ----------------------------------------------------------------------------


def test_a_rotation_changed_under_charging_cars_pauses_only_the_one_that_does_not_fit() -> None:
    cars = [ev(f"E{i}", used_phases=1, rotation=r, max_current=16 * A)
            for i, r in enumerate((0, 120, 240))]
    a, s, now = run(site(16, *cars), BalancerState(), 0.0, 3)
    assert set(currents(a).values()) == {16 * A}
    # All three are set to 0°: their readings now put 48 A on L1 of a 16 A site. That is
    # not the cars drawing more than they were given: no overdraft penalty.
    moved = dataclasses.replace(s, evses=tuple(dataclasses.replace(e, rotation=0)
                                               for e in s.evses))
    a = allocate(moved, a.state, now + 3)
    assert a.overshoot == 32 * A  # measured, and counted as an overload cycle
    assert a.overdraft_applied == ZERO
    assert sorted(currents(a).values()) == [0, 8 * A, 8 * A]
    assert sum(d.paused for d in a.evses) == 1


def test_an_overshoot_by_the_house_is_kept_off_for_two_minutes_and_pauses_no_car() -> None:
    s = site(32, ev("E1", used_phases=7), ev("E2", used_phases=7),
             load=Measurement(Phases(4 * A, 4 * A, 4 * A)))
    a, s, now = run(s, BalancerState(), 0.0, 3)
    assert set(currents(a).values()) == {14 * A}
    # The house jumps by 12 A while the cars still draw 14 A each: 12 A over the limit.
    step = dataclasses.replace(s, load=Measurement(Phases(16 * A, 16 * A, 16 * A)))
    a = allocate(step, a.state, now + 3)
    assert a.overdraft_applied == Phases(12 * A, 12 * A, 12 * A)
    # 32 - 16 - 12 leaves 4 A for two cars: both keep their minimum, neither pauses.
    assert currents(a) == {"E1": 6 * A, "E2": 6 * A}
    a = allocate(feed(step, a), a.state, now + 3 + 119)
    assert currents(a) == {"E1": 6 * A, "E2": 6 * A}
    a = allocate(feed(step, a), a.state, now + 3 + 120)
    assert a.overdraft_applied == ZERO
    assert currents(a) == {"E1": 8 * A, "E2": 8 * A}


def test_the_house_part_of_the_penalty_keeps_one_minimum_not_one_per_priority() -> None:
    # Two single-phase cars on L1 at their 6 A minimum, of two priorities.
    s = site(23, ev("E1", used_phases=1, max_current=6 * A, priority=1),
             ev("E2", used_phases=1, max_current=6 * A, priority=2))
    a, s, now = run(s, BalancerState(), 0.0, 2)
    assert currents(a) == {"E1": 6 * A, "E2": 6 * A}
    # The house jumps to 17 A: 6 A over, its part of the penalty. Room for one car's
    # minimum within it, not for one per priority tier (the first tier's filling must not
    # reopen the limit for the next).
    step = dataclasses.replace(s, load=Measurement(Phases(17 * A, 0, 0)))
    a = allocate(step, a.state, now + 3)
    assert a.overdraft_applied == Phases(6 * A, 0, 0)
    assert sorted(currents(a).values()) == [0, 6 * A]


def test_a_car_drawing_more_than_it_is_given_is_penalised_for_five_minutes() -> None:
    s = site(32, ev("E1", used_phases=7), ev("E2", used_phases=7))
    a, s, now = run(s, BalancerState(), 0.0, 2)
    assert set(currents(a).values()) == {16 * A}
    # E2's car takes 19 A of its 16 A: 3 A over, and the penalty stays for 300 s.
    greedy = feed(s, a, lambda i, g: g + 3 * A if i == "E2" else g)
    a = allocate(greedy, a.state, now + 3)
    assert a.overdraft_applied == Phases(3 * A, 3 * A, 3 * A)
    assert a.overdraft_cur == 3 * A
    a = allocate(feed(s, a), a.state, now + 3 + 299)
    assert a.overdraft_applied == Phases(3 * A, 3 * A, 3 * A)
    assert allocate(feed(s, a), a.state, now + 3 + 300).overdraft_applied == ZERO


def test_a_car_still_coming_down_is_not_overdrawing() -> None:
    load = Measurement(Phases(4 * A, 4 * A, 4 * A))
    s = site(32, ev("E1", used_phases=7), ev("E2", used_phases=7), load=load)
    a, s, now = run(s, BalancerState(), 0.0, 3)
    # The house steps up; the next cycle both cars still draw their old 14 A (their lag),
    # and the cycle after that one of them is still on its way down.
    step = dataclasses.replace(s, load=Measurement(Phases(12 * A, 12 * A, 12 * A)))
    a = allocate(step, a.state, now + 3)
    slow = feed(step, a, lambda i, g: 12 * A if i == "E1" else g)
    a = allocate(slow, a.state, now + 6)
    assert a.state.penalty == ZERO  # nothing the cars caused


def test_an_evse_meter_reading_a_little_high_is_no_overdraw() -> None:
    # Two cars at 16 A on 32 A; the house rises by 1 A while both EVSE meters read 3 %
    # high (16.48 A): the overshoot is the house's, not the cars'. Counted as an overdraw
    # it took 0.96 A off the phases for five minutes.
    s = site(32, ev("E1", used_phases=7), ev("E2", used_phases=7))
    a, s, now = run(s, BalancerState(), 0.0, 2)
    assert set(currents(a).values()) == {16 * A}
    step = dataclasses.replace(feed(s, a, lambda i, g: g * 103 // 100),
                               load=Measurement(Phases(1 * A, 1 * A, 1 * A)))
    a = allocate(step, a.state, now + 3)
    assert a.state.penalty == ZERO
    # a car that really draws 1 A more than its 16 A is still an overdraw
    a, s, now = run(s, BalancerState(), 0.0, 2)
    greedy = feed(s, a, lambda i, g: g + 1 * A if i == "E2" else g)
    a = allocate(greedy, a.state, now + 3)
    assert a.state.penalty == Phases(1 * A, 1 * A, 1 * A)
    # and so is one drawing 1 A more than its 6 A (the faults scenario's car at its minimum)
    s = site(22, ev("E1", used_phases=7), ev("E2", used_phases=7, max_current=6 * A))
    a, s, now = run(s, BalancerState(), 0.0, 2)
    assert currents(a) == {"E1": 16 * A, "E2": 6 * A}
    greedy = feed(s, a, lambda i, g: g + 1 * A if i == "E2" else g)
    a = allocate(greedy, a.state, now + 3)
    assert a.state.penalty == Phases(1 * A, 1 * A, 1 * A)
