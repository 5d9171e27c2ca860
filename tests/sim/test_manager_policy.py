"""The real charging manager as a simulator policy, the core policies, the comparison and
`chargebrain simulate`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from chargebrain.cli import main as cli_main
from chargebrain.core.model import EvseReading, EvseState, MeterReading
from chargebrain.core.phases import Phases
from chargebrain.devices.ajax import AjaxEvse, AjaxMeter
from chargebrain.manager import config as C
from chargebrain.sim.compare import (
    GoalCheck,
    at_floor,
    check_goals,
    compare,
    format_comparison,
    run_policy,
)
from chargebrain.sim.core_policy import (
    CorePolicy,
    core_balancer,
    equal_split_baseline,
    fcfs_baseline,
    number_evses,
    number_groups,
)
from chargebrain.sim.manager_policy import EPOCH_DAY, GRID_METER, PV_METER, ManagerPolicy
from chargebrain.sim.metrics import compute_metrics
from chargebrain.sim.policy import GRID, PV, Decision, Snapshot
from chargebrain.sim.runner import run_scenario
from chargebrain.sim.scenario import (
    Scenario,
    ScenarioError,
    Site,
    load_scenario,
    scenario_from_dict,
)

pytestmark = pytest.mark.usefixtures("quiet_manager")


def small_site(**extra: object) -> Scenario:
    doc: dict[str, object] = {
        "name": "small",
        "duration": "1h",
        "cycle_s": 3,
        "site": {"max_current_ma": 32000, "reserve_ma": 2000},
        "groups": [{"id": "garage", "max_current_ma": 25000},
                   {"id": "E7", "max_current_ma": 20000, "parent": "garage", "prio": 2}],
        "evses": [{"id": "A", "group": "garage"}, {"id": "E1", "group": "E7", "prio": 3},
                  {"id": "C", "used_phases": 1, "phase_rotation": 120}],
        "cars": [],
        **extra,
    }
    return scenario_from_dict(doc)


def snap(site: Site, t: int, evses: Mapping[str, EvseReading | None],
         grid: MeterReading | None = None, pv: bool = False,
         pv_reading: MeterReading | None = None) -> Snapshot:
    meters: dict[str, MeterReading | None] = {GRID: grid}
    if pv:
        meters[PV] = pv_reading
    readings = {e.id: evses.get(e.id, EvseReading(EvseState.WAITING, has_meter=True))
                for e in site.evses}
    return Snapshot(t, t % 86400, t, meters, readings, site)


def plugged(ma: int = 0, signalled: int = 16000) -> EvseReading:
    state = EvseState.CHARGING if ma else EvseState.EV_PRESENT
    return EvseReading(state, Phases(ma, ma, ma), ma * 3 * 0.23, 0.0, True,
                       max_current_ma=signalled)


# --- numbering ---------------------------------------------------------------------------


def test_groups_and_evses_get_device_numbers_that_do_not_collide() -> None:
    site = small_site().site
    groups = number_groups(site)
    assert groups == {"garage": 1, "E7": 7}
    evses = number_evses(site, groups)
    # E1 is taken by the group "garage", so that EVSE gets a free number too
    assert evses == {"A": 2, "E1": 3, "C": 4}
    assert len(set(evses.values()) | set(groups.values())) == 5


# --- the manager policy ------------------------------------------------------------------


def test_the_manager_is_configured_like_an_installer_would() -> None:
    sc = small_site()
    with ManagerPolicy.for_scenario(sc) as policy:
        policy.decide(snap(sc.site, 0, {}, MeterReading(currents=Phases(1000, 1000, 1000)),
                           pv=True))
        mgr = policy.manager
        assert mgr.site.max_total_current == 32000
        assert mgr.site.reserve_current == 2000
        assert mgr.site.cycle_ms == 3000
        garage, e7 = mgr.devices["E1"].config, mgr.devices["E7"].config
        assert (garage.dev_type, garage.group, garage.max_charging_cur) == (
            "evse_group", 0, 25000)
        assert (e7.dev_type, e7.group, e7.prio, e7.max_charging_cur) == (
            "evse_group", 1, 2, 20000)
        a, c = mgr.devices[policy.device_id("A")], mgr.devices[policy.device_id("C")]
        assert a.config.dev_type == "evse_ajax" and a.config.group == 1
        assert isinstance(a.driver, AjaxEvse)
        assert a.config.used_phases == 0  # "determine", as a new EVSE is configured
        assert (c.config.used_phases, c.config.phase_rotation) == (0b001, 120)
        assert mgr.devices[policy.device_id("E1")].config.group == 7
        grid, pv = mgr.devices[GRID_METER], mgr.devices[PV_METER]
        assert isinstance(grid.driver, AjaxMeter) and grid.config.role == C.ROLE_GRID
        assert isinstance(pv.driver, AjaxMeter) and pv.config.role == C.ROLE_PRODUCTION


def test_readings_go_through_the_http_input_drivers_and_decisions_come_back() -> None:
    sc = small_site()
    with ManagerPolicy.for_scenario(sc, rules=False) as policy:
        grid = MeterReading(power_w=2000, currents=Phases(3000, 3000, 3000))
        d = policy.decide(snap(sc.site, 0, {"A": plugged()}, grid))
        mgr = policy.manager
        rt = mgr.devices[policy.device_id("A")]
        assert isinstance(rt.driver, AjaxEvse)
        assert rt.driver.pushed_at == policy.clock.monotonic()
        # The current being signalled is not an HTTP-input field: nothing caps the EVSE.
        assert rt.evse is not None and rt.evse.reading is not None
        assert rt.evse.reading.max_current_ma is None
        decision = rt.evse.decision
        assert decision is not None and decision.charging_enabled
        assert d.currents == {"A": decision.current_ma}
        assert isinstance(rt.driver, AjaxEvse)
        assert rt.driver.command.current_ma == decision.current_ma  # what it was told
        assert mgr.cycle_count == 1
        # the group of 25 A bounds A (the site has 32 − 2 − 3 A left)
        assert decision.current_ma == 16000


def test_the_virtual_clock_follows_the_snapshots() -> None:
    sc = small_site(start="07:30")
    with ManagerPolicy.for_scenario(sc) as policy:
        site = sc.site
        policy.decide(Snapshot(0, 27000, 0, {GRID: None}, {e.id: None for e in site.evses},
                               site))
        assert policy.clock.now() == EPOCH_DAY + 27000
        policy.decide(Snapshot(9, 27009, 1, {GRID: None}, {e.id: None for e in site.evses},
                               site))
        assert policy.clock.now() == EPOCH_DAY + 27009
        assert policy.manager.cycle_count == 2


def test_a_silent_evse_goes_stale_after_30_s_like_a_real_one() -> None:
    sc = small_site()
    grid = MeterReading(currents=Phases(1000, 1000, 1000))
    with ManagerPolicy.for_scenario(sc, rules=False) as policy:
        policy.decide(snap(sc.site, 0, {"A": plugged(10000)}, grid))
        rt = policy.manager.devices[policy.device_id("A")]
        for t in (3, 15, 30):  # not pushed, but still within the staleness period
            policy.decide(snap(sc.site, t, {"A": None}, grid))
            assert not rt.status.com_err
        policy.decide(snap(sc.site, 33, {"A": None}, grid))
        assert rt.status.com_err
        assert rt.evse is not None and rt.evse.decision is not None
        assert rt.evse.decision.lreason.name == "OFFLINE"


def test_a_silent_grid_meter_stops_the_charging_once_stale() -> None:
    sc = small_site()
    grid = MeterReading(currents=Phases(1000, 1000, 1000))
    with ManagerPolicy.for_scenario(sc, rules=False) as policy:
        assert policy.decide(snap(sc.site, 0, {"A": plugged(10000)}, grid)).currents
        assert policy.decide(snap(sc.site, 30, {"A": plugged(10000)}, None)).currents
        # stale: the unknown load is assumed to take the whole connection
        assert policy.decide(snap(sc.site, 33, {"A": plugged(10000)}, None)).currents == {}


def test_close_is_idempotent_and_a_closed_policy_refuses_to_decide() -> None:
    sc = small_site()
    policy = ManagerPolicy.for_scenario(sc)
    policy.decide(snap(sc.site, 0, {}))
    policy.close()
    policy.close()
    assert policy.loop.is_closed()
    with pytest.raises(RuntimeError):
        policy.decide(snap(sc.site, 3, {}))


def test_the_site_of_a_run_cannot_change() -> None:
    sc, other = small_site(), small_site(name="other")
    with ManagerPolicy.for_scenario(sc) as policy:
        policy.decide(snap(sc.site, 0, {}))
        with pytest.raises(ValueError):
            policy.decide(snap(other.site, 3, {}))


def test_while_every_device_answers_the_shell_decides_exactly_like_the_core() -> None:
    """The manager turns its HTTP-input readings into the balancer's inputs without
    changing them: the same run gives the same currents, second by second (with the
    manager's peak hold of falling household load and its dead band for falls within the
    load's jitter switched off, which the bare core does not have)."""
    sc = load_scenario("apartment-garage")
    with ManagerPolicy.for_scenario(sc) as policy:
        policy.manager.decider.hold.hold_s = 0.0
        policy.manager.decider.hold.fall_band = 0.0
        ours = run_scenario(sc, policy, shorten=5400)
    core = run_scenario(sc, core_balancer(), shorten=5400)
    assert ours.cycles == core.cycles == 1800
    # The devices report every 3 s and the manager's cycle is 3 s: one cycle per report.
    assert (policy.periodic_cycles, policy.woken_cycles) == (1800, 0)
    for a, b in zip(ours.sessions, core.sessions, strict=True):
        assert a.car_id == b.car_id
        assert a.offers == b.offers
        assert a.delivered_kwh == b.delivered_kwh


# --- the core policies -------------------------------------------------------------------


def test_equal_split_stops_everyone_when_a_share_is_below_the_minimum() -> None:
    sc = small_site()
    grid = MeterReading(currents=Phases(0, 0, 0))
    both = {"A": plugged(), "E1": plugged()}
    # garage 25 A for two cars: 12.5 A each
    assert equal_split_baseline().decide(snap(sc.site, 0, both, grid)).currents == {
        "A": 12500, "E1": 12500}
    # 23 A of household load leaves 7 A: not 6 A for each, so nobody charges
    busy = MeterReading(currents=Phases(23000, 23000, 23000))
    assert equal_split_baseline().decide(snap(sc.site, 0, both, busy)).currents == {}


def test_fcfs_serves_by_priority_then_by_arrival_without_rotation() -> None:
    sc = small_site()
    policy = fcfs_baseline()
    def grid(evse_a: int) -> MeterReading:  # 14 A of household: 16 A left for the cars
        return MeterReading(currents=Phases.uniform(14000 + evse_a))

    d = policy.decide(snap(sc.site, 0, {"A": plugged()}, grid(0)))
    assert d.currents == {"A": 16000}
    # E1 has the higher priority: it takes all it may, A gets what is left (nothing)
    d = policy.decide(snap(sc.site, 3, {"A": plugged(16000), "E1": plugged()}, grid(16000)))
    assert d.currents == {"E1": 16000}
    for t in range(6, 3600, 300):  # no rotation, however long A waits
        d = policy.decide(snap(sc.site, t, {"A": plugged(), "E1": plugged(16000)},
                               grid(16000)))
        assert d.currents == {"E1": 16000}


def test_the_core_policy_marks_a_silent_evse_offline_at_once() -> None:
    sc = small_site()
    policy = CorePolicy()
    grid = MeterReading(currents=Phases(0, 0, 0))
    policy.decide(snap(sc.site, 0, {"A": plugged()}, grid))
    d = policy.decide(snap(sc.site, 3, {"A": None}, grid))
    assert "A" not in d.currents
    assert policy.state.evses["E2"].last_set > 0  # its last current is held as load


# --- comparison and goals ----------------------------------------------------------------


def test_comparison_of_a_short_home_run() -> None:
    sc = load_scenario("home")
    c = compare(sc, shorten=14 * 3600)
    assert [r.name for r in c.runs] == ["manager", "equal-split", "fcfs", "fuse-only"]
    assert c.optimum is not None and c.optimum.total_kwh > 0
    ours = c.get("manager").metrics
    assert ours.policy == "manager"
    assert ours.misbehaviour_excursions == 0
    assert c.compliant is not None and c.compliant.total_kwh <= c.optimum.total_kwh + 1e-6
    text = format_comparison(c)
    assert "PASS  no overload beyond the reaction budget" in text
    assert "(not a goal here)" in text  # the fairness goal is the garage's
    assert "compliant ≤" in text
    ratio = ours.delivered_kwh / c.compliant.total_kwh
    assert [g.passed for g in c.goals] == [True, ratio >= 0.95 - 5e-4, None, None]


def test_goals_are_judged_on_the_measured_numbers() -> None:
    sc = load_scenario("apartment-garage")
    ours = run_policy("manager", sc, shorten=3600).metrics
    equal = run_policy("equal-split", sc, shorten=3600).metrics
    goals = check_goals("apartment-garage", ours, equal, None)
    assert goals[0].passed is (ours.misbehaviour_excursions == 0)
    assert goals[1] == GoalCheck("≥ 95% of the optimum's energy", "no optimum", None)
    assert goals[2].passed is (ours.fairness is not None and ours.fairness >= 0.95)
    fewer = ours.starts + ours.stops < equal.starts + equal.stops
    assert goals[3].passed is (None if at_floor(ours) and at_floor(equal) else fewer)


def test_unknown_policy_names_are_refused() -> None:
    with pytest.raises(ValueError):
        run_policy("nope", load_scenario("home"), shorten=60)


# --- chargebrain simulate ----------------------------------------------------------------


def test_simulate_prints_the_table_and_writes_csv_and_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert cli_main(["simulate", "faults", "--hours", "0.25", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scenario faults · policy manager" in text
    assert "µs per cycle" in text
    assert (out / "faults-manager.csv").stat().st_size > 0
    assert (out / "faults-manager.png").read_bytes()[:4] == b"\x89PNG"


def test_simulate_keeps_pymodbus_quiet_when_a_power_brain_goes_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # In the faults scenario E3, another Power Brain over Modbus TCP, closes its port
    # from 17:20 (20 minutes in); the manager's failed reads are its own business.
    logging.getLogger("pymodbus").setLevel(logging.NOTSET)
    caplog.set_level(logging.DEBUG)
    assert cli_main(["simulate", "faults", "--hours", "0.4", "--out", str(tmp_path)]) == 0
    assert not [r for r in caplog.records if r.name.startswith("pymodbus")]


def test_simulate_all_prints_the_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["simulate", "home", "--hours", "0.1", "--out", str(tmp_path),
                     "--policy", "all"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    # What runs, and how long each part took, on stderr while it runs.
    progress = captured.err.splitlines()
    assert progress[0] == "simulate: offline optimum …"
    assert progress[1].startswith("simulate: offline optimum: ")
    assert "simulate: manager …" in progress and "simulate: fuse-only …" in progress
    assert progress[-1].startswith("simulate: fuse-only: ") and progress[-1].endswith(" s")
    for name in ("manager", "core", "equal-split", "fcfs", "fuse-only"):
        assert (tmp_path / f"home-{name}.csv").exists()
        assert f"\n{name}" in text
    assert "fewer starts and stops than equal split" in text


def test_simulate_reports_a_bad_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["simulate", str(tmp_path / "missing.json"), "--out",
                     str(tmp_path)]) == 2
    assert "chargebrain simulate:" in capsys.readouterr().err
    assert cli_main(["simulate", "home", "--hours", "0", "--out", str(tmp_path)]) == 2


def test_decision_objects_are_reused_while_nothing_changes() -> None:
    sc = small_site()
    grid = MeterReading(currents=Phases(1000, 1000, 1000))
    with ManagerPolicy.for_scenario(sc, rules=False) as policy:
        first = policy.decide(snap(sc.site, 0, {"A": plugged(10000)}, grid))
        second = policy.decide(snap(sc.site, 3, {"A": plugged(10000)}, grid))
        assert isinstance(first, Decision) and first.currents
        assert second is first


# --- the manager's own cycle ---------------------------------------------------------------


def test_the_manager_runs_on_its_own_cycle_and_when_a_push_matters() -> None:
    """Devices report every second; the manager's cycle is 3 s. A car plugged in between
    two periodic cycles is decided on at once; otherwise the orders stay."""
    sc = small_site(cycle_s=1)
    grid = MeterReading(currents=Phases(1000, 1000, 1000))
    with ManagerPolicy.for_scenario(sc, rules=False, cycle_s=3) as policy:
        first = policy.decide(snap(sc.site, 0, {}, grid))
        assert policy.manager.site.cycle_ms == 3000
        assert (policy.periodic_cycles, policy.woken_cycles) == (1, 0)
        assert policy.decide(snap(sc.site, 1, {}, grid)) is first
        assert policy.cycles == 1  # nothing due, nothing relevant: no cycle
        d = policy.decide(snap(sc.site, 2, {"A": plugged()}, grid))
        assert (policy.periodic_cycles, policy.woken_cycles) == (1, 1)
        assert d.currents["A"] > 0  # the plug-in was decided on at once
        policy.decide(snap(sc.site, 3, {"A": plugged()}, grid))
        assert (policy.periodic_cycles, policy.woken_cycles) == (2, 1)
        for t in (4, 5):  # the car draws nothing yet; the house as before
            policy.decide(snap(sc.site, t, {"A": plugged()}, grid))
        assert policy.cycles == 3
        assert policy.pushes == 6 * 4  # every report is pushed: a grid meter, three EVSEs


def test_a_run_counts_the_manager_cycles() -> None:
    sc = load_scenario("office")
    with ManagerPolicy.for_scenario(sc) as policy:
        run = run_scenario(sc, policy, shorten=600)
    assert run.cycles == 600  # the devices report every second
    assert policy.periodic_cycles == 200  # the manager's cycle is the vendor's 3 s
    assert policy.manager.cycle_count == policy.cycles


def test_the_pushed_reading_drops_only_the_signalled_current() -> None:
    r = EvseReading(EvseState.CHARGING, Phases(1, 2, 3), 4.0, 5.0, True, 6000, "card", "m",
                    False)
    policy = ManagerPolicy()
    try:
        assert policy._as_pushed(r) == replace(r, max_current_ma=None)
        plain = replace(r, max_current_ma=None)
        assert policy._as_pushed(plain) is plain
        # A departure plan is pushed as wall-clock time, as a wallbox reports it.
        planned = replace(plain, departure=3600.0, req_energy_wh=9000.0)
        assert policy._as_pushed(planned) == replace(
            planned, departure=EPOCH_DAY + 3600.0)
    finally:
        policy.close()


def test_the_manager_cycle_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ManagerPolicy(cycle_s=0)


def test_simulate_takes_the_manager_cycle_and_reports_its_cycles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # faults: devices report every 3 s; a 1 s manager cycle runs at every report
    assert cli_main(["simulate", "faults", "--hours", "0.05", "--out", str(tmp_path),
                     "--manager-cycle", "1"]) == 0
    text = capsys.readouterr().out
    assert "manager cycles 60, periodic 60, woken by a push 0, pushes" in text
    assert cli_main(["simulate", "faults", "--hours", "0.05", "--out", str(tmp_path),
                     "--manager-cycle", "0"]) == 2


# --- waking sleeping cars ------------------------------------------------------------------


def sleepy_site() -> Scenario:
    """A car that falls asleep while a sauna takes the whole connection and wakes only
    when the control pilot is interrupted."""
    return scenario_from_dict({
        "name": "sleepy", "duration": "1h", "cycle_s": 3,
        "site": {"max_current_ma": 16000},
        "evses": [{"id": "A"}],
        "cars": [{"id": "car", "evse": "A", "arrive": 0, "leave": "1h", "need_kwh": 20,
                  "sleep_after_s": "2m", "wake_after_s": None}],
        # Real meters jitter (a grid meter repeating itself exactly is taken as frozen).
        "meters": {"grid": {"noise_pct": 0.5}, "evse": {"noise_pct": 1}},
        "household": {"base_w": [["00:00", 0]], "noise_pct": 0, "appliances": [
            {"name": "sauna", "power_w": 11000, "duration": "20m", "at": ["00:00"]}]},
    })


def test_a_car_asleep_after_a_long_pause_is_woken_by_the_manager() -> None:
    sc = sleepy_site()
    with ManagerPolicy.for_scenario(sc, wakeup=False) as policy:
        left_asleep = run_scenario(sc, policy)
    with ManagerPolicy.for_scenario(sc) as policy:
        woken = run_scenario(sc, policy)
        assert policy.stats()["cars woken"] == 1
    assert left_asleep.sessions[0].delivered_kwh == 0
    # Woken a minute after the sauna ends, it charges for most of the remaining 40 minutes.
    assert woken.sessions[0].delivered_kwh > 5


def test_simulate_takes_another_seed(tmp_path: Path) -> None:
    """--seed replaces the scenario's: another draw of household load and meter noise."""
    runs = {}
    for seed in (None, "11"):
        out = tmp_path / (seed or "own")
        extra = ["--seed", seed] if seed else []
        assert cli_main(["simulate", "home", "--hours", "0.5", "--policy", "fuse-only",
                         "--out", str(out), *extra]) == 0
        runs[seed] = (out / "home-fuse-only.csv").read_text()
    assert runs[None] != runs["11"]
    assert cli_main(["simulate", "home", "--hours", "0.5", "--out", str(tmp_path),
                     "--seed", "-1"]) == 2


# --- the controller's own EVSE -----------------------------------------------------------


def on_the_controller(sc: Scenario, evse_id: str) -> Scenario:
    evses = tuple(replace(e, interface="powerbrain") if e.id == evse_id else e
                  for e in sc.site.evses)
    return replace(sc, site=replace(sc.site, evses=evses))


def test_the_controllers_own_evse_is_e1_and_read_through_its_registers() -> None:
    sc = on_the_controller(small_site(), "C")
    groups = number_groups(sc.site)
    assert number_evses(sc.site, groups)["C"] == 1 and 1 not in groups.values()
    with pytest.raises(ValueError, match="E1"):
        number_evses(sc.site, {"G": 1})
    car = {"id": "car", "evse": "C", "arrive": 0, "leave": "1h", "need_kwh": 5}
    jitter = {"grid": {"noise_pct": 0.5}, "evse": {"noise_pct": 1}}  # not frozen meters
    sc = on_the_controller(small_site(groups=[], cars=[car], meters=jitter,
                                      evses=[{"id": "A"}, {"id": "C", "used_phases": 1}]),
                           "C")
    with ManagerPolicy.for_scenario(sc) as policy:
        run = run_scenario(sc, policy, shorten=600)
        rt = policy.manager.devices[policy.device_id("C")]
        assert policy.device_id("C") == "E1" and rt.config.dev_type == "evse_powerbrain"
        evse = policy.powerbrain.banks["evse"]
        # The manager wrote its limit to the controller, whose pilot offers it to the car
        # that the plant put behind the hardware interface; the controller counted energy.
        assert evse.get("charging_enable") == 1 and evse.get("charging_cur_limit") >= 60
        assert policy.plant_evse.pilot.offered_ma == policy.powerbrain.offered_ma() > 0
        assert evse.get("charge_pilot_state") == 2  # C
    drawn = run.sessions[0].delivered_kwh
    assert drawn > 0.5
    assert evse.get("energy") == pytest.approx(drawn * 1000, abs=20)


def test_the_controller_interrupts_the_pilot_to_wake_a_sleeping_car() -> None:
    """The sleepy car of the test above, behind the controller: the manager writes 5 to
    register 8086, the firmware switches the pilot off and the car wakes."""
    sc = on_the_controller(sleepy_site(), "A")
    with ManagerPolicy.for_scenario(sc) as policy:
        woken = run_scenario(sc, policy)
        assert policy.stats()["cars woken"] == 1
    assert woken.sessions[0].delivered_kwh > 5


def test_a_scenario_has_at_most_one_controller_evse_and_it_cannot_go_offline() -> None:
    base = {"name": "x", "duration": "1h", "site": {"max_current_ma": 32000}, "cars": []}
    with pytest.raises(ScenarioError, match="one EVSE of its own"):
        scenario_from_dict({**base, "evses": [{"id": "A", "interface": "powerbrain"},
                                              {"id": "B", "interface": "powerbrain"}]})
    with pytest.raises(ScenarioError, match="cannot stop answering"):
        scenario_from_dict({**base, "evses": [{"id": "A", "interface": "powerbrain"}],
                            "faults": [{"type": "evse_offline", "evse": "A",
                                        "from": 60, "to": 120}]})
    with pytest.raises(ScenarioError, match="interface"):
        scenario_from_dict({**base, "evses": [{"id": "A", "interface": "soap"}]})


def test_power_brains_over_modbus_tcp_charge_like_http_input_evses() -> None:
    """Two EVSEs are other Power Brains that the manager reaches over Modbus TCP (real
    servers on loopback), beside a pushed grid meter: the cars charge without a pause
    and as on the same site with HTTP-input EVSEs; each controller counts the energy its
    car took."""
    doc: dict[str, object] = {
        "name": "mixed", "duration": "20m", "cycle_s": 3,
        "site": {"max_current_ma": 40000, "reserve_ma": 2000},
        "evses": [{"id": "A", "interface": "modbus"},
                  {"id": "B", "interface": "modbus", "phase_rotation": 120}],
        "cars": [{"id": "a", "evse": "A", "arrive": 0, "leave": "20m", "need_kwh": 30},
                 {"id": "b", "evse": "B", "arrive": 60, "leave": "20m", "need_kwh": 30}],
        "meters": {"grid": {"noise_pct": 0.5}, "evse": {"noise_pct": 1}},
        "household": {"base_w": [["00:00", 1500]], "noise_pct": 5},
    }
    sc = scenario_from_dict(doc)
    with ManagerPolicy.for_scenario(sc) as policy:
        run = run_scenario(sc, policy)
        ctl = policy.controllers
        counted = {sid: c.brain.banks["evse"].get("energy") for sid, c in ctl.items()}
        assert {policy.manager.devices[policy.device_id(s)].config.address.split(":")[0]
                for s in ("A", "B")} == {"127.0.0.1"}
    plain = replace(sc, site=replace(sc.site, evses=tuple(
        replace(e, interface="http") for e in sc.site.evses)))
    with ManagerPolicy.for_scenario(plain) as policy:
        http_run = run_scenario(plain, policy)
    metrics = compute_metrics(run)
    assert all(c.starts == 1 and c.stops == 0 for c in metrics.cars), metrics.cars
    for ours, theirs in zip(run.sessions, http_run.sessions, strict=True):
        assert ours.delivered_kwh == pytest.approx(theirs.delivered_kwh, rel=0.02)
        assert counted[ours.evse_id] == pytest.approx(ours.delivered_kwh * 1000, abs=20)
    assert metrics.misbehaviour_excursions == 0


def test_a_power_brain_over_modbus_that_stops_answering_and_comes_back() -> None:
    """The evse_offline fault on a Modbus Power Brain closes its port: the manager's reads
    fail for real (a communication error, its last current counted as load), and once
    the port listens again the manager reconnects and the car charges on."""
    doc: dict[str, object] = {
        "name": "dropout", "duration": "20m", "cycle_s": 3,
        "site": {"max_current_ma": 40000, "reserve_ma": 2000},
        "evses": [{"id": "A", "interface": "modbus"}, {"id": "B"}],
        "cars": [{"id": "a", "evse": "A", "arrive": 0, "leave": "20m", "need_kwh": 30},
                 {"id": "b", "evse": "B", "arrive": 0, "leave": "20m", "need_kwh": 30}],
        "meters": {"grid": {"noise_pct": 0.5}, "evse": {"noise_pct": 1}},
        "household": {"base_w": [["00:00", 1500]], "noise_pct": 5},
        "faults": [{"type": "evse_offline", "evse": "A", "from": "5m", "to": "10m",
                    "fail_safe_ma": 6000}],
    }
    sc = scenario_from_dict(doc)
    with ManagerPolicy.for_scenario(sc) as policy:
        run = run_scenario(sc, policy)
        status = policy.manager.devices[policy.device_id("A")].status
        assert status.com_errors == 1 and not status.com_err
        assert policy.controllers["A"].serving
    trace = next(t for t in run.sessions if t.car_id == "a")
    drawn = np.frombuffer(trace.drawn_ma, dtype=np.float64)
    assert drawn[11 * 60:].max() > 6000  # charging again, above the fail-safe current
    assert compute_metrics(run).misbehaviour_excursions == 0
