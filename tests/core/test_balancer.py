"""Worked examples, one or more per rule of the load-management core."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest

from chargebrain.core.balancer import (
    Allocation,
    BalancerState,
    DisablePolicy,
    EvseInput,
    GroupConfig,
    Limit,
    Measurement,
    PauseReason,
    SiteConfig,
    SiteInput,
    Tuning,
    allocate,
)
from chargebrain.core.model import EvseState
from chargebrain.core.phases import ZERO, Phases
from tests.core.balancer_helpers import A, currents, ev

CHARGING = EvseState.CHARGING


def site(max_a: float, *evses: EvseInput, **kw: object) -> SiteInput:
    load = kw.pop("load", Measurement())
    groups = kw.pop("groups", ())
    cfg = SiteConfig(max_total_current=int(max_a * A), **kw)  # type: ignore[arg-type]
    return SiteInput(cfg, load, groups, tuple(evses))  # type: ignore[arg-type]


def feed(s: SiteInput, a: Allocation, draw: Callable[[str, int], int] | None = None) -> SiteInput:
    """Cars draw what they were given (or `draw(id, given)`) on their building phases."""
    by = a.by_id()
    out = []
    for e in s.evses:
        d = by[e.id]
        shift = {0: 0, 120: 1, 240: 2}[e.rotation]
        got: tuple[int, ...] = d.load.as_tuple()
        if draw is not None:
            got = tuple(draw(e.id, v) if v else 0 for v in got)
        measured = Phases.of([got[(i + shift) % 3] for i in range(3)])
        out.append(dataclasses.replace(e, measured=measured))
    return dataclasses.replace(s, evses=tuple(out))


def run(
    s: SiteInput,
    cycles: int,
    *,
    start: float = 0.0,
    dt: float = 3.0,
    state: BalancerState | None = None,
    draw: Callable[[str, int], int] | None = None,
) -> tuple[Allocation, BalancerState, SiteInput, float]:
    """Run closed-loop cycles; returns the last allocation, state, site and time."""
    st = state or BalancerState()
    now = start
    a = allocate(s, st, now)
    for _ in range(cycles - 1):
        st, s = a.state, feed(s, a, draw)
        now += dt
        a = allocate(s, st, now)
    return a, a.state, feed(s, a, draw), now


# --- phases and rotation ------------------------------------------------------------------


def test_two_single_phase_cars_rotated_0_and_120_each_get_16a_on_a_16a_house() -> None:
    s = site(
        16,
        ev("E1", used_phases=1, max_current=32 * A),
        ev("E2", used_phases=1, rotation=120, max_current=32 * A),
    )
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"E1": 16 * A, "E2": 16 * A}
    by = a.by_id()
    assert by["E1"].phases == 0b001 and by["E2"].phases == 0b010
    assert by["E1"].reason == "site phase L1"
    assert by["E2"].reason == "site phase L2"
    assert a.allocated == Phases(16 * A, 16 * A, 0)


def test_two_single_phase_cars_on_the_same_phase_share_it() -> None:
    s = site(16, ev("E1", used_phases=1), ev("E2", used_phases=1))
    assert currents(allocate(s, BalancerState(), 0.0)) == {"E1": 8 * A, "E2": 8 * A}


def test_rotation_240_maps_evse_l1_to_building_l3() -> None:
    s = site(32, ev("E1", used_phases=1, rotation=240))
    d = allocate(s, BalancerState(), 0.0).evses[0]
    assert d.phases == 0b100
    assert d.load == Phases(0, 0, 16 * A)


def test_determine_plans_all_phases_then_learns_until_unplug() -> None:
    s = site(20, ev("E1", rotation=120), ev("E2", used_phases=0b010))
    a = allocate(s, BalancerState(), 0.0)
    # Until it draws, E1's current is planned on every phase (it may be three-phase), so
    # it shares building L2 with E2.
    assert a.by_id()["E1"].phases == 0b111
    assert currents(a) == {"E1": 10 * A, "E2": 10 * A}
    # The car turns out to draw on its L1 only (building L2 at 120 degrees).
    e1 = dataclasses.replace(s.evses[0], measured=Phases(10 * A, 0, 0))
    s2 = dataclasses.replace(s, evses=(e1, s.evses[1]))
    a2 = allocate(s2, a.state, 3.0)
    assert a2.by_id()["E1"].phases == 0b010
    # Remembered while plugged even when it draws little...
    e1_low = dataclasses.replace(e1, measured=Phases(500, 0, 0))
    a3 = allocate(dataclasses.replace(s2, evses=(e1_low, s.evses[1])), a2.state, 6.0)
    assert a3.by_id()["E1"].phases == 0b010
    # ...and forgotten after unplugging.
    gone = dataclasses.replace(e1, state=EvseState.WAITING, measured=ZERO)
    a4 = allocate(dataclasses.replace(s2, evses=(gone, s.evses[1])), a3.state, 9.0)
    back = dataclasses.replace(e1, measured=ZERO)
    a5 = allocate(dataclasses.replace(s2, evses=(back, s.evses[1])), a4.state, 12.0)
    assert a5.by_id()["E1"].phases == 0b111


def test_determine_without_a_meter_assumes_all_three_phases() -> None:
    s = site(32, ev("E1", has_meter=False))
    assert allocate(s, BalancerState(), 0.0).evses[0].phases == 0b111


# --- available current ----------------------------------------------------------------------


def test_reserve_and_non_evse_load_reduce_each_phase_separately() -> None:
    s = site(
        32,
        ev("E1", used_phases=7, max_current=32 * A),
        reserve_current=2 * A,
        load=Measurement(Phases(10 * A, 0, 5 * A)),
    )
    a = allocate(s, BalancerState(), 0.0)
    assert a.available == Phases(20 * A, 30 * A, 25 * A)
    d = a.evses[0]
    assert d.current_ma == 20 * A
    assert (d.lreason, d.reason) == (Limit.SITE, "site phase L1")


def test_export_gives_no_extra_headroom_unless_enabled() -> None:
    load = Measurement(Phases(-10 * A, 0, 0))
    s = site(16, ev("E1", used_phases=1, max_current=32 * A), load=load, max_imbalance_cur=0)
    assert allocate(s, BalancerState(), 0.0).evses[0].current_ma == 16 * A
    s2 = dataclasses.replace(
        s, config=dataclasses.replace(s.config, tuning=Tuning(credit_export=True))
    )
    assert allocate(s2, BalancerState(), 0.0).evses[0].current_ma == 26 * A


def test_max_total_evse_current_caps_all_evses_together() -> None:
    s = site(
        63,
        ev("E1", used_phases=7, max_current=32 * A),
        ev("E2", used_phases=7, max_current=32 * A),
        max_total_evse_current=25 * A,
    )
    a = allocate(s, BalancerState(), 0.0)
    assert sorted(currents(a).values()) == [12500, 12500]
    assert a.evses[0].reason == "wallbox supply phase L1"
    assert a.evses[0].lreason is Limit.SUPPLY


def test_group_limit_and_group_load_flow_down_the_tree() -> None:
    groups = (
        GroupConfig(5, max_current=32 * A),
        GroupConfig(6, parent=5, max_current=16 * A, load=Measurement(Phases(4 * A, 0, 0))),
    )
    s = site(
        63,
        ev("E1", group=5, used_phases=7, max_current=32 * A),
        ev("E2", group=6, used_phases=7),
        ev("E3", group=6, used_phases=0b010),
        groups=groups,
    )
    a = allocate(s, BalancerState(), 0.0)
    by = a.by_id()
    # Group E6 has 12 A left on L1 (16 - 4 A own load) and 16 A on L2, shared by E2 and E3.
    assert by["E2"].current_ma == 8 * A
    assert by["E3"].current_ma == 8 * A
    assert by["E2"].reason == "group E6 phase L2" and by["E2"].lreason is Limit.GROUP
    # Group E5 feeds all three: 32 - 8 - 8 on L2 leaves 16 A for E1.
    assert by["E1"].current_ma == 16 * A
    assert by["E1"].reason == "group E5 phase L2"
    nodes = {n.id: n for n in a.nodes}
    assert nodes[6].available == Phases(12 * A, 16 * A, 16 * A)
    assert nodes[5].allocated == Phases(24 * A, 32 * A, 24 * A)
    assert nodes[0].allocated == a.allocated


def test_group_cycle_and_unknown_group_fall_back_to_the_site() -> None:
    groups = (
        GroupConfig(1, parent=2, max_current=10 * A),
        GroupConfig(2, parent=1, max_current=8 * A),
    )
    s = site(32, ev("E1", group=2, used_phases=1), ev("E2", group=9, used_phases=2), groups=groups)
    a = allocate(s, BalancerState(), 0.0)
    # The cycle is broken by hanging group 1 on the site; group 2 stays under group 1.
    assert currents(a) == {"E1": 8 * A, "E2": 16 * A}
    assert a.by_id()["E1"].reason == "group E2 phase L1"


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ValueError):
        allocate(site(16, ev("E1"), ev("E1")), BalancerState(), 0.0)
    with pytest.raises(ValueError):
        allocate(site(16, groups=(GroupConfig(1), GroupConfig(1))), BalancerState(), 0.0)


# --- sharing within and across priorities -----------------------------------------------------


def test_water_filling_respects_each_cars_own_maximum() -> None:
    s = site(
        40,
        ev("E1", used_phases=7, max_current=8 * A),
        ev("E2", used_phases=7, max_current=16 * A),
        ev("E3", used_phases=7, max_current=32 * A),
    )
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"E1": 8 * A, "E2": 16 * A, "E3": 16 * A}
    assert a.by_id()["E1"].reason == "EVSE maximum"
    assert a.by_id()["E3"].reason == "site phase L1"


def test_allocations_are_rounded_down_to_100ma() -> None:
    s = site(20, *(ev(f"E{i}", used_phases=7) for i in range(3)))
    assert set(currents(allocate(s, BalancerState(), 0.0)).values()) == {6600}


def test_higher_priority_gets_all_it_can_use_first() -> None:
    """As the vendor documents it: the higher priority is served first, the lower one
    gets what is left, and pauses when that is below its minimum."""
    s = site(24, ev("HI", used_phases=1, priority=2), ev("LO", used_phases=1),
             max_imbalance_cur=0)
    assert currents(allocate(s, BalancerState(), 0.0)) == {"HI": 16 * A, "LO": 8 * A}
    # 4 A left: below the lower priority's minimum, so it waits.
    a = allocate(site(20, *s.evses), BalancerState(), 0.0)
    assert currents(a) == {"HI": 16 * A, "LO": 0}
    lo = a.by_id()["LO"]
    assert lo.paused and lo.pause_reason is PauseReason.SHORTAGE
    assert lo.lreason is Limit.NONE
    assert lo.reason == "minimum current not available (site phase L1)"
    a = allocate(dataclasses.replace(s, config=SiteConfig(10 * A)), BalancerState(), 0.0)
    assert currents(a) == {"HI": 10 * A, "LO": 0}


def test_a_charging_lower_priority_car_gives_way_to_a_higher_one() -> None:
    lo_only = site(20, ev("LO", used_phases=1), ev("HI", used_phases=1, priority=2,
                                                     state=EvseState.WAITING))
    a, st, _, now = run(lo_only, 2)
    assert currents(a) == {"LO": 16 * A, "HI": 0}
    both = site(20, ev("LO", used_phases=1), ev("HI", used_phases=1, priority=2))
    a, _, _, _ = run(both, 3, start=now + 3, state=st)
    assert currents(a) == {"LO": 0, "HI": 16 * A}
    assert a.by_id()["LO"].paused


def test_equal_priorities_share_and_the_remainder_stays_unused() -> None:
    cars = (
        ev("H1", used_phases=1, priority=2),
        ev("H2", used_phases=1, priority=2),
        ev("LO", used_phases=1),
    )
    # 18.15 A: 9 A each for the higher priority (the 150 mA below one step for both is
    # not handed on); nothing the lower priority could start with.
    a = allocate(site(18.15, *cars, max_imbalance_cur=0), BalancerState(), 0.0)
    assert currents(a) == {"H1": 9 * A, "H2": 9 * A, "LO": 0}


def test_group_priority_ranks_the_group_against_its_siblings() -> None:
    groups = (GroupConfig(1, priority=3), GroupConfig(2, priority=1))
    s = site(
        20,
        ev("A", group=1, used_phases=1),
        ev("B", group=2, used_phases=1, priority=9),
        groups=groups,
    )
    assert currents(allocate(s, BalancerState(), 0.0)) == {"A": 16 * A, "B": 0}
    s = dataclasses.replace(s, config=SiteConfig(24 * A, max_imbalance_cur=0))
    assert currents(allocate(s, BalancerState(), 0.0)) == {"A": 16 * A, "B": 8 * A}


def test_first_come_first_served_favours_the_earlier_plug_in() -> None:
    s = site(
        20,
        ev("E1", used_phases=1, fcfs=True, plugged_since=50.0),
        ev("E2", used_phases=1, fcfs=True, plugged_since=10.0),
    )
    assert currents(allocate(s, BalancerState(), 100.0)) == {"E1": 0, "E2": 16 * A}
    s = dataclasses.replace(s, config=SiteConfig(24 * A, max_imbalance_cur=0))
    assert currents(allocate(s, BalancerState(), 100.0)) == {"E1": 8 * A, "E2": 16 * A}


# --- minimum, pauses, hysteresis, rotation ---------------------------------------------------


def test_never_between_zero_and_minimum_one_car_pauses_instead() -> None:
    s = site(10, ev("E1", used_phases=1), ev("E2", used_phases=1))
    a = allocate(s, BalancerState(), 0.0)
    assert sorted(currents(a).values()) == [0, 10 * A]


def test_momentary_shortfall_reduces_everyone_to_minimum_before_pausing() -> None:
    s = site(32, *(ev(f"E{i}", used_phases=7) for i in range(3)))
    a, st, s, now = run(s, 3)
    assert set(currents(a).values()) == {10600}
    tight = dataclasses.replace(s, config=SiteConfig(18 * A))
    a2 = allocate(tight, st, now + 3)
    assert set(currents(a2).values()) == {6 * A}
    assert not any(d.paused for d in a2.evses)


def test_a_car_that_no_longer_fits_pauses_for_the_minimum_pause_time() -> None:
    s = (
        site(20, ev("E1", used_phases=7), ev("E2", used_phases=7, charging_since_dummy=None))
        if False
        else site(20, ev("E1", used_phases=7), ev("E2", used_phases=7))
    )
    a, st, s, now = run(s, 3)
    assert set(currents(a).values()) == {10 * A}
    # Capacity drops: one car (the one that has charged longest; tie -> higher id) pauses.
    tight = dataclasses.replace(s, config=SiteConfig(11 * A))
    a = allocate(tight, st, now + 3)
    paused = [d for d in a.evses if d.paused]
    assert len(paused) == 1 and paused[0].pause_reason is PauseReason.SHORTAGE
    stopped = paused[0].id
    # Capacity comes back at once: the pause timer holds it.
    a = allocate(s, a.state, now + 6)
    assert a.by_id()[stopped].current_ma == 0
    assert a.by_id()[stopped].reason == "pause timer, 297 s left"
    assert a.by_id()[stopped].pause_time == pytest.approx(3.0)
    a = allocate(s, a.state, now + 3 + 299)
    assert a.by_id()[stopped].current_ma == 0
    a = allocate(s, a.state, now + 3 + 300)
    assert a.by_id()[stopped].current_ma == 10 * A


def test_a_paused_car_restarts_only_with_a_margin_above_its_minimum() -> None:
    s = site(13, ev("E1", used_phases=1), ev("E2", used_phases=1))
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"E1": 6500, "E2": 6500}
    tight = feed(dataclasses.replace(s, config=SiteConfig(11 * A)), a)
    a = allocate(tight, a.state, 3.0)
    # E2 stops; E1 takes its room once E2 is no longer drawing it.
    assert currents(a) == {"E1": 6500, "E2": 0}
    a = allocate(feed(tight, a), a.state, 6.0)
    assert currents(a) == {"E1": 11 * A, "E2": 0}
    st = a.state
    # After the pause (and before E1 has charged long enough to yield its place): room for
    # exactly E2's minimum beside E1 (which draws its 11 A) is not enough to restart...
    exact = feed(dataclasses.replace(s, config=SiteConfig(12 * A)), a)
    assert currents(allocate(exact, st, 400.0)) == {"E1": 12 * A, "E2": 0}
    # ...its minimum plus the 500 mA margin is: E1 comes down at once, and E2 starts in
    # the next cycle, once E1 is no longer drawing what E2 gets.
    ok = feed(dataclasses.replace(s, config=SiteConfig(12500)), a)
    a = allocate(ok, st, 400.0)
    assert currents(a) == {"E1": 6200, "E2": 0}
    assert a.by_id()["E2"].reason == "waiting for other cars to come down (site phase L1)"
    assert currents(allocate(feed(ok, a), a.state, 403.0)) == {"E1": 6200, "E2": 6200}


def test_three_cars_needing_18a_on_3x16a_take_turns() -> None:
    s = site(16, *(ev(f"E{i}", used_phases=7) for i in (1, 2, 3)))
    a, st, s, now = run(s, 1)
    assert sorted(currents(a).values()) == [0, 8 * A, 8 * A]
    waiting = next(d for d in a.evses if d.paused)
    assert waiting.reason == "minimum current not available (site phase L1)"
    charged: set[str] = set()
    rotations = 0
    for _ in range(4800):  # four hours in 3 s cycles
        st, s = a.state, feed(s, a)
        now += 3
        a = allocate(s, st, now)
        assert a.allocated.peak() <= 16 * A
        charged |= {d.id for d in a.evses if d.current_ma > 0}
        rotations += sum(
            d.pause_reason is PauseReason.ROTATION and d.pause_time == 0 for d in a.evses
        )
    assert charged == {"E1", "E2", "E3"}
    assert rotations >= 2


def test_higher_priority_car_is_not_rotated_out_by_lower_priority_waiters() -> None:
    s = site(12, ev("HI", used_phases=7, priority=2), ev("LO", used_phases=7))
    a, _st, s, _now = run(s, 1000)  # 50 minutes
    assert currents(a) == {"HI": 12 * A, "LO": 0}


# --- phase imbalance ------------------------------------------------------------------------


def test_single_phase_cars_on_one_phase_are_held_to_the_imbalance_limit() -> None:
    s = site(
        63,
        ev("E1", used_phases=1, max_current=32 * A),
        ev("E2", used_phases=1, max_current=32 * A),
        ev("E3", used_phases=7, max_current=32 * A),
    )
    a = allocate(s, BalancerState(), 0.0)
    by = a.by_id()
    assert by["E1"].current_ma + by["E2"].current_ma == 20 * A
    assert by["E1"].reason == "phase imbalance" and by["E1"].lreason is Limit.IMBALANCE
    assert by["E3"].current_ma == 32 * A  # three-phase load does not unbalance
    assert a.imbalance == 20 * A


def test_imbalance_pauses_a_car_when_minimums_alone_are_too_unbalanced() -> None:
    s = site(63, *(ev(f"E{i}", used_phases=1) for i in range(4)))
    a = allocate(s, BalancerState(), 0.0)
    paused = [d for d in a.evses if d.paused]
    assert len(paused) == 1
    assert paused[0].pause_reason is PauseReason.IMBALANCE
    assert paused[0].reason == "phase imbalance"
    assert a.imbalance <= 20 * A


def test_a_car_in_determine_mode_starts_where_single_phase_cars_hold_the_spread() -> None:
    """Three single-phase cars at 6 A on L1 keep the spread at 18 A. A car whose phases
    are not known yet, counted as possibly drawing on L1, could never start there, and
    so its phases were never measured: it starts at its minimum, counted as balanced."""
    ones = tuple(ev(f"E{i}", used_phases=1, max_current=6 * A, measured=Phases(6 * A, 0, 0))
                 for i in range(3))
    s = site(200, *ones, ev("E9", used_phases=0, state=EvseState.EV_PRESENT))
    a = allocate(s, BalancerState(), 0.0)
    assert a.by_id()["E9"].current_ma == 6 * A
    assert a.by_id()["E9"].reason == "phases not known yet (phase imbalance)"
    # Measured on three phases it is counted as what it is, and gets its maximum.
    e9 = dataclasses.replace(s.evses[3], state=EvseState.CHARGING, measured=Phases.on_mask(
        6 * A, 0b111))
    a2 = allocate(dataclasses.replace(s, evses=(*ones, e9)), a.state, 3.0)
    assert a2.by_id()["E9"].current_ma == 16 * A
    # A single-phase one is held to the imbalance limit like the others.
    e9 = dataclasses.replace(e9, measured=Phases(6 * A, 0, 0))
    a3 = allocate(dataclasses.replace(s, evses=(*ones, e9)), a.state, 3.0)
    assert a3.imbalance <= 24 * A and a3.by_id()["E9"].current_ma <= 6 * A


def test_imbalance_check_can_be_switched_off_or_include_consumption() -> None:
    cars = (ev("E1", used_phases=1, max_current=32 * A),)
    off = site(63, *cars, max_imbalance_cur=0)
    assert allocate(off, BalancerState(), 0.0).evses[0].current_ma == 32 * A
    # Consumption on L2/L3 balances a car on L1 when imbalance_add is set.
    load = Measurement(Phases(0, 15 * A, 15 * A))
    on = site(63, *cars, imbalance_add=True, load=load)
    assert allocate(on, BalancerState(), 0.0).evses[0].current_ma == 32 * A
    plain = site(63, *cars, load=load)
    assert allocate(plain, BalancerState(), 0.0).evses[0].current_ma == 20 * A


# --- lending unused headroom ----------------------------------------------------------------


def test_headroom_a_car_does_not_take_is_lent_and_taken_back_step_by_step() -> None:
    s = site(
        32,
        ev("SLOW", used_phases=1, max_current=32 * A),
        ev("FAST", used_phases=1, max_current=32 * A),
        max_imbalance_cur=0,
    )
    limit = {"SLOW": 5 * A}

    def draw(id: str, given: int) -> int:
        return min(given, limit.get(id, given))

    a, st, s, now = run(s, 1)
    assert currents(a) == {"SLOW": 16 * A, "FAST": 16 * A}
    a, st, s, now = run(s, 4, start=now + 3, state=st, draw=draw)
    by = a.by_id()
    assert by["SLOW"].current_ma == 7 * A  # draw + 2 A
    assert by["SLOW"].reason == "car draw" and by["SLOW"].lreason is Limit.CAR_DRAW
    assert by["FAST"].current_ma == 25 * A
    # The car wants more again: it gets it back 2 A per cycle at most, never in one jump,
    # and only as FAST is seen to come down.
    limit["SLOW"] = 32 * A
    seen = [a.by_id()["SLOW"].current_ma]
    for _ in range(16):
        a, st, s, now = run(s, 1, start=now + 3, state=st, draw=draw)
        seen.append(a.by_id()["SLOW"].current_ma)
        assert a.allocated.l1 <= 32 * A
    steps = [b - a_ for a_, b in itertools.pairwise(seen)]
    assert max(steps) <= 2 * A
    assert seen[-1] == 16 * A


def test_a_plugged_car_that_does_not_draw_keeps_only_its_minimum() -> None:
    s = site(
        32,
        ev("IDLE", used_phases=1, state=EvseState.EV_PRESENT),
        ev("BUSY", used_phases=1, max_current=32 * A),
        max_imbalance_cur=0,
    )
    a, *_ = run(s, 5, draw=lambda id, given: 0 if id == "IDLE" else given)
    assert currents(a) == {"IDLE": 6 * A, "BUSY": 26 * A}


# --- overdraft --------------------------------------------------------------------------------


def test_overdraft_reduces_available_current_for_300_s_and_is_remembered() -> None:
    car = ev("E1", used_phases=1, max_current=32 * A, measured=Phases(20 * A, 0, 0))
    s = site(32, car, load=Measurement(Phases(15 * A, 0, 0)))  # 35 A measured on L1
    a = allocate(s, BalancerState(), 0.0)
    assert a.overdraft_cur == 3 * A
    assert a.overdraft_applied == Phases(3 * A, 0, 0)
    assert a.evses[0].current_ma == 32 * A - 15 * A - 3 * A
    calm = dataclasses.replace(s, evses=(dataclasses.replace(car, measured=Phases(14 * A, 0, 0)),))
    a2 = allocate(calm, a.state, 299.0)
    assert a2.evses[0].current_ma == 14 * A
    a3 = allocate(calm, a2.state, 300.0)
    assert a3.evses[0].current_ma == 17 * A
    assert a3.overdraft_applied == ZERO
    assert a3.overdraft_cur == 3 * A
    reset = dataclasses.replace(a3.state, overdraft_cur=0)
    assert allocate(calm, reset, 303.0).overdraft_cur == 0


# --- disabled, rules, overrides, authorisation ------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "current", "controlled", "other"),
    [
        (DisablePolicy.OFF, 0, True, 16 * A),
        (DisablePolicy.MINIMUM, 6 * A, True, 10 * A),
        (DisablePolicy.FREE, 12 * A, False, 6 * A),
    ],
)
def test_disable_policy(policy: int, current: int, controlled: bool, other: int) -> None:
    s = site(
        16,
        ev("OFF", enabled=False, used_phases=1, max_current=12 * A),
        ev("ON", used_phases=1),
        disable_policy=policy,
    )
    by = allocate(s, BalancerState(), 0.0).by_id()
    assert by["OFF"].current_ma == current
    assert by["OFF"].controlled is controlled
    assert by["OFF"].lreason is Limit.DISABLED
    assert by["ON"].current_ma in (other, 0)
    if policy == DisablePolicy.FREE:
        assert by["ON"].current_ma == 0 and by["ON"].paused  # 16 - 12 < 6


def test_rule_and_override_wishes() -> None:
    s = site(
        32,
        ev("R0", used_phases=1, rule_current=0),
        ev("R10", used_phases=2, rule_current=10 * A),
        ev("R3", used_phases=4, rule_current=3 * A),
        ev("OV", used_phases=7, rule_current=0, override_current=8 * A),
        ev("OFF", used_phases=7, override_disable=True),
    )
    by = allocate(s, BalancerState(), 0.0).by_id()
    assert (by["R0"].current_ma, by["R0"].paused, by["R0"].reason) == (0, False, "rule")
    assert (by["R10"].current_ma, by["R10"].lreason) == (10 * A, Limit.RULE)
    assert by["R3"].current_ma == 6 * A  # a wish below the minimum charges at the minimum
    assert (by["OV"].current_ma, by["OV"].reason) == (8 * A, "override")
    assert (by["OFF"].current_ma, by["OFF"].reason) == (0, "override")


def test_not_authorised_waits_without_pause_semantics() -> None:
    s = site(32, ev("E1", needs_auth=True, used_phases=1))
    d = allocate(s, BalancerState(), 0.0).evses[0]
    assert (d.current_ma, d.paused, d.pause_reason) == (0, False, PauseReason.NONE)
    assert d.reason == "waiting for authorisation" and d.lreason is Limit.NOT_AUTHORISED
    ok = site(32, ev("E1", needs_auth=True, authorised=True, used_phases=1))
    assert allocate(ok, BalancerState(), 3.0).evses[0].current_ma == 16 * A


def test_no_vehicle_gets_nothing() -> None:
    d = allocate(site(32, ev("E1", state=EvseState.WAITING)), BalancerState(), 0.0).evses[0]
    assert (d.current_ma, d.paused, d.reason) == (0, False, "no vehicle")


def test_evse_maximum_below_minimum_stops_without_pausing() -> None:
    d = allocate(site(32, ev("E1", max_current=0)), BalancerState(), 0.0).evses[0]
    assert (d.current_ma, d.paused, d.reason) == (0, False, "EVSE maximum")


# --- faults -----------------------------------------------------------------------------------


def test_offline_evse_keeps_its_last_current_as_load_then_fail_safe_after_180_s() -> None:
    s = site(
        32,
        ev("E1", used_phases=1, max_current=32 * A, fail_safe_current=10 * A),
        ev("E2", used_phases=1, max_current=32 * A),
        max_imbalance_cur=0,
    )
    a, st, s, now = run(s, 2)
    assert currents(a) == {"E1": 16 * A, "E2": 16 * A}
    # E1's wallbox goes quiet.
    quiet = dataclasses.replace(s.evses[0], offline_since=now)
    s2 = dataclasses.replace(s, evses=(quiet, s.evses[1]))
    a = allocate(s2, st, now + 3)
    d = a.by_id()["E1"]
    assert (d.current_ma, d.reason, d.controlled, d.write) == (16 * A, "offline", False, False)
    assert a.by_id()["E2"].current_ma == 16 * A  # no new allocation beyond the rest
    a = allocate(s2, a.state, now + 179)
    assert a.by_id()["E1"].current_ma == 16 * A
    a = allocate(s2, a.state, now + 181)
    assert a.by_id()["E1"].current_ma == 16 * A  # max(last set 16, fail-safe 10)


def test_offline_evse_never_set_counts_its_maximum_on_all_phases() -> None:
    s = site(32, ev("E1", offline_since=0.0, max_current=20 * A), ev("E2", used_phases=1))
    by = allocate(s, BalancerState(), 200.0).by_id()
    assert by["E1"].load == Phases(20 * A, 20 * A, 20 * A)
    assert by["E2"].current_ma == 12 * A


def test_an_unreachable_evse_counted_as_load_is_not_an_overdraw() -> None:
    # Never heard from: its maximum is reserved on all phases, but nothing was measured,
    # so there is no overshoot and no penalty once it answers.
    s = site(16, ev("E1", used_phases=1), ev("E2", offline_since=0.0, max_current=32 * A))
    a = allocate(s, BalancerState(), 1.0)
    assert a.overdraft_cur == 0 and a.overdraft_applied == ZERO
    assert a.consumed == ZERO
    assert a.by_id()["E1"].current_ma == 0
    back = dataclasses.replace(s, evses=(s.evses[0], ev("E2", used_phases=2)))
    assert currents(allocate(back, a.state, 4.0)) == {"E1": 16 * A, "E2": 16 * A}


def test_offline_evse_paused_by_us_counts_the_fail_safe_after_the_timeout() -> None:
    s = site(32, ev("E1", used_phases=1, fail_safe_current=1, min_current=8 * A))
    a, st, s, now = run(s, 2)
    s_off = dataclasses.replace(s, evses=(dataclasses.replace(s.evses[0], enabled=False),))
    a = allocate(s_off, st, now + 3)  # disabled: we set 0
    s_q = dataclasses.replace(s, evses=(dataclasses.replace(s.evses[0], offline_since=now + 4),))
    assert allocate(s_q, a.state, now + 100).evses[0].current_ma == 0
    assert allocate(s_q, a.state, now + 200).evses[0].current_ma == 8 * A  # 1 = its minimum


def test_stale_meter_phase_assumes_the_worst() -> None:
    cars = (ev("E1", used_phases=1), ev("E2", used_phases=2))
    stale = Measurement(Phases(2 * A, 2 * A, 0), stale=0b010)
    a = allocate(site(32, *cars, load=stale), BalancerState(), 0.0)
    by = a.by_id()
    assert by["E1"].current_ma == 16 * A
    assert by["E2"].current_ma == 0 and by["E2"].paused
    assert by["E2"].reason == "minimum current not available (site phase L2)"
    # A provable bound on the unknown load lets the minimum (and more) continue.
    bounded = Measurement(Phases(2 * A, 2 * A, 0), stale=0b010, worst_case=Phases(0, 20 * A, 0))
    a2 = allocate(site(32, *cars, load=bounded), BalancerState(), 0.0)
    assert a2.by_id()["E2"].current_ma == 12 * A


# --- modes and determinism --------------------------------------------------------------------


def test_observe_mode_decides_but_marks_nothing_writable() -> None:
    s = site(16, ev("E1", used_phases=1), lb_enabled=False)
    a = allocate(s, BalancerState(), 0.0)
    assert a.observe
    assert a.evses[0].current_ma == 16 * A and not a.evses[0].write
    assert allocate(site(16, ev("E1")), BalancerState(), 0.0).evses[0].write


def test_input_order_does_not_change_decisions() -> None:
    cars = [ev(f"E{i}", used_phases=1 << (i % 3), priority=1 + i % 2) for i in range(7)]
    a = allocate(site(20, *cars), BalancerState(), 0.0)
    b = allocate(site(20, *reversed(cars)), BalancerState(), 0.0)
    assert a.by_id() == b.by_id()
    assert [d.id for d in b.evses] == [c.id for c in reversed(cars)]
    assert a.state == b.state

