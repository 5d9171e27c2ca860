"""Charging schedules in the balancer: an EVSE's, a group's or the site's limit by time of
day is a limit like any other, never exceeded, and named in the reason."""

from __future__ import annotations

from chargebrain.core.balancer import (
    BalancerState,
    GroupConfig,
    Limit,
    SiteConfig,
    SiteInput,
    allocate,
)
from tests.core.balancer_helpers import A, currents, ev


def test_an_evses_schedule_caps_it_like_its_maximum() -> None:
    s = SiteInput(SiteConfig(32 * A), evses=(
        ev("a", used_phases=7, schedule_current=8 * A), ev("b", used_phases=7)))
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"a": 8 * A, "b": 16 * A}
    d = a.by_id()["a"]
    assert (d.lreason, d.reason) == (Limit.SCHEDULE, "charging schedule")


def test_a_schedule_below_the_minimum_lets_the_car_not_charge() -> None:
    for limit in (0, 4 * A):
        s = SiteInput(SiteConfig(32 * A), evses=(
            ev("a", used_phases=7, schedule_current=limit),))
        d = allocate(s, BalancerState(), 0.0).by_id()["a"]
        assert d.current_ma == 0 and not d.charging_enabled and not d.paused
        assert (d.lreason, d.reason) == (Limit.SCHEDULE, "charging schedule")


def test_the_sites_schedule_is_named_where_it_binds() -> None:
    s = SiteInput(SiteConfig(20 * A, scheduled=True),
                  evses=(ev("a", used_phases=7), ev("b", used_phases=7)))
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"a": 10 * A, "b": 10 * A}
    d = a.by_id()["a"]
    assert (d.lreason, d.reason) == (Limit.SCHEDULE, "site (charging schedule) phase L1")
    # The wallbox supply line, when it is lower, is what binds.
    s = SiteInput(SiteConfig(20 * A, max_total_evse_current=12 * A, scheduled=True),
                  evses=(ev("a", used_phases=7),))
    d = allocate(s, BalancerState(), 0.0).by_id()["a"]
    assert (d.lreason, d.reason) == (Limit.SUPPLY, "wallbox supply phase L1")


def test_a_groups_schedule_is_named_where_it_binds() -> None:
    s = SiteInput(SiteConfig(63 * A),
                  groups=(GroupConfig(5, max_current=14 * A, scheduled=True),),
                  evses=(ev("a", group=5, used_phases=7), ev("b", group=5, used_phases=7)))
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"a": 7 * A, "b": 7 * A}
    d = a.by_id()["b"]
    assert (d.lreason, d.reason) == (Limit.SCHEDULE, "group E5 (charging schedule) phase L1")
