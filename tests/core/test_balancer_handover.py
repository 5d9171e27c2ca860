"""Handing current from one car to another without overshoot (handover.py).

Cars do not follow a new current at once: one that gets less keeps drawing for a few
seconds. Increases wait until the decreases are seen, so that while the cars change over
Σ max(new, last, drawn) stays within every limit.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargebrain.core.balancer import (
    BalancerState,
    EvseInput,
    GroupConfig,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.model import EvseState
from chargebrain.core.phases import Phases
from tests.core.balancer_helpers import A, currents


def ev(id: str, **kw: object) -> EvseInput:
    kw.setdefault("state", EvseState.CHARGING)
    kw.setdefault("used_phases", 7)
    return EvseInput(id, **kw)  # type: ignore[arg-type]


def measured(s: SiteInput, draws: dict[str, int]) -> SiteInput:
    evses = tuple(
        dataclasses.replace(e, measured=Phases.on_mask(draws.get(e.id, 0), 7)) for e in s.evses
    )
    return dataclasses.replace(s, evses=evses)


def plug(s: SiteInput, id: str) -> SiteInput:
    evses = tuple(
        dataclasses.replace(e, state=EvseState.CHARGING) if e.id == id else e for e in s.evses
    )
    return dataclasses.replace(s, evses=evses)


def test_a_car_starts_only_once_the_car_it_shares_with_has_come_down() -> None:
    s = SiteInput(
        SiteConfig(12500), evses=(ev("OLD"), ev("NEW", state=EvseState.WAITING))
    )
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"OLD": 12500, "NEW": 0}
    # NEW is plugged in. OLD is asked to come down to make room, but still draws its
    # 12.5 A: NEW waits.
    s = measured(plug(s, "NEW"), {"OLD": 12500})
    a = allocate(s, a.state, 3.0)
    assert currents(a) == {"OLD": 6200, "NEW": 0}
    assert a.by_id()["NEW"].reason == "waiting for other cars to come down (site phase L1)"
    s = measured(s, {"OLD": 9 * A})  # still coming down
    a = allocate(s, a.state, 6.0)
    assert currents(a)["NEW"] == 0
    s = measured(s, {"OLD": 6200})
    a = allocate(s, a.state, 9.0)
    assert currents(a) == {"OLD": 6200, "NEW": 6200}


def test_a_rising_car_waits_until_the_car_giving_way_has_come_down() -> None:
    s = SiteInput(SiteConfig(22 * A), evses=(ev("A", max_current=6 * A), ev("B")))
    s = measured(s, {"A": 6 * A, "B": 16 * A})
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"A": 6 * A, "B": 16 * A}
    # A may take 16 A from now on (say, its maximum was raised): the two share 22 A. B
    # comes down at once; A rises only once B's 16 A are off the books.
    s = dataclasses.replace(
        s, evses=(dataclasses.replace(s.evses[0], max_current=16 * A), s.evses[1])
    )
    a = allocate(s, a.state, 3.0)
    assert currents(a) == {"A": 6 * A, "B": 11 * A}
    assert a.by_id()["A"].reason == "site phase L1"
    s = measured(s, {"A": 6 * A, "B": 11 * A})
    a = allocate(s, a.state, 6.0)
    assert currents(a) == {"A": 11 * A, "B": 11 * A}


def test_a_car_still_ramping_up_to_its_last_current_counts_with_it() -> None:
    s = SiteInput(SiteConfig(20 * A), evses=(ev("UP"), ev("NEW", state=EvseState.WAITING)))
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"UP": 16 * A, "NEW": 0}
    # NEW is plugged in while UP, given 16 A, has only reached 4 A: UP may still be
    # rising towards its 16 A, so NEW waits until UP's lower current is on the books.
    s = measured(plug(s, "NEW"), {"UP": 4 * A})
    a = allocate(s, a.state, 3.0)
    assert currents(a) == {"UP": 10 * A, "NEW": 0}
    s = measured(s, {"UP": 10 * A})
    a = allocate(s, a.state, 6.0)
    assert currents(a) == {"UP": 10 * A, "NEW": 10 * A}


# --- a site where cars come down slowly never goes over its limits ---------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 6),
    limit=st.integers(12, 40),
    group=st.integers(10, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_cars_that_come_down_a_cycle_late_never_overload_a_limit(
    n: int, limit: int, group: int, seed: int
) -> None:
    """Each car draws the larger of its new and its last current for one cycle when it is
    given less (a lag), and its new current when given more; cars come and go and the
    house load moves. What the cars draw stays within the site and group limits."""
    rnd = random.Random(seed)
    evses = tuple(
        ev(f"E{i}", group=1 if i % 2 else 0, max_current=rnd.choice([10, 16, 32]) * A)
        for i in range(n)
    )
    cfg = SiteConfig(limit * A, max_imbalance_cur=0)
    groups = (GroupConfig(1, max_current=group * A),)
    s = SiteInput(cfg, groups=groups, evses=evses)
    state = BalancerState()
    last: dict[str, int] = {}
    now = 0.0
    rose = False
    for _ in range(60):
        a = allocate(s, state, now)
        plugged = {e.id for e in s.evses if e.state is EvseState.CHARGING}
        draws = {}
        for d in a.evses:
            draws[d.id] = max(d.current_ma, last.get(d.id, 0)) if d.id in plugged else 0
        in_group = sum(v for k, v in draws.items() if int(k[1:]) % 2)
        if not rose:  # the cycle the house load rises, nobody can have reacted yet
            assert s.load.current.l1 + sum(draws.values()) <= limit * A, (now, draws)
        assert in_group <= group * A, (now, draws)
        last = {d.id: d.current_ma for d in a.evses}
        state = a.state
        s = measured(s, draws)
        if rnd.random() < 0.1:  # a car leaves or comes back
            i = rnd.randrange(n)
            e = s.evses[i]
            state_ = EvseState.WAITING if e.id in plugged else EvseState.CHARGING
            e = dataclasses.replace(e, state=state_, measured=Phases())
            s = dataclasses.replace(s, evses=(*s.evses[:i], e, *s.evses[i + 1 :]))
        rose = False
        if rnd.random() < 0.2:  # the house load moves
            house = Phases.uniform(rnd.randint(0, 6) * A)
            rose = house.l1 > s.load.current.l1
            s = dataclasses.replace(s, load=dataclasses.replace(s.load, current=house))
        now += 3.0
