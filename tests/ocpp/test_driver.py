"""The OCPP EVSE as the charging manager sees it: what it should be told, when its
readings fail."""

from __future__ import annotations

import pytest

from chargebrain.clock import VirtualClock
from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.core.phases import Phases
from chargebrain.devices.errors import DeviceError
from chargebrain.devices.ocpp import CLEAR, OcppEvse, OcppHub


def evse() -> tuple[OcppEvse, VirtualClock]:
    clock = VirtualClock()
    return OcppEvse(OcppHub(), "E2", "CP1", 1, clock), clock


def test_what_the_connector_is_told() -> None:
    e, _ = evse()
    assert e.desired() == (0.0, 0)  # nothing decided yet: charging forbidden
    e.set_command(EvseCommand(enabled=True, current_ma=13_370))
    assert e.desired() == (13.3, 0)
    e.set_command(EvseCommand(enabled=True, current_ma=16_000, phases=1))
    assert e.desired() == (16.0, 1)
    e.set_command(EvseCommand(enabled=False, current_ma=0))
    assert e.desired() == (0.0, 0)
    e.release()
    assert e.desired() == CLEAR
    e.set_command(EvseCommand(enabled=False, current_ma=0))
    assert e.desired() == (0.0, 0)


def test_readings_fail_while_offline_unreported_or_uncontrolled() -> None:
    e, clock = evse()
    with pytest.raises(DeviceError, match="not connected"):
        e.latest()
    e.set_connected(True, "Acme Box")
    with pytest.raises(DeviceError, match="not reported"):
        e.latest()
    e.state.status = "Charging"
    e.state.status_at = clock.monotonic()
    e.accepted((0.0, 0))
    reading = e.latest()
    assert reading.state is EvseState.CHARGING and reading.model == "Acme Box"
    e.set_command(EvseCommand(enabled=True, current_ma=16_000))
    e.refused("Rejected")
    clock.advance(59)
    e.latest()
    clock.advance(2)
    with pytest.raises(DeviceError, match="does not accept the current limit: Rejected"):
        e.latest()
    e.accepted((16.0, 0))
    assert e.latest().state is EvseState.CHARGING


def test_currents_count_only_while_they_are_live() -> None:
    e, clock = evse()
    e.set_connected(True)
    e.accepted((0.0, 0))
    st = e.state
    st.status, st.status_at = "Charging", clock.monotonic()
    st.currents, st.has_meter, st.sample_at = Phases(16000, 0, 0), True, clock.monotonic()
    assert e.latest().currents == Phases(16000, 0, 0)
    clock.advance(1)
    st.status, st.status_at = "SuspendedEV", clock.monotonic()
    assert e.latest().currents == Phases(0, 0, 0)  # stopped since: it draws nothing


def test_a_card_is_handed_over_once() -> None:
    e, clock = evse()
    e.set_connected(True)
    e.accepted((0.0, 0))
    e.state.status = "Preparing"
    e.hand_card("abc")
    assert e.latest().rfid == "abc"
    assert e.latest().rfid == ""
    e.hand_card("ABC")  # the same card again (StartTransaction after Authorize)
    assert e.latest().rfid == ""
    clock.advance(61)
    e.hand_card("abc")
    assert e.latest().rfid == "abc"
