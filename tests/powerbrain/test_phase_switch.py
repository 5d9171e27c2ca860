"""The 1/3-phase contactor of the controller (register 8087), stepped on simulated time."""

from __future__ import annotations

from pathlib import Path

from chargebrain.powerbrain.bank import RegisterBank
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.powerbrain.hardware import SimCar, SimEvseHardware
from chargebrain.powerbrain.phase_switch import PhaseSwitchSettings
from chargebrain.store.db import Store
from tests.powerbrain.test_controller import make, run

PERMITTED = PhaseSwitchSettings(plugged=True)
THREE_PHASE = [160, 160, 160]
ONE_PHASE = [160, 0, 0]


def currents(evse: RegisterBank) -> list[int]:
    return [evse.get(f"current_l{i}") for i in (1, 2, 3)]


def controller(tmp_path: Path | None = None) -> tuple[PowerBrain, SimEvseHardware]:
    """A started controller without fail-safe (nobody accesses it over Modbus here)."""
    pb, hw, _ = make(tmp_path)
    pb.banks["evse"].write_words(8083, [0, 0])
    return pb, hw


def charging(settings: PhaseSwitchSettings | None = None) -> tuple[PowerBrain, SimEvseHardware]:
    """A controller whose car charges on three phases at 16 A."""
    pb, hw = controller()
    if settings is not None:
        pb.configure_phase_switching(settings)
    hw.plug(SimCar(max_ma=16_000, phases=3))
    run(pb, 2)
    assert currents(pb.banks["evse"]) == THREE_PHASE
    return pb, hw


def test_8113_bit_8_says_whether_switching_while_plugged_is_permitted() -> None:
    pb, _ = controller()
    evse = pb.banks["evse"]
    run(pb, 1)
    assert evse.get("s0_inputs") & 0x100 == 0
    pb.configure_phase_switching(PERMITTED)
    assert evse.get("s0_inputs") & 0x700 == 0x700  # at once; relay bits 9, 10 stay
    run(pb, 1)
    assert evse.get("s0_inputs") & 0x100
    pb.configure_phase_switching(PhaseSwitchSettings(plugged=False))
    assert evse.get("s0_inputs") & 0x700 == 0x600
    run(pb, 1)
    assert evse.get("s0_inputs") & 0x100 == 0


def test_without_a_car_the_contactor_changes_at_once() -> None:
    pb, hw = controller()
    evse = pb.banks["evse"]
    evse.write_words(8087, [1])
    run(pb, 0.5)
    assert pb.one_phase
    assert evse.get("relay_select") == 1 and evse.get("disconnect_cp") == 0
    hw.plug(SimCar(max_ma=16_000, phases=3))
    run(pb, 1)
    assert evse.get("charge_pilot_state") == 2
    assert currents(evse) == ONE_PHASE
    assert evse.get("power") == 3680  # 16 A x 230 V on one phase
    assert evse.get("charging_current") == 160


def test_switch_while_plugged_holds_the_pilot_off_then_charges_on_one_phase() -> None:
    pb, _ = charging(PERMITTED)
    evse = pb.banks["evse"]
    energy = evse.get("energy")
    evse.write_words(8087, [1])
    run(pb, 1)
    assert evse.get("relay_select") == 1
    assert evse.get("charge_pilot_state") == 1  # B: the car sees an unplug, no charging
    assert evse.get("charging_current") == 0 and currents(evse) == [0, 0, 0]
    assert evse.get("power") == 0
    assert 119 <= evse.get("disconnect_cp") <= 120
    run(pb, 60)
    assert 59 <= evse.get("disconnect_cp") <= 60
    assert evse.get("charge_pilot_state") == 1 and evse.get("power") == 0
    assert evse.get("energy") - energy <= 7  # the 0.5 s before the pilot went off
    run(pb, 60)
    assert evse.get("disconnect_cp") == 0
    run(pb, 1)
    assert evse.get("charge_pilot_state") == 2
    assert currents(evse) == ONE_PHASE
    assert evse.get("power") == 3680


def test_the_pilot_off_time_is_a_setting() -> None:
    pb, _ = charging(PhaseSwitchSettings(plugged=True, cp_off_s=30))
    evse = pb.banks["evse"]
    evse.write_words(8087, [1])
    run(pb, 1)
    assert 29 <= evse.get("disconnect_cp") <= 30
    run(pb, 29)
    assert evse.get("charge_pilot_state") == 1
    run(pb, 1)
    assert evse.get("charge_pilot_state") == 2 and currents(evse) == ONE_PHASE


def test_without_permission_the_switch_waits_for_the_next_plug_in() -> None:
    pb, hw = charging()
    evse = pb.banks["evse"]
    evse.write_words(8087, [1])
    run(pb, 600)
    assert evse.get("relay_select") == 1  # stored, read back
    assert not pb.one_phase
    assert evse.get("charge_pilot_state") == 2 and evse.get("disconnect_cp") == 0
    assert currents(evse) == THREE_PHASE  # the car keeps charging as it did
    hw.unplug()
    run(pb, 1)
    assert pb.one_phase
    hw.plug(SimCar(max_ma=16_000, phases=3))
    run(pb, 1)
    assert evse.get("charge_pilot_state") == 2
    assert currents(evse) == ONE_PHASE
    assert evse.get("disconnect_cp") == 0


def test_rewriting_the_request_does_not_start_the_spell_again() -> None:
    pb, _ = charging(PERMITTED)
    evse = pb.banks["evse"]
    evse.write_words(8087, [1])
    run(pb, 60)
    assert 60 <= evse.get("disconnect_cp") <= 61
    evse.write_words(8087, [1])  # a master refreshing its command
    run(pb, 1)
    assert 59 <= evse.get("disconnect_cp") <= 60


def test_a_wake_up_during_the_switch_does_not_shorten_it() -> None:
    pb, _ = charging(PERMITTED)
    evse = pb.banks["evse"]
    evse.write_words(8087, [1])
    run(pb, 10)
    evse.write_words(8086, [5])
    assert 110 <= evse.get("disconnect_cp") <= 111
    run(pb, 10)
    assert 100 <= evse.get("disconnect_cp") <= 101
    assert evse.get("charge_pilot_state") == 1


def test_switches_are_at_least_the_delay_apart() -> None:
    pb, _ = controller()
    evse = pb.banks["evse"]
    pb.phase_switch_delay_s = 180.0
    evse.write_words(8087, [1])
    run(pb, 1)
    assert pb.one_phase
    # Asked back and forth: held, the contactor does not follow every request.
    for value in (0, 1, 0):
        evse.write_words(8087, [value])
        run(pb, 10)
        assert pb.one_phase
    run(pb, 140)  # 171 s after the change
    assert pb.one_phase
    run(pb, 10)  # 181 s: the last request is carried out
    assert not pb.one_phase
    assert evse.get("relay_select") == 0


def test_a_held_switch_under_a_plugged_car_runs_when_the_delay_has_passed() -> None:
    pb, hw = controller()
    evse = pb.banks["evse"]
    pb.configure_phase_switching(PERMITTED)
    pb.phase_switch_delay_s = 300.0
    evse.write_words(8087, [1])
    run(pb, 1)  # no car yet: at once
    hw.plug(SimCar(max_ma=16_000, phases=3))
    run(pb, 1)
    assert currents(evse) == ONE_PHASE
    evse.write_words(8087, [0])
    run(pb, 250)
    assert currents(evse) == ONE_PHASE and evse.get("disconnect_cp") == 0
    run(pb, 50)  # 301 s after the first change: the pilot goes off for the switch
    assert evse.get("charge_pilot_state") == 1
    assert evse.get("disconnect_cp") > 100
    run(pb, 121)
    assert currents(evse) == THREE_PHASE


def test_without_a_delay_the_contactor_follows_each_request() -> None:
    pb, _ = controller()
    evse = pb.banks["evse"]
    pb.phase_switch_delay_s = 0.0
    for value in (1, 0, 1):
        evse.write_words(8087, [value])
        run(pb, 0.5)
        assert pb.one_phase is (value == 1)


def test_the_setting_survives_a_restart_the_request_does_not(tmp_path: Path) -> None:
    pb, _ = controller(tmp_path)
    pb.configure_phase_switching(PhaseSwitchSettings(plugged=True, cp_off_s=60))
    pb.banks["evse"].write_words(8087, [1])
    run(pb, 1)
    assert pb.one_phase
    assert pb.store is not None
    pb.store.close()
    pb2 = PowerBrain(Store(tmp_path / "db.sqlite"))
    pb2.start()
    assert pb2.phase_switching == PhaseSwitchSettings(plugged=True, cp_off_s=60)
    evse = pb2.banks["evse"]
    assert evse.get("s0_inputs") & 0x100  # before the first tick already
    assert evse.get("relay_select") == 0  # volatile: 3-phase after a restart
    run(pb2, 1)
    assert not pb2.one_phase
    assert evse.get("s0_inputs") & 0x100
