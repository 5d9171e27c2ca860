"""Meter values as wallboxes send them: units with prefixes, phase labels, missing phases,
power without currents; and OCPP times."""

from __future__ import annotations

from typing import Any

import pytest

from chargebrain.core.phases import Phases
from chargebrain.servers.ocpp.adapter import OcppFault
from chargebrain.servers.ocpp.measurands import measure
from chargebrain.servers.ocpp.messages import iso, meter_values, parse_time, set_profile


def samples(*values: dict[str, Any]) -> Any:
    return meter_values([{"timestamp": "2024-05-01T10:00:00Z",
                          "sampledValue": list(values)}])[0].samples


def amps(value: str, phase: str = "", unit: str = "A") -> dict[str, Any]:
    out = {"value": value, "measurand": "Current.Import", "unit": unit}
    return {**out, "phase": phase} if phase else out


def watts(value: str, phase: str = "", unit: str = "W") -> dict[str, Any]:
    out = {"value": value, "measurand": "Power.Active.Import", "unit": unit}
    return {**out, "phase": phase} if phase else out


def test_currents_per_phase_with_any_label() -> None:
    m = measure(samples(amps("16.2", "L1-N"), amps("15.9", "L2"), amps("0.1", "L3-N")))
    assert m.currents == Phases(16200, 15900, 100)
    assert m.phase_mask == 0b011
    assert m.power_w == pytest.approx((16.2 + 15.9 + 0.1) * 230)


def test_missing_phases_draw_nothing() -> None:
    m = measure(samples(amps("10", "L2")))
    assert m.currents == Phases(0, 10000, 0)


def test_kilo_prefixes() -> None:
    m = measure(samples(watts("7.36", unit="kW"), amps("16", "L1"), amps("16", "L2"),
                        {"value": "12.5", "measurand": "Energy.Active.Import.Register",
                         "unit": "kWh"}))
    assert m.power_w == pytest.approx(7360)
    assert m.energy_wh == pytest.approx(12500)
    assert m.currents == Phases(16000, 16000, 0)


def test_energy_without_measurand_is_the_import_register() -> None:
    assert measure(samples({"value": "4711"})).energy_wh == 4711


def test_power_per_phase_gives_the_currents() -> None:
    m = measure(samples(watts("3680", "L1-N"), watts("2300", "L2-N"),
                        {"value": "240", "measurand": "Voltage", "phase": "L1-N",
                         "unit": "V"}))
    assert m.currents == Phases(15333, 10000, 0)
    assert m.power_w == pytest.approx(5980)


def test_total_power_is_spread_over_the_phases_it_needs() -> None:
    three = measure(samples(watts("11040")), offered_ma=16000)
    assert three.currents == Phases(16000, 16000, 16000)
    one = measure(samples(watts("3680")), offered_ma=16000)
    assert one.currents == Phases(16000, 0, 0)
    hinted = measure(samples(watts("7360")), offered_ma=16000, phase_hint=0b110)
    assert hinted.currents == Phases(0, 16000, 16000)


def test_a_current_without_phase_is_shared_as_the_power_says() -> None:
    assert measure(samples(amps("16"))).currents == Phases(16000, 0, 0)
    assert measure(samples(amps("16"), watts("11040"))).currents == Phases(16000, 16000, 16000)


def test_what_cannot_be_used_is_ignored() -> None:
    m = measure(samples(
        {"value": "abc", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
        {"value": "nan", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
        {"value": "80", "measurand": "SoC", "location": "EV", "unit": "Percent"},
        {"value": "32", "measurand": "Current.Import", "phase": "L1", "location": "EV"},
        {"value": "deadbeef", "format": "SignedData"},
        {"value": "9", "measurand": "Current.Import", "phase": "L3", "unit": "W"},
    ))
    assert m.currents is None and m.power_w is None and m.energy_wh is None


def test_times() -> None:
    t = parse_time("2024-05-01T10:00:00Z")
    assert parse_time("2024-05-01T12:00:00+02:00") == t
    assert parse_time("2024-05-01T10:00:00.250Z") == t + 0.25
    assert parse_time("2024-05-01T10:00:00") == t  # no zone: UTC
    assert iso(t + 0.25) == "2024-05-01T10:00:00.250Z"
    for bad in ("", "yesterday", "2024-13-01T00:00:00Z"):
        with pytest.raises(OcppFault) as info:
            parse_time(bad)
        assert info.value.code == "TypeConstraintViolation"


def test_profiles() -> None:
    profile = set_profile(2, 13.37, phases=1)
    cs = profile["csChargingProfiles"]
    assert profile["connectorId"] == 2
    assert cs["chargingSchedule"]["chargingSchedulePeriod"] == [  # type: ignore[index]
        {"startPeriod": 0, "limit": 13.4, "numberPhases": 1}]
    assert "numberPhases" not in set_profile(1, 6.0)["csChargingProfiles"][  # type: ignore[index]
        "chargingSchedule"]["chargingSchedulePeriod"][0]
