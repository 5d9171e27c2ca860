"""The OCPP gateway towards a backend: an EVSE of chargebrain appears to a backend built
with the `ocpp` library as a charge point, over real sockets. Boot, status, transactions
and meter values arrive; what happens while the backend is away arrives afterwards, in
order and with its own times; the backend's remote start and stop, and its charging
profile beside the manager's limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from ocpp.v16 import call

from chargebrain.core.model import EvseReading, EvseState
from chargebrain.core.phases import Phases
from tests.ocpp.backend import Backend, running_backend
from tests.ocpp.conftest import Central

CP_ID = "CB-GARAGE"


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with running_backend() as b:
        yield b


def feed(central: Central, state: EvseState, amps: float = 0.0, wh: float = 1000.0,
         dev_id: str = "E2") -> None:
    """What the wallbox behind the HTTP-input EVSE pushes."""
    ma = round(amps * 1000)
    central.app.manager.pushes.push_evse(dev_id, EvseReading(
        state=state, currents=Phases(ma, ma, ma), power_w=3 * 230 * amps,
        total_energy_wh=wh, has_meter=True))


async def gateway_evse(central: Central, backend: Backend, dev_id: str = "E2",
                       **settings: Any) -> None:
    dev = {"dev_type": "evse_ajax", "dev_id": dev_id, "name": "Garage",
           "max_charging_cur": 16000, "ocpp_gateway_url": backend.url,
           "ocpp_gateway_client_id": CP_ID, "ocpp_gateway_password": "s3cret", **settings}
    await central.api("cmd=set_params", {"devices": [dev]})


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_the_backend_receives_the_whole_flow(central: Central, backend: Backend) -> None:
    await gateway_evse(central, backend)
    feed(central, EvseState.WAITING)
    await central.cycle()
    await backend.wait(lambda: backend.seen.statuses() == ["Available"]
                       and backend.seen.statuses(0) == ["Available"])
    boot = backend.seen.of("BootNotification")[0]
    assert boot["charge_point_vendor"] == "chargebrain"
    assert backend.credentials[CP_ID] == (CP_ID, "s3cret")
    devices = await central.api("cmd=get_devices")
    e2 = next(d for d in devices if d["dev_id"] == "E2")
    assert e2["ocpp_gateway_password_set"] is True and "ocpp_gateway_password" not in e2
    assert (await central.api("cmd=get_params"))["ocpp_gateway_licenses_used"] == 1

    plugged_at = central.clock.now()
    feed(central, EvseState.EV_PRESENT)
    await central.cycle()
    await backend.wait(lambda: len(backend.seen.of("StartTransaction")) == 1)
    start = backend.seen.of("StartTransaction")[0]
    assert (start["connector_id"], start["id_tag"], start["meter_start"]) == (
        1, "chargebrain", 1000)
    assert abs(epoch(start["timestamp"]) - plugged_at) < 2
    feed(central, EvseState.CHARGING, amps=16, wh=1000)
    await central.tick(1)
    await backend.wait(lambda: backend.seen.statuses()[-1:] == ["Charging"])
    for n in range(1, 4):
        feed(central, EvseState.CHARGING, amps=16, wh=1000 + 40 * n)
        await central.tick(5)
    await backend.wait(lambda: len(backend.seen.of("MeterValues")) >= 1)
    meters = backend.seen.of("MeterValues")[0]
    assert meters["transaction_id"] == 1001
    sampled = {(v["measurand"], v.get("phase")): v["value"]
               for v in meters["meter_value"][0]["sampled_value"]}
    assert sampled[("Current.Import", "L1")] == "16.0"
    assert sampled[("Power.Active.Import", None)] == "11040"
    assert int(sampled[("Energy.Active.Import.Register", None)]) >= 1040

    feed(central, EvseState.WAITING, wh=1200)
    await central.tick(1)
    await backend.wait(lambda: len(backend.seen.of("StopTransaction")) == 1)
    stop = backend.seen.of("StopTransaction")[0]
    assert (stop["transaction_id"], stop["meter_stop"], stop["reason"]) == (
        1001, 1200, "EVDisconnected")
    await backend.wait(lambda: backend.seen.statuses()[-1] == "Available")
    assert backend.seen.statuses()[:3] == ["Available", "Preparing", "SuspendedEV"]


async def test_the_users_card_is_the_id_tag(central: Central, backend: Backend) -> None:
    await gateway_evse(central, backend)
    uid = await central.api("cmd=get_new_user_id")
    await central.api("cmd=set_user", {"id": uid, "name": "alice", "dev_ids": ["E2"],
                                       "rfids": [{"id": "CARD1"}]})
    feed(central, EvseState.EV_PRESENT)
    await central.cycle()
    await backend.wait(lambda: backend.seen.statuses()[-1:] == ["Preparing"])
    assert backend.seen.of("StartTransaction") == []  # it waits for a card
    await central.api("cmd=enter_rfid&rfid=CARD1&dev_id=E2")
    await central.cycle()
    await backend.wait(lambda: len(backend.seen.of("StartTransaction")) == 1)
    assert backend.seen.of("StartTransaction")[0]["id_tag"] == "CARD1"


async def test_what_happens_while_the_backend_is_away_arrives_later_in_order(
        central: Central, backend: Backend) -> None:
    await gateway_evse(central, backend)
    feed(central, EvseState.WAITING)
    await central.cycle()
    await backend.wait(lambda: backend.seen.statuses() == ["Available"])
    port = backend.port
    await backend.stop()
    before = len(backend.seen.calls)
    away_since = central.clock.now()
    feed(central, EvseState.EV_PRESENT)
    await central.tick(1)
    feed(central, EvseState.CHARGING, amps=10, wh=1000)
    await central.tick(1)
    for n in range(1, 5):
        feed(central, EvseState.CHARGING, amps=10, wh=1000 + 25 * n)
        await central.tick(5)
    feed(central, EvseState.WAITING, wh=1100)
    await central.tick(1)
    away_until = central.clock.now()
    assert len(backend.seen.calls) == before
    link = central.app.gateways.link_of("E2")
    assert link is not None and len(link.outbox) >= 8

    await backend.start(port)
    for _ in range(60):  # the gateway tries again after a growing wait (virtual time)
        if "BootNotification" in backend.seen.actions()[1:]:
            break
        await central.tick(10)
    await backend.wait(lambda: "StopTransaction" in backend.seen.actions()
                       and backend.seen.actions()[-1] == "StatusNotification")
    later = [(a, p) for _c, a, p in backend.seen.calls[before:] if a != "Heartbeat"]
    actions = [a for a, _p in later]
    assert actions[0] == "BootNotification"
    begin, end = actions.index("StartTransaction") - 1, actions.index("StopTransaction") + 2
    away = later[begin:end]
    assert [a for a, _p in away][:4] == ["StatusNotification", "StartTransaction",
                                        "StatusNotification", "StatusNotification"]
    assert [p["status"] for a, p in away if a == "StatusNotification"] == [
        "Preparing", "SuspendedEV", "Charging", "Available"]
    assert [a for a, _p in away].count("MeterValues") >= 2
    assert [a for a, _p in away][-2:] == ["StopTransaction", "StatusNotification"]
    # Every queued message keeps the moment it describes, in order, within the absence.
    stamps = [epoch(p["meter_value"][0]["timestamp"] if a == "MeterValues" else p["timestamp"])
              for a, p in away]
    assert stamps == sorted(stamps)
    assert away_since - 1 <= stamps[0] and stamps[-1] <= away_until + 1
    tids = {p["transaction_id"] for a, p in away if a in ("MeterValues", "StopTransaction")}
    assert tids == {1001}
    assert away[-2][1]["meter_stop"] == 1100


async def test_remote_stop_and_start_map_onto_flag_c(central: Central,
                                                     backend: Backend) -> None:
    await gateway_evse(central, backend)
    feed(central, EvseState.CHARGING, amps=16)
    await central.cycle()
    await backend.wait(lambda: len(backend.seen.of("StartTransaction")) == 1)
    cp = await backend.connected(CP_ID)
    answer = await cp.call(call.RemoteStopTransaction(transaction_id=999))
    assert answer.status == "Rejected"
    answer = await cp.call(call.RemoteStopTransaction(transaction_id=1001))
    assert answer.status == "Accepted"
    await backend.wait(lambda: len(backend.seen.of("StopTransaction")) == 1)
    assert backend.seen.of("StopTransaction")[0]["reason"] == "Remote"
    await central.cycle()
    dev = await central.device("E2")
    assert dev["overrides"] & 1 and dev["charging_enabled"] is False
    feed(central, EvseState.EV_PRESENT)
    await central.cycle()
    await backend.wait(lambda: backend.seen.statuses()[-1:] == ["Finishing"])

    answer = await cp.call(call.RemoteStartTransaction(id_tag="BACKEND-7", connector_id=1))
    assert answer.status == "Accepted"
    await central.cycle()
    await backend.wait(lambda: len(backend.seen.of("StartTransaction")) == 2)
    assert backend.seen.of("StartTransaction")[1]["id_tag"] == "BACKEND-7"
    await central.cycle()
    dev = await central.device("E2")
    assert not dev["overrides"] & 1 and dev["charging_enabled"] is True


async def test_a_backend_profile_below_the_managers_limit_wins_and_says_so(
        central: Central, backend: Backend) -> None:
    await gateway_evse(central, backend)
    feed(central, EvseState.CHARGING, amps=16)
    await central.cycle()
    await backend.wait(lambda: len(backend.seen.of("StartTransaction")) == 1)
    await central.cycle()
    assert (await central.device("E2"))["evse"]["current"] == 16000
    cp = await backend.connected(CP_ID)

    def profile(limit: float, purpose: str = "TxDefaultProfile") -> Any:
        return call.SetChargingProfile(connector_id=1, cs_charging_profiles={
            "charging_profile_id": 7, "stack_level": 1,
            "charging_profile_purpose": purpose, "charging_profile_kind": "Relative",
            "charging_schedule": {"charging_rate_unit": "A",
                                  "charging_schedule_period": [
                                      {"start_period": 0, "limit": limit}]}})

    assert (await cp.call(profile(10.0))).status == "Accepted"
    await central.cycle()
    dev = await central.device("E2")
    assert (dev["evse"]["current"], dev["lreason"], dev["reason"]) == (
        10000, 13, "OCPP backend")
    assert (await cp.call(profile(20.0))).status == "Accepted"  # replaces id 7
    await central.cycle()
    dev = await central.device("E2")
    assert (dev["evse"]["current"], dev["lreason"]) == (16000, 1)
    assert (await cp.call(profile(8.0, "TxProfile"))).status == "Accepted"
    await central.cycle()
    assert (await central.device("E2"))["evse"]["current"] == 8000
    answer = await cp.call(call.ClearChargingProfile())
    assert answer.status == "Accepted"
    await central.cycle()
    dev = await central.device("E2")
    assert (dev["evse"]["current"], dev["lreason"]) == (16000, 1)


async def test_a_card_the_backend_refuses_ends_the_transaction(central: Central,
                                                               backend: Backend) -> None:
    backend.tag_status["chargebrain"] = "Invalid"
    await gateway_evse(central, backend)
    feed(central, EvseState.EV_PRESENT)
    await central.cycle()
    await backend.wait(lambda: len(backend.seen.of("StopTransaction")) == 1)
    assert backend.seen.of("StopTransaction")[0]["reason"] == "DeAuthorized"
    await central.cycle()
    dev = await central.device("E2")
    assert dev["overrides"] & 1 and dev["charging_enabled"] is False


async def test_the_backend_reads_and_changes_the_configuration_and_triggers_messages(
        central: Central, backend: Backend) -> None:
    await gateway_evse(central, backend)
    feed(central, EvseState.CHARGING, amps=6)
    await central.cycle()
    cp = await backend.connected(CP_ID)
    answer = await cp.call(call.GetConfiguration(key=["MeterValueSampleInterval", "Nope"]))
    assert answer.configuration_key == [
        {"key": "MeterValueSampleInterval", "readonly": False, "value": "10"}]
    assert answer.unknown_key == ["Nope"]
    answer = await cp.call(call.ChangeConfiguration(key="MeterValueSampleInterval",
                                                    value="30"))
    assert answer.status == "Accepted"
    link = central.app.gateways.link_of("E2")
    assert link is not None and link.config.sample_s == 30
    answer = await cp.call(call.ChangeConfiguration(key="NumberOfConnectors", value="2"))
    assert answer.status == "Rejected"
    await backend.wait(lambda: len(backend.seen.of("StartTransaction")) == 1)
    answer = await cp.call(call.TriggerMessage(requested_message="MeterValues",
                                               connector_id=1))
    assert answer.status == "Accepted"
    await backend.wait(lambda: len(backend.seen.of("MeterValues")) == 1)
    assert backend.seen.of("MeterValues")[0]["transaction_id"] == 1001
