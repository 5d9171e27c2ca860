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


def test_a_group_fuse_caps_its_cars_share_and_the_rest_goes_to_the_others() -> None:
    pool = watts(20000)  # 10 A each, were there no group
    cars = [PoolClaim("E1", 3, 6000, 16000, True, nodes=(5, 0)),
            PoolClaim("E2", 3, 6000, 16000, True, nodes=(0,))]
    # Group 5 lets 7 A per phase through to its cars, on L1 only 6.5 A.
    shares = share_pool(cars, pool, caps={5: (6500, 7000, 7000)})
    assert shares["E1"] == pytest.approx(watts(6500))
    assert shares["E2"] == pytest.approx(pool - watts(6500))
    # A single-phase car on L2 counts against L2 only.
    one = [PoolClaim("E1", 1, 6000, 16000, True, nodes=(5, 0), mask=2), cars[1]]
    shares = share_pool(one, pool, caps={5: (0, 7000, 7000)})
    assert shares["E1"] == pytest.approx(watts(7000, 1))
    # No room for its minimum in the group: it gets nothing, the other all it can take.
    shares = share_pool(cars, pool, caps={5: (5000, 9000, 9000)})
    assert shares == {"E1": 0.0, "E2": pytest.approx(watts(16000))}


def test_surplus_behind_a_groups_meter_goes_first_to_its_cars() -> None:
    cars = [PoolClaim("E1", 3, 6000, 16000, True, nodes=(0,)),
            PoolClaim("E2", 3, 6000, 16000, False, nodes=(7, 0))]
    pool = watts(14000)
    assert share_pool(cars, pool)["E2"] == pytest.approx(watts(7000))
    # 10 A of it is measured behind group 7's meter: E2 (waiting) is served from it first.
    shares = share_pool(cars, pool, local_w={7: watts(10000)})
    # E2 has its 10 A; the 4 A left are not E1's minimum, so they go to E2 as well.
    assert shares == {"E1": 0.0, "E2": pytest.approx(pool)}
    shares = share_pool(cars, watts(18000), local_w={7: watts(10000)})
    # 8 A left for all: E1's minimum, then 1 A more each.
    assert shares == pytest.approx({"E1": watts(7000), "E2": watts(11000)})
    # Never more than the site's pool, however much the group measures.
    shares = share_pool(cars, watts(8000), local_w={7: watts(20000)})
    assert shares == {"E1": 0.0, "E2": pytest.approx(watts(8000))}
