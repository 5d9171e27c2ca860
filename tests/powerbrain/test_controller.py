"""The controller's firmware logic, stepped on simulated time."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargebrain.powerbrain.bank import RegisterError
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.powerbrain.hardware import SimCar, SimEvseHardware, SimS0Input
from chargebrain.store.db import Store


def make(tmp_path: Path | None = None) -> tuple[PowerBrain, SimEvseHardware, SimS0Input]:
    hw = SimEvseHardware()
    s0 = SimS0Input()
    store = Store(tmp_path / "db.sqlite") if tmp_path else None
    pb = PowerBrain(store, hw, (s0, SimS0Input()))
    pb.start()
    return pb, hw, s0


def run(pb: PowerBrain, seconds: float, dt: float = 0.5) -> None:
    t = 0.0
    while t < seconds:
        pb.tick(dt)
        t += dt


def test_pilot_states_follow_the_car() -> None:
    pb, hw, _ = make()
    evse = pb.banks["evse"]
    run(pb, 1)
    assert evse.get("charge_pilot_state") == 0
    assert evse.get("cable_current") == 0
    car = SimCar(max_ma=32_000, phases=1, need_wh=100, cable_ma=20_000)
    hw.plug(car)
    evse.write_words(8094, [0])
    run(pb, 1)
    assert evse.get("charge_pilot_state") == 1  # B: plugged, not allowed
    assert evse.get("cable_current") == 200
    evse.write_words(8093, [320])  # 32 A asked, cable allows 20 A
    evse.write_words(8094, [1])
    run(pb, 1)
    assert evse.get("charge_pilot_state") == 2
    assert evse.get("charging_current") == 200
    assert [evse.get(f"current_l{i}") for i in (1, 2, 3)] == [200, 0, 0]
    assert evse.get("power") == 4600
    run(pb, 120)  # 100 Wh at 4.6 kW take ~78 s
    assert not car.wants_energy
    assert evse.get("charge_pilot_state") == 1
    assert evse.get("charging_current") == 0
    assert 95 <= evse.get("energy") <= 110
    hw.unplug()
    run(pb, 1)
    assert evse.get("charge_pilot_state") == 0


def test_limit_below_6a_is_rejected_not_clamped() -> None:
    pb, _, _ = make()
    evse = pb.banks["evse"]
    with pytest.raises(RegisterError):
        evse.write_words(8093, [50])
    assert evse.get("charging_cur_limit") == 160


def test_fixed_current_overrides_cable() -> None:
    pb, hw, _ = make()
    evse = pb.banks["evse"]
    hw.plug(SimCar(max_ma=32_000, cable_ma=32_000))
    evse.write_words(8093, [300])
    evse.write_words(8091, [100])
    run(pb, 1)
    assert evse.get("charging_current") == 100


def test_one_phase_relay() -> None:
    pb, hw, _ = make()
    evse = pb.banks["evse"]
    evse.write_words(8087, [1])  # no car: the contactor changes at once
    hw.plug(SimCar(max_ma=16_000, phases=3))
    run(pb, 1)
    assert [evse.get(f"current_l{i}") for i in (1, 2, 3)] == [160, 0, 0]


def test_fail_safe_after_silence() -> None:
    pb, hw, _ = make()
    evse = pb.banks["evse"]
    hw.plug(SimCar(max_ma=32_000))
    evse.write_words(8083, [0, 60])  # 60 s
    evse.write_words(8085, [0])  # stop charging
    evse.write_words(8093, [200])
    run(pb, 30)
    assert evse.get("charging_current") == 200
    assert not pb.fail_safe_active
    run(pb, 31)
    assert pb.fail_safe_active
    assert evse.get("charging_current") == 0
    evse.read_words(8092, 1)  # any access ends it
    run(pb, 1)
    assert evse.get("charging_current") == 200
    evse.write_words(8085, [80])
    run(pb, 61)
    assert evse.get("charging_current") == 80


def test_disconnect_countdown() -> None:
    pb, hw, _ = make()
    evse = pb.banks["evse"]
    hw.plug(SimCar())
    run(pb, 1)
    assert evse.get("charging_current") == 160
    evse.write_words(8086, [5])
    run(pb, 2)
    assert evse.get("charging_current") == 0
    assert evse.get("disconnect_cp") == 3
    run(pb, 3.5)
    assert evse.get("disconnect_cp") == 0
    assert evse.get("charging_current") == 160


def test_s0_pulses_energy_power_currents() -> None:
    pb, _, s0 = make()
    m = pb.banks["meter1"]
    assert m.get("power") == -1
    s0.load_w = lambda _t: 3600.0  # 1 pulse per second at 1000/kWh
    m.write_words(8044, [7])
    run(pb, 10.2, dt=0.1)
    assert 9 <= m.get("pulses") <= 11
    assert m.get("energy") in (9, 10, 11)
    assert m.get("timeperpulse") == 1000
    assert m.get("power") == 3600
    # 3600 W over three phases at 230 V: 5.2 A each.
    assert [m.get(f"current_l{i}") for i in (1, 2, 3)] == [52, 52, 52]
    m.write_words(8070, [1])
    assert m.get("pulses") == 0 and m.get("reset_pulses") == 0
    m.write_words(8058, [0, 0, 0, 5000])
    assert m.get("energy") == 5000
    run(pb, 2, dt=0.1)
    assert m.get("energy") >= 5001
    m.write_words(8071, [1])
    assert m.get("energy") == 0
    s0.load_w = lambda _t: 0.0
    run(pb, 700, dt=1.0)
    assert m.get("power") == 0


def test_power_estimate_falls_when_pulses_stop() -> None:
    pb, _, s0 = make()
    m = pb.banks["meter1"]
    s0.load_w = lambda _t: 7200.0
    run(pb, 5, dt=0.1)
    assert m.get("power") == 7200
    s0.load_w = lambda _t: 0.0
    run(pb, 10, dt=0.1)
    assert 0 < m.get("power") < 400  # at most one pulse in the last ~10 s


def test_persisted_and_volatile_registers(tmp_path: Path) -> None:
    pb, _, _ = make(tmp_path)
    evse = pb.banks["evse"]
    serial = pb.serial
    evse.write_words(8081, [100])  # def_charg_cur_limit persisted
    evse.write_words(8093, [200])  # volatile
    evse.write_words(8085, [0])
    pb.banks["meter1"].write_words(8042, [0, 800])
    assert evse.get("count_restart") == 1
    pb.store.close()  # type: ignore[union-attr]
    pb2, _, _ = make(tmp_path)
    evse2 = pb2.banks["evse"]
    assert pb2.serial == serial
    assert evse2.get("count_restart") == 2
    assert evse2.get("def_charg_cur_limit") == 100
    assert evse2.get("charging_cur_limit") == 100  # from the default, not 200
    assert evse2.get("fail_safe_current") == 0
    assert pb2.banks["meter1"].get("pulsesperkwh") == 800
    assert pb2.banks["meter2"].get("count_restart") == 2
