"""What the allocation reuses from the cycle before, checked against starting afresh
(hypothesis).

Where the ranking starts from (`BalancerState.rank_order`) and the memories kept as they
were (a car still paused as before keeps its memory object) must never change a decision:
over random sequences of cycles (cars draw what they are given or less, readings move by
noise, cars are unplugged and plugged in, time moves by uneven steps) every cycle is
allocated from the carried state and again from a state recomputed the straightforward
way: no ranking hint, a shuffled one, every memory rebuilt with its charge counted up to
the cycle before (what a memory rebuilt every cycle holds), and the reason texts shared
between cycles built afresh. All must agree.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargebrain.core.balancer import (
    Allocation,
    BalancerState,
    EvseMemory,
    GroupConfig,
    Limit,
    Measurement,
    SiteConfig,
    SiteInput,
    admission,
    allocate,
)
from chargebrain.core.model import EvseState
from chargebrain.core.phases import ZERO, Phases
from tests.core.balancer_helpers import ev
from tests.core.test_balancer_properties import sites

A = 1000
CYCLES = 8


@st.composite
def tight_sites(draw: st.DrawFn) -> SiteInput:
    """Alike cars plugged in at the same time under little room: ties in the ranking and
    cars at the edge of admission, where the order a sort starts from could show."""
    n = draw(st.integers(2, 12))
    evses = tuple(
        ev(f"E{i:02d}", group=draw(st.sampled_from([0, 1])), max_current=16 * A,
           rotation=draw(st.sampled_from([0, 120, 240])),
           used_phases=draw(st.sampled_from([1, 7, 7])), priority=draw(st.sampled_from([1, 1, 2])))
        for i in range(n)
    )
    cfg = SiteConfig(max_total_current=draw(st.integers(6, 60)) * A,
                     max_imbalance_cur=draw(st.sampled_from([0, 10 * A, 20 * A])))
    group = GroupConfig(1, 0, max_current=draw(st.integers(6, 40)) * A)
    return SiteInput(cfg, Measurement(), (group,), evses)


def next_cycle(site: SiteInput, a: Allocation, rnd: random.Random) -> SiteInput:
    """Cars draw what they were given (some less, some with noise); now and then a car is
    unplugged or plugged in; the site meter moves."""
    by = a.by_id()
    evses = []
    for e in site.evses:
        got = by[e.id].load.as_tuple()
        r = rnd.random()
        if r < 0.15:
            got = tuple(min(v, 7 * A) for v in got)
        elif r < 0.3:
            got = tuple(max(0, v + rnd.randint(-400, 400)) if v else 0 for v in got)
        shift = {0: 0, 120: 1, 240: 2}[e.rotation]
        measured = Phases.of([got[(i + shift) % 3] for i in range(3)])
        state = e.state
        if rnd.random() < 0.08:
            state = EvseState.WAITING if state.plugged else EvseState.CHARGING
            measured = ZERO
        evses.append(dataclasses.replace(e, measured=measured, state=state))
    m = site.load.current
    load = dataclasses.replace(site.load, current=Phases(
        *(max(0, v + rnd.randint(-8 * A, 8 * A)) for v in m.as_tuple())))
    return dataclasses.replace(site, evses=tuple(evses), load=load)


def rebuilt(state: BalancerState, before: float, rnd: random.Random) -> BalancerState:
    """The state as a memory rebuilt every cycle would hold it: charge counted up to the
    cycle before for a car not charging, and the ranking started from scratch or from a
    shuffled order."""
    def anew(m: EvseMemory) -> EvseMemory:
        return m if m.charge_rate else dataclasses.replace(m, charge_at=before)

    hint = list(state.rank_order)
    rnd.shuffle(hint)
    return dataclasses.replace(
        state,
        evses={k: anew(m) for k, m in state.evses.items()},
        rank_order=tuple(hint[: rnd.randint(0, len(hint))]),
    )


def forget_shared_texts() -> None:
    """Empty the memos that share reason texts between cycles (admission.py): a text
    built afresh must be the one shared."""
    admission._shortages.clear()
    admission._timers.clear()


def same(a: Allocation, b: Allocation) -> None:
    """Equal decisions, summaries and carried state (charge_at aside where no charge
    accrues: it counts only with a charge rate)."""
    assert a.evses == b.evses
    assert dataclasses.replace(a, evses=(), state=BalancerState()) == dataclasses.replace(
        b, evses=(), state=BalancerState())

    def norm(s: BalancerState) -> BalancerState:
        return dataclasses.replace(s, evses={
            k: m if m.charge_rate else dataclasses.replace(m, charge_at=0.0)
            for k, m in s.evses.items()})

    assert norm(a.state) == norm(b.state)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(sites(max_evses=12), tight_sites()), st.integers(0, 2**32 - 1))
def test_reused_work_never_changes_an_allocation(site: SiteInput, seed: int) -> None:
    rnd = random.Random(seed)
    # Ties in the ranking (cars plugged in and waiting since the same time) are where the
    # order the sort starts from could show.
    site = dataclasses.replace(site, evses=tuple(
        dataclasses.replace(e, plugged_since=rnd.choice([None, None, 0.0, e.plugged_since]))
        for e in site.evses))
    state, now = BalancerState(), 0.0
    for _ in range(CYCLES):
        a = allocate(site, state, now)
        same(a, allocate(site, dataclasses.replace(state, rank_order=()), now))
        same(a, allocate(site, rebuilt(state, now - 3.0, rnd), now))
        forget_shared_texts()
        same(a, allocate(site, state, now))
        for d in a.evses:  # a memory kept as it was still tells this cycle's pause
            m = a.state.evses.get(d.id)
            if d.paused and m is not None and d.lreason is not Limit.OFFLINE:
                assert m.last_set == 0 and m.pause_reason is d.pause_reason
                assert m.waiting_since is not None
                assert d.pause_time == now - m.waiting_since
        site, state = next_cycle(site, a, rnd), a.state
        now += rnd.choice([1.0, 3.0, 3.0, 10.0, 61.0])


def test_a_car_still_paused_keeps_its_memory_object() -> None:
    """The reuse the test above guards actually happens: two cars on room for one, the
    waiting one's memory is the same object cycle after cycle once its pause has begun."""
    site = SiteInput(SiteConfig(max_total_current=10 * A), Measurement(), (),
                     (ev("E1", max_current=16 * A), ev("E2", max_current=16 * A)))
    state, now = BalancerState(), 0.0
    mems: list[EvseMemory] = []
    for _ in range(4):
        a = allocate(site, state, now)
        state, now = a.state, now + 3.0
        paused = [d.id for d in a.evses if d.paused]
        assert len(paused) == 1
        mems.append(state.evses[paused[0]])
    assert mems[2] is mems[3]
    assert state.rank_order
