"""The surplus shared among the EVSEs whose rules charge from it (core/rules/sharing.py)."""

from __future__ import annotations

import pytest

from chargebrain.core.rules import PoolClaim, share_pool

V = 230.0


def watts(ma: float, phases: int = 3) -> float:
    return ma * phases * V / 1000.0


def claim(dev_id: str, *, phases: int = 3, charging: bool = False, prio: int = 1,
          max_ma: int = 16000) -> PoolClaim:
    return PoolClaim(dev_id, phases, 6000, max_ma, charging, prio)


def test_one_claim_sees_the_whole_pool() -> None:
    assert share_pool([claim("E1")], 5000.0) == {"E1": 5000.0}
    assert share_pool([claim("E1"), claim("E2")], -300.0) == {"E1": -300.0, "E2": -300.0}


def test_two_cars_never_get_more_than_the_surplus_together() -> None:
    pool = watts(20000)  # room for two cars at 10 A
    shares = share_pool([claim("E1", charging=True), claim("E2", charging=True)], pool)
    assert shares == pytest.approx({"E1": watts(10000), "E2": watts(10000)})
    assert sum(shares.values()) <= pool + 1e-6


def test_room_for_one_minimum_goes_to_the_charging_car_whole() -> None:
    pool = watts(9000)
    shares = share_pool([claim("E1"), claim("E2", charging=True)], pool)
    assert shares == {"E1": 0.0, "E2": pytest.approx(pool)}


def test_a_waiting_car_starts_only_with_its_minimum_plus_the_margin() -> None:
    charging = claim("E1", charging=True)
    # 6 A for E1 and 6.4 A left: not enough for E2 to start (6.5 A needed).
    shares = share_pool([charging, claim("E2")], watts(12400))
    assert shares["E2"] == 0.0 and shares["E1"] == pytest.approx(watts(12400))
    shares = share_pool([charging, claim("E2")], watts(12600))
    assert shares == pytest.approx({"E1": watts(6300), "E2": watts(6300)})


def test_maximums_pass_the_rest_on_and_single_phase_cars_count_their_phase() -> None:
    pool = watts(30000)
    shares = share_pool([claim("E1", charging=True, max_ma=8000),
                         claim("E2", charging=True, phases=1, max_ma=80000)], pool)
    assert shares["E1"] == pytest.approx(watts(8000))
    assert shares["E2"] == pytest.approx(pool - watts(8000))
    assert shares["E2"] / (V / 1000.0) == pytest.approx(30000 * 3 - 8000 * 3)  # mA on L1
    capped = share_pool([claim("E1", charging=True, max_ma=8000),
                         claim("E2", charging=True, phases=1, max_ma=32000)], pool)
    assert capped["E2"] == pytest.approx(watts(32000, 1))  # what is left over stays unused


def test_higher_priority_first_among_waiting_cars() -> None:
    shares = share_pool([claim("E1"), claim("E2", prio=2)], watts(7000))
    assert shares == {"E1": 0.0, "E2": pytest.approx(watts(7000))}
