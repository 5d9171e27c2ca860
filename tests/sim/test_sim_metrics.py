"""Metrics on a synthetic run whose overloads, imbalance and shares are known by hand."""

from __future__ import annotations

import dataclasses
from array import array

import numpy as np
import pytest

from chargebrain.sim.metrics import compute_metrics, jain_index, load_steps, quick_restarts
from chargebrain.sim.optimum import random_dropouts
from chargebrain.sim.output import format_metrics_table
from chargebrain.sim.policy import EqualSplitPolicy, FuseOnlyPolicy
from chargebrain.sim.profile import SiteProfile
from chargebrain.sim.runner import RunResult, SessionTrace, run_scenario
from chargebrain.sim.scenario import load_scenario, scenario_from_dict

N = 1000
V = 230.0


def synthetic() -> RunResult:
    sc = scenario_from_dict(
        {
            "name": "synthetic",
            "duration": N,
            "cycle_s": 1,
            "site": {"max_current_ma": 25000, "max_imbalance_ma": 10000},
            "groups": [{"id": "G1", "max_current_ma": 10000}],
            "evses": [{"id": "E1", "group": "G1"}, {"id": "E2"}],
            "cars": [
                {"id": "a", "evse": "E1", "arrive": 0, "leave": N, "need_kwh": 10,
                 "phases": 1, "lag_s": 2},
                {"id": "b", "evse": "E2", "arrive": 0, "leave": N, "need_kwh": 10},
            ],
            "pv": {"peak_kw": 5, "sunrise": "06:00", "sunset": "20:00"},
        }
    )
    base1 = [10000.0] * N
    for t in range(500, 600):
        base1[t] = 20000.0  # a load step at 500
    for t in range(800, N):
        base1[t] = 20000.0  # and another at 800
    grid1 = [20000.0] * N
    for t in range(100, 110):
        grid1[t] = 30000.0  # 10 s at 5 A over, no load step: misbehaviour, 50 A·s
    for t in range(500, 504):
        grid1[t] = 28000.0  # 4 s at 3 A over right after the step: reaction, 12 A·s
    for t in range(700, 760):
        grid1[t] = 26000.0  # 60 s at 1 A over: misbehaviour, 60 A·s
    for t in range(800, 830):
        grid1[t] = 27000.0  # after a step but longer than the budget: misbehaviour, 60 A·s
    drawn_a = array("d", [16000.0] * 100 + [0.0] * (N - 100))
    evse1 = [16000.0] * 100 + [0.0] * (N - 100)
    zeros = [0.0] * N
    flat = [20000.0] * N
    profile = SiteProfile(N, (zeros, zeros, zeros), [2300.0] * N, zeros,
                          (base1, [10000.0] * N, [10000.0] * N))
    sessions = (
        SessionTrace("a", "E1", 0, N, 1, 0b001, 10.0, 16 * 100 * V / 3.6e6, 0.3, 0.3,
                     drawn_a, ((0, 16000),)),
        SessionTrace("b", "E2", 0, N, 3, 0b111, 10.0, 0.0, 0.3, 0.3, array("d", zeros),
                     ((0, 0),)),
    )
    return RunResult(
        scenario=sc,
        policy_name="synthetic",
        duration_s=N,
        grid_ma=(array("d", grid1), array("d", flat), array("d", flat)),
        evse_ma=(array("d", evse1), array("d", zeros), array("d", zeros)),
        profile=profile,
        sessions=sessions,
        cycles=N,
        refused_offers=2,
        capped_offers=0,
        wall_s=0.0,
        policy_wall_s=0.0,
    )


def test_overload_split_into_reaction_and_misbehaviour() -> None:
    m = compute_metrics(synthetic(), reaction_budget_s=10)
    site = {o.phase: o for o in m.overload if o.limit == "site"}
    l1 = site[1]
    assert l1.excursions == 4
    assert l1.amp_seconds == pytest.approx(50 + 12 + 60 + 60)
    assert l1.max_excursion_a == pytest.approx(5)
    assert l1.longest_s == 60
    assert l1.reaction_excursions == 1
    assert l1.reaction_amp_seconds == pytest.approx(12)
    assert l1.misbehaviour_excursions == 3
    assert l1.misbehaviour_amp_seconds == pytest.approx(170)
    assert l1.misbehaviour_max_a == pytest.approx(5)
    assert site[2].amp_seconds == 0 and site[3].excursions == 0
    assert m.load_steps == 2
    # with a budget long enough, the 30 s excursion after the second step is reaction too
    m2 = compute_metrics(synthetic(), reaction_budget_s=40)
    l1b = next(o for o in m2.overload if o.limit == "site" and o.phase == 1)
    assert l1b.reaction_amp_seconds == pytest.approx(12 + 60)


def test_seconds_the_household_alone_exceeds_the_fuse_are_not_charged() -> None:
    """From 100 to 110 the household itself draws 27 A against the 25 A fuse: the run is
    flagged and those seconds are no policy's overload; the rest is as before."""
    run = synthetic()
    base1 = list(run.profile.base_ma[0])
    for t in range(100, 110):
        base1[t] = 27000.0
    profile = dataclasses.replace(run.profile, base_ma=(base1, *run.profile.base_ma[1:]))
    m = compute_metrics(dataclasses.replace(run, profile=profile), reaction_budget_s=10)
    l1 = next(o for o in m.overload if o.limit == "site" and o.phase == 1)
    assert m.house_over_fuse_s == 10
    assert l1.misbehaviour_amp_seconds == pytest.approx(170 - 50)
    assert "household alone exceeds the fuse for 10 s" in format_metrics_table(m)
    assert compute_metrics(run, reaction_budget_s=10).house_over_fuse_s == 0


def test_group_imbalance_energy_fairness_pv() -> None:
    m = compute_metrics(synthetic(), reaction_budget_s=10)
    g = {o.phase: o for o in m.overload if o.limit == "group G1"}
    assert g[1].amp_seconds == pytest.approx(6 * 100)  # 16 A on a 10 A group for 100 s
    assert g[1].misbehaviour_excursions == 1
    assert g[2].amp_seconds == 0
    # EVSE load 16/0/0 A for 100 s against a 10 A imbalance limit, from the start: the
    # policy's doing
    assert m.imbalance_amp_seconds == pytest.approx(6 * 100)
    assert m.imbalance_max_a == pytest.approx(6)
    assert m.imbalance_misbehaviour_amp_seconds == pytest.approx(6 * 100)
    assert m.imbalance_misbehaviour_excursions == 1
    assert m.imbalance_reaction_amp_seconds == 0
    a, b = m.cars
    assert a.delivered_kwh == pytest.approx(16 * 100 * V / 3.6e6)
    assert a.deliverable_kwh == pytest.approx(16 * N * V / 3.6e6)
    assert a.share == pytest.approx(0.1)
    assert (a.starts, a.stops, a.first_current_s) == (1, 1, 0)
    assert b.share == 0 and b.starts == 0 and b.first_current_s is None
    assert m.fairness == pytest.approx(0.5)  # (0.1 + 0)² / (2 · 0.1²)
    assert m.pv_kwh == pytest.approx(2300 * N / 3.6e6)
    assert m.pv_self_consumption == pytest.approx(1.0)
    assert m.grid_export_kwh == 0
    assert m.grid_import_kwh == pytest.approx(
        (sum(synthetic().grid_ma[0]) + 2 * 20000 * N) * V / 1000 / 3.6e6
    )
    assert m.refused_offers == 2


def test_jain_and_load_steps() -> None:
    assert jain_index([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert jain_index([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert jain_index([]) is None
    base = np.array([0.0] * 10 + [3000.0] * 10 + [3500.0] * 10)
    steps = load_steps(base, 2000, 5)
    assert list(np.flatnonzero(steps)) == [10, 11, 12, 13, 14]
    slow = np.linspace(0, 10_000, 1000)  # 10 mA per second: never a step within 30 s
    assert not load_steps(slow, 2000, 30).any()


def test_metrics_of_real_runs() -> None:
    sc = load_scenario("apartment-garage")
    fuse = compute_metrics(run_scenario(sc, FuseOnlyPolicy(), shorten=7200))
    equal = compute_metrics(run_scenario(sc, EqualSplitPolicy(), shorten=7200))
    assert fuse.overload_amp_seconds > 1000
    assert fuse.misbehaviour_amp_seconds > equal.misbehaviour_amp_seconds
    assert fuse.delivered_kwh > equal.delivered_kwh > 0
    assert equal.fairness is not None and 0 < equal.fairness <= 1
    assert fuse.pv_self_consumption is None


def _imbalance_dict() -> dict[str, object]:
    return {
        "name": "imbalance",
        "duration": N,
        "cycle_s": 1,
        "site": {"max_current_ma": 63000, "max_imbalance_ma": 10000},
        "evses": [{"id": "E1"}, {"id": "E2"}],
        "cars": [
            {"id": "a", "evse": "E1", "arrive": 0, "leave": N, "need_kwh": 50, "phases": 1},
            {"id": "b", "evse": "E2", "arrive": 0, "leave": N, "need_kwh": 50},
        ],
    }


def imbalance_run(b_offers: tuple[tuple[int, int], ...], b_drawn: list[float],
                  a_lowered_at: int | None) -> RunResult:
    """Car a draws 16 A on L1 (6 A from `a_lowered_at` on); car b, plugged in at 0 on
    building L2 and L3 (a two-phase car), draws `b_drawn` and leaves at its end. The
    EVSE spread is a's current − b's."""
    sc = scenario_from_dict(_imbalance_dict())
    zeros = [0.0] * N
    cut = N if a_lowered_at is None else a_lowered_at
    l1 = [16000.0] * cut + [6000.0] * (N - cut)
    b = b_drawn + [0.0] * (N - len(b_drawn))
    sessions = (
        SessionTrace("a", "E1", 0, N, 1, 0b001, 50.0, 1.0, 0.3, 0.3, array("d", l1),
                     ((0, 16000),)),
        SessionTrace("b", "E2", 0, len(b_drawn), 2, 0b110, 50.0, 1.0, 0.3, 0.3,
                     array("d", b_drawn), b_offers),
    )
    evse = (array("d", l1), array("d", b), array("d", b))
    return RunResult(
        scenario=sc, policy_name="synthetic", duration_s=N, grid_ma=evse, evse_ma=evse,
        profile=SiteProfile(N, (zeros, zeros, zeros), zeros, zeros, (zeros, zeros, zeros)),
        sessions=sessions, cycles=N, refused_offers=0, capped_offers=0, wall_s=0.0,
        policy_wall_s=0.0,
    )


def test_imbalance_a_car_leaves_behind_is_reaction_the_policys_own_is_not() -> None:
    # b balances a's 16 A until 500, then draws nothing: 6 A above the limit until the
    # policy lowers a to 6 A at 505.
    done = [16000.0] * 500 + [0.0] * (N - 500)
    for b_drawn in (done, done[:500]):  # b done charging (its offer stays), b unplugged
        m = compute_metrics(imbalance_run(((0, 16000),), b_drawn, 505), reaction_budget_s=10)
        assert m.imbalance_amp_seconds == pytest.approx(6 * 5)
        assert m.imbalance_reaction_amp_seconds == pytest.approx(6 * 5)
        assert (m.imbalance_misbehaviour_amp_seconds, m.imbalance_misbehaviour_excursions) \
            == (0, 0)
    # the same drop because the policy cut b's offer to 0 is the policy's doing
    m = compute_metrics(imbalance_run(((0, 16000), (500, 0)), done, 505),
                        reaction_budget_s=10)
    assert m.imbalance_misbehaviour_amp_seconds == pytest.approx(6 * 5)
    assert m.imbalance_reaction_amp_seconds == 0
    # a spread a few 1e-12 mA above the limit (float sums meeting it exactly) is at it
    run = imbalance_run(((0, 16000),), [6000.0 - 3.6e-12] * N, None)
    m = compute_metrics(run, reaction_budget_s=10)
    assert (m.imbalance_amp_seconds, m.imbalance_misbehaviour_excursions) == (0, 0)
    # and a spread that outlasts the budget is misbehaviour however it began
    m = compute_metrics(imbalance_run(((0, 16000),), done, None), reaction_budget_s=10)
    assert m.imbalance_misbehaviour_amp_seconds == pytest.approx(6 * 500)
    assert m.imbalance_reaction_amp_seconds == 0


def test_quick_restarts_count_pauses_of_charging_cars_shorter_than_the_pause_time() -> None:
    charging = [16000.0] * N
    # b charges, is paused at 200 and offered current again at 260: a quick restart
    run = imbalance_run(((0, 16000), (200, 0), (260, 16000)), charging, None)
    assert quick_restarts(run) == 1
    assert compute_metrics(run, reaction_budget_s=10).quick_restarts == 1
    # offered again only after the pause time: none
    assert quick_restarts(imbalance_run(((0, 16000), (200, 0), (500, 16000)), charging,
                                        None)) == 0
    # b drew nothing when its offer fell (an idle car given its minimum again): none
    idle = [0.0] * N
    assert quick_restarts(imbalance_run(((0, 16000), (200, 0), (260, 16000)), idle,
                                        None)) == 0
    # a pause during missing data may end as soon as the readings are back
    run = imbalance_run(((0, 16000), (200, 0), (260, 16000)), charging, None)
    stale = scenario_from_dict({
        **_imbalance_dict(),
        "faults": [{"type": "meter_stale", "meter": "grid", "from": 190, "to": 250}],
    })
    assert quick_restarts(dataclasses.replace(run, scenario=stale)) == 0
    # ... and so may one during a random dropout of the grid meter
    noisy = scenario_from_dict({
        **_imbalance_dict(), "meters": {"grid": {"dropouts_per_hour": 30}}})
    start = next(a for a, _ in random_dropouts(noisy.meters.grid, noisy.seed, "meter:grid", N)
                 if 10 <= a < N - 100)
    run = imbalance_run(((0, 16000), (start, 0), (start + 60, 16000)), charging, None)
    assert quick_restarts(run) == 1
    assert quick_restarts(dataclasses.replace(run, scenario=noisy)) == 0
    # a pause in which the EVSE switched between one and three phases is the switch's
    run = imbalance_run(((0, 16000), (200, 0), (330, 16000)), charging, None)
    switched = tuple(dataclasses.replace(s, phase_changes=((205, 1),)) if s.car_id == "b"
                     else s for s in run.sessions)
    assert quick_restarts(run) == 1
    assert quick_restarts(dataclasses.replace(run, sessions=switched)) == 0
