"""The balancer's part in a cascade: another charging manager as one EVSE of a master
(never lent from, counted at its wiring limit when lost), and the supply line's name when
a master's limit binds on a slave."""

from __future__ import annotations

import dataclasses

from chargebrain.core.balancer import (
    BalancerState,
    Limit,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.phases import Phases
from tests.core.balancer_helpers import A, currents, ev


def _cycles(s: SiteInput, draws: dict[str, int], cycles: int) -> dict[str, int]:
    """Cycles 3 s apart in which each EVSE draws min(its offer, draws[id]); the last
    currents set."""
    state = BalancerState()
    now = 0.0
    a = allocate(s, state, now)
    for _ in range(cycles):
        by = a.by_id()
        evses = tuple(dataclasses.replace(e, measured=Phases.uniform(
            min(by[e.id].current_ma, draws[e.id]))) for e in s.evses)
        s = dataclasses.replace(s, evses=evses)
        now += 3.0
        a = allocate(s, a.state, now)
    return currents(a)


def test_another_charging_manager_is_never_lent_from() -> None:
    # Both draw 10 A of 24 A offered for many cycles: the car is capped at its draw plus
    # 2 A, the slave keeps its offer (it lends what its cars leave itself).
    cfg = SiteConfig(max_total_current=48 * A, max_imbalance_cur=0)
    s = SiteInput(cfg, evses=(ev("CAR", max_current=32 * A, used_phases=7),
                              ev("SLAVE", max_current=32 * A, used_phases=7,
                                 own_lending=True)))
    got = _cycles(s, {"CAR": 10 * A, "SLAVE": 10 * A}, 8)
    assert got["CAR"] == 12 * A
    assert got["SLAVE"] == 32 * A


def test_a_lost_slave_counts_its_offline_current_from_the_first_failed_read() -> None:
    cfg = SiteConfig(max_total_current=50 * A, max_imbalance_cur=0)
    slave = ev("SLAVE", max_current=20 * A, used_phases=7)
    s = SiteInput(cfg, evses=(ev("CAR", max_current=32 * A, used_phases=7), slave))
    a = allocate(s, BalancerState(), 0.0)
    assert currents(a) == {"CAR": 30 * A, "SLAVE": 20 * A}
    # Unreachable at 5 A of draw: counted at its wiring limit (40 A), not its last 20 A.
    lost = dataclasses.replace(slave, offline_since=3.0, offline_current=40 * A,
                               measured=Phases.uniform(5 * A))
    b = allocate(dataclasses.replace(s, evses=(s.evses[0], lost)), a.state, 3.0)
    by = b.by_id()
    assert (by["SLAVE"].current_ma, by["SLAVE"].reason) == (40 * A, "offline")
    assert by["CAR"].current_ma == 10 * A
    assert b.allocated == Phases.uniform(50 * A)


def test_the_supply_line_carries_the_name_it_is_given() -> None:
    cfg = SiteConfig(max_total_current=50 * A, max_total_evse_current=12 * A,
                     supply_label="limited by master")
    a = allocate(SiteInput(cfg, evses=(ev("E2", used_phases=7),)), BalancerState(), 0.0)
    d = a.evses[0]
    assert (d.current_ma, d.lreason, d.reason) == (
        12 * A, Limit.SUPPLY, "limited by master phase L1")
