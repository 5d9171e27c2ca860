"""Sharing among cars: rotation by the charge given, and the phase-imbalance check counting
what the cars may and surely do draw."""

from __future__ import annotations

import dataclasses

from chargebrain.core.balancer import (
    Allocation,
    BalancerState,
    Limit,
    Measurement,
    PauseReason,
    SiteConfig,
    SiteInput,
    Tuning,
    allocate,
)
from chargebrain.core.phases import Phases
from tests.core.balancer_helpers import A, currents, ev

#: Starts up to the imbalance limit itself (no hysteresis), for examples built at the limit.
EXACT = Tuning(imbalance_margin_ma=0)


def draw(s: SiteInput, a: Allocation, **override: int) -> SiteInput:
    """Cars draw what they were given (on their EVSE phases), or `override[id]` on L1."""
    by = a.by_id()
    out = []
    for e in s.evses:
        if e.id in override:
            m = Phases(override[e.id], 0, 0)
        else:
            load = by[e.id].load.as_tuple()
            shift = {0: 0, 120: 1, 240: 2}[e.rotation]
            m = Phases.of([load[(i + shift) % 3] for i in range(3)])
        out.append(dataclasses.replace(e, measured=m))
    return dataclasses.replace(s, evses=tuple(out))


def run(
    s: SiteInput, seconds: float, st: BalancerState | None = None, start: float = 0.0
) -> tuple[Allocation, SiteInput, float]:
    now = start
    a = allocate(s, st or BalancerState(), now)
    while now + 3 <= start + seconds:
        s = draw(s, a)
        now += 3
        a = allocate(s, a.state, now)
    return a, draw(s, a), now


# --- rotation by the charge given -------------------------------------------------------------


def test_a_new_car_takes_its_turn_after_the_rotation_time() -> None:
    s = SiteInput(SiteConfig(13 * A), evses=(ev("E1", used_phases=7), ev("E2", used_phases=7)))
    a, s, now = run(s, 60)
    s = dataclasses.replace(s, evses=(*s.evses, ev("NEW", used_phases=7, plugged_since=now)))
    a, s, now = run(s, 3500, a.state, now + 3)
    assert currents(a)["NEW"] == 0  # the others have not charged for an hour yet
    rotated = []
    for _ in range(40):
        s = draw(s, a)
        now += 3
        a = allocate(s, a.state, now)
        rotated += [d.id for d in a.evses if d.pause_reason is PauseReason.ROTATION]
    assert currents(a)["NEW"] >= 6 * A
    assert len(set(rotated)) == 1 and currents(a)[rotated[0]] == 0


def test_a_car_that_had_its_turn_waits_until_the_others_have_had_18_ah_more() -> None:
    cars = tuple(ev(f"E{i}", used_phases=7, plugged_since=float(i)) for i in range(3))
    # two of three charge, at 6.5 A; rotation after 15 minutes
    s = SiteInput(SiteConfig(13 * A, tuning=Tuning(rotation_time_s=900)), evses=cars)
    a, s, now = run(s, 3)
    waiting = next(d.id for d in a.evses if not d.current_ma)
    # The first rotation comes after 15 minutes: the waiting car has had no charge.
    a, s, now = run(s, 1000, a.state, now + 3)
    assert currents(a)[waiting] > 0
    # The car that gave way has had 15 minutes: it waits until a charging car has had
    # 18 Ah more than it (here about 3 hours at 6.5 A), not for another 15 minutes; with
    # a gap of 12 Ah it came back after about 2 hours.
    gave_way = next(d.id for d in a.evses if not d.current_ma)
    a, s, now = run(s, 2 * 3600 + 1800, a.state, now + 3)
    assert currents(a)[gave_way] == 0
    a, s, now = run(s, 2 * 3600, a.state, now + 3)
    assert currents(a)[gave_way] > 0


# --- the phase-imbalance check ----------------------------------------------------------------


def test_a_car_whose_phases_are_not_known_counts_on_its_l1() -> None:
    # A car on a three-phase EVSE that has not drawn yet may turn out to be single-phase:
    # planned on all three phases, it is held to the imbalance limit as if on its L1 only.
    s = SiteInput(SiteConfig(63 * A), evses=(ev("NEW", max_current=32 * A, rotation=120),))
    a = allocate(s, BalancerState(), 0.0)
    d = a.by_id()["NEW"]
    assert d.phases == 7 and d.current_ma == 20 * A
    assert d.lreason is Limit.IMBALANCE
    # It draws on all three: it is a three-phase car and may have all 32 A.
    s = dataclasses.replace(s, evses=(dataclasses.replace(s.evses[0],
                                                          measured=Phases.uniform(20 * A)),))
    a = allocate(s, a.state, 3.0)
    assert a.by_id()["NEW"].current_ma == 32 * A


def test_a_single_phase_car_that_draws_nothing_does_not_balance_the_phases() -> None:
    s = SiteInput(
        SiteConfig(63 * A),
        evses=(
            ev("L1", used_phases=1, max_current=32 * A),
            ev("L2", used_phases=1, rotation=120, max_current=32 * A),
            ev("L3", used_phases=1, rotation=240, max_current=32 * A),
        ),
    )
    a, s, now = run(s, 30)
    assert currents(a) == {"L1": 32 * A, "L2": 32 * A, "L3": 32 * A}
    # L3's car is full: once it has drawn nothing for a few seconds, the others are held
    # to the limit above what L3 surely draws (nothing), though it keeps its minimum in
    # case it starts again.
    for _ in range(5):
        s = draw(s, a, L3=0)
        now += 3
        a = allocate(s, a.state, now)
    assert currents(a) == {"L1": 20 * A, "L2": 20 * A, "L3": 6 * A}
    assert a.by_id()["L1"].lreason is Limit.IMBALANCE


def test_cars_held_by_the_imbalance_rise_again_when_the_other_phases_have_risen() -> None:
    # Four single-phase cars on L3, one on L1, one on L2: filling everyone equally, L3
    # grows four times as fast and the imbalance stops its cars early; once L1 and L2
    # have risen to their cars' maximum, L3 may rise again up to the limit.
    l3 = [ev(f"C{i}", used_phases=1, rotation=240, max_current=32 * A) for i in range(4)]
    s = SiteInput(
        SiteConfig(100 * A),
        evses=(
            *l3,
            ev("L1", used_phases=1, max_current=20 * A),
            ev("L2", used_phases=1, rotation=120, max_current=20 * A),
        ),
    )
    a = allocate(s, BalancerState(), 0.0)
    by = a.by_id()
    assert by["L1"].current_ma == by["L2"].current_ma == 20 * A
    assert sum(by[f"C{i}"].current_ma for i in range(4)) == 40 * A  # 20 A above L1, L2


def test_a_higher_priority_car_refused_for_imbalance_is_not_overtaken_on_its_phase() -> None:
    # HI (priority 2) alone on L1 would unbalance the phases; LO_A on L2 balances it.
    # LO_B, of lower priority on L1 too, must not take the room HI gets once LO_A charges.
    s = SiteInput(
        SiteConfig(8 * A, max_imbalance_cur=6 * A, imbalance_add=True, tuning=EXACT),
        load=dataclasses.replace(SiteInput(SiteConfig(0)).load, current=Phases(A, 0, 2 * A)),
        evses=(
            ev("LO_A", used_phases=1, rotation=120, max_current=6 * A, has_meter=False),
            ev("LO_B", used_phases=1, max_current=6 * A, has_meter=False),
            ev("HI", used_phases=1, priority=2, max_current=6 * A, has_meter=False),
        ),
    )
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"LO_A": 6 * A, "LO_B": 0, "HI": 6 * A}


def test_a_paused_higher_priority_car_keeps_its_pause_when_tried_once_more() -> None:
    """HI (priority 2, L1) is paused for a shortage on L1; when that is over, HI alone
    would unbalance the phases until LO (priority 1, L2) is counted, which happens only
    in the retry after all tiers. HI must still wait for the end of its pause there."""
    hi = ev("HI", used_phases=1, priority=2, max_current=6 * A, has_meter=False)
    lo = ev("LO", used_phases=1, rotation=120, max_current=6 * A, has_meter=False)

    def at(imbalance_a: int, house_l1_a: int) -> SiteInput:
        cfg = SiteConfig(32 * A, max_imbalance_cur=imbalance_a * A, imbalance_add=True,
                         tuning=EXACT)
        house = Measurement(current=Phases(house_l1_a * A, 0, 6 * A))
        return SiteInput(cfg, load=house, evses=(hi, lo))

    a = allocate(at(7, 0), BalancerState(), 0.0)
    assert currents(a) == {"HI": 6 * A, "LO": 6 * A}
    a = allocate(at(6, 30), a.state, 3.0)  # 2 A left on L1
    assert currents(a) == {"HI": 0, "LO": 6 * A} and a.by_id()["HI"].paused
    a = allocate(at(6, 0), a.state, 6.0)
    assert currents(a) == {"HI": 0, "LO": 6 * A}, "restarted before its pause ended"
    pause = SiteConfig(0).min_pause_time
    a = allocate(at(6, 0), a.state, 3.0 + pause + 3.0)
    assert currents(a) == {"HI": 6 * A, "LO": 6 * A}
