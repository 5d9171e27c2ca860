"""Departure plans in the balancer: who leaves first and still needs most is served first,
within the priorities, the minimum currents and the limits (core/balancer/plans.py)."""

from __future__ import annotations

import dataclasses

from chargebrain.core.balancer import (
    BalancerState,
    EvseInput,
    Limit,
    PauseReason,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.model import EvseState
from chargebrain.core.phases import Phases
from tests.core.balancer_helpers import A, currents

HOUR = 3600.0


def car(id: str, *, leaves_h: float | None = None, need_kwh: float = 0.0,
        **kw: object) -> EvseInput:
    """A three-phase car drawing what it was given (`drawing` mA), with a plan if
    `leaves_h` is given (hours from t = 0)."""
    drawing = int(kw.pop("drawing", 0))  # type: ignore[call-overload]
    kw.setdefault("state", EvseState.CHARGING)
    kw.setdefault("used_phases", 7)
    kw.setdefault("max_current", 16 * A)
    return EvseInput(
        id, measured=Phases.uniform(drawing),
        departure=None if leaves_h is None else leaves_h * HOUR,
        need_wh=need_kwh * 1000, **kw)  # type: ignore[arg-type]


def site(max_a: float, *evses: EvseInput, **kw: object) -> SiteInput:
    return SiteInput(SiteConfig(max_total_current=int(max_a * A), **kw),  # type: ignore[arg-type]
                     evses=evses)


def test_without_plans_two_cars_share_alike() -> None:
    a = allocate(site(20, car("v"), car("s")), BalancerState(), 0.0)
    assert currents(a) == {"v": 10 * A, "s": 10 * A}


def test_the_car_that_leaves_soon_and_needs_much_gets_what_the_other_can_spare() -> None:
    # v leaves in 2 h 15 min and wants 8 kWh: 7.7 A over the 1.5 h it counts on (its time
    # left less the 45 min reserve). s stays 9 h for 10 kWh (its minimum brings that with
    # room to spare): s keeps its minimum.
    s = site(20, car("v", leaves_h=2.25, need_kwh=8), car("s", leaves_h=9, need_kwh=10))
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"v": 14 * A, "s": 6 * A}
    d = a.by_id()
    assert d["s"].lreason is Limit.SITE
    assert d["s"].reason == "site phase L1, departure plan leaves time"
    assert d["v"].reason == "site phase L1"
    # v leaves in an hour and wants 10 kWh: it gets all it can take, and s, which can
    # wait, waits.
    s = site(20, car("v", leaves_h=1, need_kwh=10), car("s", leaves_h=9, need_kwh=10))
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"v": 16 * A, "s": 0}
    d = a.by_id()
    assert d["s"].paused and d["s"].pause_reason is PauseReason.SHORTAGE
    assert d["s"].reason == "departure plan leaves time (site phase L1)"


def test_an_urgent_car_is_given_its_need_with_a_margin_then_everyone_shares() -> None:
    # u needs 5 kWh over 1.75 h less the 45 min reserve: 7.2 A, urgent (above its
    # minimum); with the margin 10.9 A. Then the rest goes to u and the car without a
    # plan alike, and the slack car gets what is left.
    need_ma = 5000 * 3.6e6 / (230 * 3 * 3600)
    assert round(need_ma) == 7246
    s = site(40, car("u", leaves_h=1.75, need_kwh=5), car("n"),
             car("s", leaves_h=9, need_kwh=5))
    got = currents(allocate(s, BalancerState(), 0.0))
    assert got["u"] == got["n"] == 16 * A  # both reach their maximum
    assert got["s"] == 8 * A  # the slack car takes what is left
    s = site(30, car("u", leaves_h=1.75, need_kwh=5), car("n"),
             car("s", leaves_h=9, need_kwh=5))
    got = currents(allocate(s, BalancerState(), 0.0))
    # u first gets its 10.9 A (in whole 100 mA steps: 10.8), then u and n rise alike.
    assert got == {"u": 14_400, "n": 9_600, "s": 6 * A}


def test_the_earliest_departure_is_served_first() -> None:
    # Both are urgent; there is room for one to get what it needs: the one leaving first.
    s = site(26, car("late", leaves_h=3.5, need_kwh=30), car("early", leaves_h=2, need_kwh=20))
    got = currents(allocate(s, BalancerState(), 0.0))
    assert got == {"early": 16 * A, "late": 10 * A}
    # Leaving within the hour of each other, they share alike.
    s = site(26, car("late", leaves_h=2.5, need_kwh=30), car("early", leaves_h=2, need_kwh=20))
    got = currents(allocate(s, BalancerState(), 0.0))
    assert got == {"early": 13 * A, "late": 13 * A}


def test_a_waiting_urgent_car_takes_the_place_of_a_charging_slack_one() -> None:
    # Room for one minimum: the slack car charging gives way to the urgent one waiting.
    slack = car("s", leaves_h=9, need_kwh=5, drawing=10 * A)
    urgent = car("u", leaves_h=1, need_kwh=8, state=EvseState.EV_PRESENT)
    first = allocate(site(10, slack, dataclasses.replace(urgent, state=EvseState.WAITING)),
                     BalancerState(), 0.0)
    assert currents(first) == {"s": 10 * A, "u": 0}
    a = allocate(site(10, slack, urgent), first.state, 3.0)
    d = a.by_id()["s"]
    assert d.current_ma == 0 and d.paused and d.pause_reason is PauseReason.ROTATION
    assert d.reason == "departure plan leaves time (site phase L1)"
    # u starts once s is seen to have come down.
    assert a.by_id()["u"].reason.startswith("waiting for other cars to come down")
    stopped = dataclasses.replace(slack, measured=Phases())
    a = allocate(site(10, stopped, urgent), a.state, 6.0)
    assert currents(a) == {"s": 0, "u": 10 * A}


def test_plans_never_cross_priorities() -> None:
    # An urgent car of priority 1 does not take current a car of priority 2 can use.
    s = site(23, car("u", leaves_h=1, need_kwh=10), car("p2", priority=2))
    assert currents(allocate(s, BalancerState(), 0.0)) == {"u": 7 * A, "p2": 16 * A}


def test_a_car_without_a_plan_is_served_before_slack_ones() -> None:
    s = site(24, car("n"), car("s1", leaves_h=9, need_kwh=5), car("s2", leaves_h=9, need_kwh=5))
    assert currents(allocate(s, BalancerState(), 0.0)) == {"n": 12 * A, "s1": 6 * A,
                                                             "s2": 6 * A}


def test_a_plan_whose_departure_has_passed_counts_for_nothing() -> None:
    s = site(20, car("v", leaves_h=1, need_kwh=10), car("s", leaves_h=9, need_kwh=10))
    a = allocate(s, BalancerState(), 2 * HOUR)  # v should have left an hour ago
    # v counts as a car without a plan: it is served before s, whose plan leaves time.
    assert currents(a) == {"v": 14 * A, "s": 6 * A}
    assert not a.state.evses["v"].urgent


def test_a_car_that_had_all_it_asked_for_is_slack() -> None:
    s = site(20, car("done", leaves_h=5, need_kwh=0), car("n"))
    assert currents(allocate(s, BalancerState(), 0.0)) == {"done": 6 * A, "n": 14 * A}


def test_once_urgent_a_car_stays_urgent_until_it_is_unplugged() -> None:
    # u needs 7 A (urgent); given more it needs less, but it keeps its class, so it is
    # not sent back behind the others every time it has caught up.
    s = site(20, car("u", leaves_h=4, need_kwh=16), car("s", leaves_h=9, need_kwh=5))
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"u": 14 * A, "s": 6 * A}
    assert a.state.evses["u"].urgent and not a.state.evses["s"].urgent
    # Later it needs only 3 kWh more: 2 A, slack by itself, still served first.
    later = site(20, car("u", leaves_h=4, need_kwh=3, drawing=14 * A),
                 car("s", leaves_h=9, need_kwh=5, drawing=6 * A))
    a = allocate(later, a.state, HOUR)
    assert currents(a) == {"u": 14 * A, "s": 6 * A}
    # Unplugged, it forgets.
    gone = site(20, car("u", state=EvseState.WAITING), car("s", leaves_h=9, need_kwh=5))
    a = allocate(gone, a.state, HOUR + 3)
    assert "u" not in a.state.evses or not a.state.evses["u"].urgent


def test_a_single_phase_car_needs_three_times_the_current() -> None:
    # 5 kWh in 3.75 h (3 h counted): 2.4 A on three phases (slack), 7.2 A on one (urgent).
    three = car("c3", leaves_h=3.75, need_kwh=5)
    one = car("c1", leaves_h=3.75, need_kwh=5, used_phases=1)
    a = allocate(site(22, three, one, max_imbalance_cur=0), BalancerState(), 0.0)
    assert currents(a) == {"c3": 6 * A, "c1": 16 * A}
    assert a.state.evses["c1"].urgent and not a.state.evses["c3"].urgent
