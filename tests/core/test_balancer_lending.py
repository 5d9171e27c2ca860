"""Lending what a car does not take, and probing upward whether it would take more."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest

from chargebrain.core.balancer import (
    Allocation,
    BalancerState,
    Limit,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.phases import Phases
from tests.core.balancer_helpers import A, ev

Draw = Callable[[int], int]


def two_cars(draw_b: Draw, minutes: float) -> list[tuple[float, int, int, Limit]]:
    """A and B share 32 A on one phase; A draws what it is given, B `draw_b(given)`.
    Returns (time, A's current, B's current, B's lreason) every cycle for `minutes`."""
    s = SiteInput(
        SiteConfig(32 * A, max_imbalance_cur=0),
        evses=(ev("A", used_phases=1, max_current=16 * A),
               ev("B", used_phases=1, max_current=32 * A)),
    )
    state, now, out = BalancerState(), 0.0, []
    while now <= minutes * 60:
        a = allocate(s, state, now)
        by = a.by_id()
        out.append((now, by["A"].current_ma, by["B"].current_ma, by["B"].lreason))
        state = a.state
        s = _feed(s, a, draw_b)
        now += 3.0
    return out


def _feed(s: SiteInput, a: Allocation, draw_b: Draw) -> SiteInput:
    by = a.by_id()
    evses = []
    for e in s.evses:
        given = by[e.id].current_ma
        got = draw_b(given) if e.id == "B" else given
        evses.append(dataclasses.replace(e, measured=Phases(got, 0, 0)))
    return dataclasses.replace(s, evses=tuple(evses))


@pytest.mark.parametrize(
    "draw_b",
    [lambda g: g * 6 // 10, lambda g: max(0, g - 3 * A)],
    ids=["a share of its offer", "a fixed amount below its offer"],
)
def test_a_car_whose_draw_follows_its_offer_is_raised_again_after_a_probe(
        draw_b: Draw) -> None:
    seen = two_cars(draw_b, 5)
    # Lent from at first: its draw falls with its cap, down to the minimum ...
    assert min(b for t, _, b, _ in seen if t < 60) == 6 * A
    # ... until an upward probe shows that it takes more when offered more: from then on
    # it keeps the share the site has for it (16 A beside A's 16 A).
    late = [(a, b, why) for t, a, b, why in seen if t >= 120]
    assert all(b == 16 * A and why is not Limit.CAR_DRAW for _, b, why in late)
    assert all(a == 16 * A for a, _, _ in late)


def test_a_car_that_does_not_draw_more_when_offered_more_stays_lent_from() -> None:
    seen = two_cars(lambda g: min(g, 5 * A), 40)
    # Capped at its 5 A plus the margin; probed now and then, more rarely each time.
    capped = [b for t, _, b, why in seen if why is Limit.CAR_DRAW]
    assert capped and set(capped) == {7 * A}
    probes = [t for (t, _, b, _), (_, _, b0, _) in zip(seen[1:], seen, strict=False)
              if b > 7 * A >= b0]
    assert len(probes) == 3  # after 1 min, then 10 and 20 minutes after the last
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps[1] > gaps[0] >= 600
    assert sum(1 for t, _, b, _ in seen if b > 7 * A) * 3 <= 3 * 36  # 30 s a probe at most


def test_a_car_that_follows_its_offer_is_lent_from_again_once_it_draws_less_on_its_own() -> None:
    full = {"at": 10**9}

    def draw_b(given: int) -> int:
        return min(given * 6 // 10, full["at"])

    s = SiteInput(
        SiteConfig(32 * A, max_imbalance_cur=0),
        evses=(ev("A", used_phases=1, max_current=16 * A),
               ev("B", used_phases=1, max_current=32 * A)),
    )
    state, now = BalancerState(), 0.0
    a = allocate(s, state, now)
    for _ in range(60):  # 3 minutes: probed, and known to follow its offer
        s, now = _feed(s, a, draw_b), now + 3
        a = allocate(s, a.state, now)
    assert a.by_id()["B"].current_ma == 16 * A
    full["at"] = 3 * A  # the car tapers on its own
    for _ in range(5):
        s, now = _feed(s, a, draw_b), now + 3
        a = allocate(s, a.state, now)
    assert a.by_id()["B"].current_ma == 6 * A  # its 3 A plus the margin, at least 6 A
    assert a.by_id()["B"].lreason is Limit.CAR_DRAW
