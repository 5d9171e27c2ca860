"""An OCPP backend's limit (its charging profile) beside the EVSE's own: the lower wins,
the freed current goes to the others, and the reason says so when it binds."""

from __future__ import annotations

from chargebrain.core.balancer import (
    BalancerState,
    Limit,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.model import EvseState
from tests.core.balancer_helpers import A, currents, ev


def _site(*evses: object) -> SiteInput:
    config = SiteConfig(max_total_current=40 * A, max_imbalance_cur=0)
    return SiteInput(config, evses=tuple(evses))  # type: ignore[arg-type]


def test_the_backend_limit_binds_below_the_evse_maximum_and_the_rest_goes_to_the_others(
) -> None:
    a = allocate(_site(ev("E1", max_current=32 * A, backend_current=10 * A),
                       ev("E2", max_current=32 * A)), BalancerState(), 0.0)
    assert currents(a) == {"E1": 10 * A, "E2": 30 * A}
    e1 = a.by_id()["E1"]
    assert e1.lreason is Limit.BACKEND
    assert e1.reason == "OCPP backend"


def test_a_higher_backend_limit_changes_nothing() -> None:
    a = allocate(_site(ev("E1", max_current=16 * A, backend_current=20 * A)),
                 BalancerState(), 0.0)
    d = a.by_id()["E1"]
    assert (d.current_ma, d.lreason) == (16 * A, Limit.EVSE_MAX)


def test_a_backend_limit_below_the_minimum_stops_charging_and_says_why() -> None:
    a = allocate(_site(ev("E1", backend_current=0), ev("E2", backend_current=5 * A,
                                                       state=EvseState.EV_PRESENT)),
                 BalancerState(), 0.0)
    for d in a.evses:
        assert (d.current_ma, d.charging_enabled, d.paused) == (0, False, False)
        assert (d.lreason, d.reason) == (Limit.BACKEND, "OCPP backend")
