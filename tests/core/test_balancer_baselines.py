"""The naive baseline policies the balancer is compared against."""

from __future__ import annotations

from chargebrain.core.balancer import (
    BalancerState,
    EvseInput,
    GroupConfig,
    PauseReason,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.baselines import equal_split, fcfs_priority
from chargebrain.core.model import EvseState
from tests.core.balancer_helpers import A, currents


def cars(*specs: tuple[str, int, float]) -> tuple[EvseInput, ...]:
    """(id, used_phases, plugged_since) per car."""
    return tuple(
        EvseInput(i, used_phases=m, state=EvseState.CHARGING, plugged_since=t) for i, m, t in specs
    )


def test_equal_split_shares_each_limit_equally() -> None:
    s = SiteInput(SiteConfig(20 * A, max_imbalance_cur=0), evses=cars(("E1", 7, 0), ("E2", 7, 1)))
    assert currents(equal_split(s, BalancerState(), 0.0)) == {"E1": 10 * A, "E2": 10 * A}


def test_equal_split_stops_everyone_when_a_share_is_below_minimum() -> None:
    three = cars(("E1", 7, 0), ("E2", 7, 1), ("E3", 7, 2))
    a = equal_split(SiteInput(SiteConfig(16 * A), evses=three), BalancerState(), 0.0)
    assert currents(a) == {"E1": 0, "E2": 0, "E3": 0}
    assert all(d.paused and d.pause_reason is PauseReason.SHORTAGE for d in a.evses)
    # The balancer lets two of them charge instead (and rotates).
    b = allocate(SiteInput(SiteConfig(16 * A), evses=three), BalancerState(), 0.0)
    assert sorted(currents(b).values()) == [0, 8 * A, 8 * A]


def test_equal_split_respects_group_limits() -> None:
    evs = (
        EvseInput("E1", group=1, used_phases=7, state=EvseState.CHARGING),
        EvseInput("E2", group=1, used_phases=7, state=EvseState.CHARGING),
        EvseInput("E3", used_phases=7, state=EvseState.CHARGING),
    )
    s = SiteInput(SiteConfig(40 * A), groups=(GroupConfig(1, max_current=14 * A),), evses=evs)
    assert currents(equal_split(s, BalancerState(), 0.0)) == {
        "E1": 7 * A,
        "E2": 7 * A,
        "E3": 13300,
    }


def test_fcfs_serves_by_priority_then_plug_in_time_without_rotation() -> None:
    evs = (
        EvseInput("LATE", used_phases=7, state=EvseState.CHARGING, plugged_since=50.0),
        EvseInput("EARLY", used_phases=7, state=EvseState.CHARGING, plugged_since=10.0),
        EvseInput("VIP", used_phases=7, state=EvseState.CHARGING, plugged_since=90.0, priority=2),
    )
    s = SiteInput(SiteConfig(30 * A), evses=evs)
    a = fcfs_priority(s, BalancerState(), 100.0)
    assert currents(a) == {"VIP": 16 * A, "EARLY": 14 * A, "LATE": 0}
    state = a.state
    for k in range(1, 2000):  # well past any rotation time: still no turn for LATE
        a = fcfs_priority(s, state, 100.0 + 3 * k)
        state = a.state
    assert currents(a)["LATE"] == 0
