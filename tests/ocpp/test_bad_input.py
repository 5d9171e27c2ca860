"""Frames and payloads no wallbox should send get the CALLERROR OCPP 1.6 names, and
change nothing; the connection goes on."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any

import pytest
from ocpp.exceptions import PropertyConstraintViolationError

from tests.ocpp.conftest import Central, connected, exchange, raw, wait_for

STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}


async def transactions(central: Central) -> list[dict[str, str]]:
    async with central.http.get(central.running.url("cmd=get_transactions")) as resp:
        return list(csv.DictReader(io.StringIO(await resp.text())))


async def booted(central: Central) -> Any:
    ws = await raw(central, "CP1")
    answer = await exchange(ws, [2, "b", "BootNotification",
                                 {"chargePointVendor": "A", "chargePointModel": "B"}])
    assert answer[2]["status"] == "Accepted"
    answer = await exchange(ws, [2, "s", "StatusNotification",
                                 {**STATUS, "status": "Available"}])
    assert answer == [3, "s", {}]
    return ws


def error(answer: list[Any], uid: str, code: str) -> None:
    assert answer[0] == 4, answer
    assert answer[1] == uid
    assert answer[2] == code, answer
    assert isinstance(answer[3], str) and isinstance(answer[4], dict)


@pytest.mark.parametrize(("frame", "uid", "code"), [
    ("not json", "-1", "FormationViolation"),
    ('{"a": 1}', "-1", "FormationViolation"),
    ("[]", "-1", "FormationViolation"),
    ('[9, "x1", "Heartbeat", {}]', "x1", "FormationViolation"),
    ('[2, "x2", "Heartbeat"]', "x2", "FormationViolation"),
    ('[2, "x3", "Heartbeat", []]', "x3", "FormationViolation"),
    ('[2, 17, "Heartbeat", {}]', "-1", "FormationViolation"),
    ('[2, "x4", "FlyToTheMoon", {}]', "x4", "NotImplemented"),
    ('[2, "x5", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {'
     '"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",'
     ' "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "A",'
     ' "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}}}]', "x5",
     "NotSupported"),
    ('[2, "x6", "StatusNotification", {"connectorId": "1", "errorCode": "NoError",'
     ' "status": "Charging"}]', "x6", "TypeConstraintViolation"),
    ('[2, "x7", "StatusNotification", {"connectorId": 1, "errorCode": "NoError"}]', "x7",
     "ProtocolError"),
    ('[2, "x8", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",'
     ' "status": "Charging", "colour": "red"}]', "x8", "FormationViolation"),
    ('[2, "x9", "StatusNotification", {"connectorId": -3, "errorCode": "NoError",'
     ' "status": "Charging"}]', "x9", "PropertyConstraintViolation"),
    ('[2, "x10", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",'
     ' "status": "Charging", "timestamp": "yesterday"}]', "x10", "TypeConstraintViolation"),
    ('[2, "x11", "StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": -5,'
     ' "timestamp": "2023-11-14T22:13:20Z"}]', "x11", "PropertyConstraintViolation"),
    ('[2, "x12", "StopTransaction", {"transactionId": 4711, "meterStop": 5,'
     ' "timestamp": "2023-11-14T22:13:20Z"}]', "x12", "PropertyConstraintViolation"),
    ('[2, "x13", "MeterValues", {"connectorId": 1, "transactionId": 4711, "meterValue":'
     ' [{"timestamp": "2023-11-14T22:13:20Z", "sampledValue": [{"value": "32",'
     ' "measurand": "Current.Import", "phase": "L1", "unit": "A"}]}]}]', "x13",
     "PropertyConstraintViolation"),
    ('[2, "x14", "Authorize", {"idTag": "' + "X" * 21 + '"}]', "x14",
     "TypeConstraintViolation"),
])
async def test_bad_frames_get_the_protocols_error_and_change_nothing(
        central: Central, frame: str, uid: str, code: str) -> None:
    await central.add_evse("E2", "CP1")
    ws = await booted(central)
    await central.cycle()
    before = await central.device("E2")
    error(await exchange(ws, frame), uid, code)
    # The connection goes on.
    answer = await exchange(ws, [2, "hb", "Heartbeat", {}])
    assert answer[0] == 3 and "currentTime" in answer[2]
    await central.cycle()
    after = await central.device("E2")
    for key in ("state", "current_l1", "total_energy", "com_err"):
        assert after[key] == before[key], key
    assert await transactions(central) == []
    await ws.close()


async def test_nothing_but_boot_before_boot(central: Central) -> None:
    await central.add_evse("E2", "CP1")
    ws = await raw(central, "CP1")
    error(await exchange(ws, [2, "s1", "StatusNotification", STATUS]), "s1", "SecurityError")
    error(await exchange(ws, [2, "s2", "StartTransaction", {
        "connectorId": 1, "idTag": "A", "meterStart": 0,
        "timestamp": central.now_iso()}]), "s2", "SecurityError")
    await central.cycle()
    dev = await central.device("E2")
    assert dev["com_err"] is True and "not reported" in dev["last_error"]
    assert await transactions(central) == []
    answer = await exchange(ws, [2, "b", "BootNotification",
                                 {"chargePointVendor": "A", "chargePointModel": "B"}])
    assert answer[2]["status"] == "Accepted"
    assert await exchange(ws, [2, "s3", "StatusNotification", STATUS]) == [3, "s3", {}]
    await ws.close()


async def test_data_transfer_is_answered_unknown_vendor(central: Central) -> None:
    await central.add_evse("E2", "CP1")
    ws = await booted(central)
    answer = await exchange(ws, [2, "d", "DataTransfer", {"vendorId": "com.acme",
                                                          "messageId": "x", "data": "{}"}])
    assert answer == [3, "d", {"status": "UnknownVendorId"}]
    await ws.close()


async def test_a_repeated_start_or_stop_is_the_same_transaction(central: Central) -> None:
    await central.add_evse("E2", "CP1")
    async with connected(central, "CP1") as cp:
        await cp.boot()
        await cp.status("Preparing")
        when = central.now_iso()
        first = await cp.start_tx("TAG", 100, when)
        again = await cp.start_tx("TAG", 100, when)
        assert again.transaction_id == first.transaction_id
        await cp.stop_tx(first.transaction_id, 900, central.now_iso(30))
        await cp.stop_tx(first.transaction_id, 900, central.now_iso(30))
    rows = await transactions(central)
    assert len(rows) == 1
    assert rows[0]["end_wh"] == "900"


async def test_a_transaction_of_another_charge_point_is_refused(central: Central) -> None:
    await central.add_evse("E2", "CP1")
    await central.add_evse("E3", "CP2")
    async with connected(central, "CP1") as cp1:
        await cp1.boot()
        await cp1.status("Preparing")
        tid = (await cp1.start_tx("TAG", 100, central.now_iso())).transaction_id
    async with connected(central, "CP2") as cp2:
        await cp2.boot()
        with pytest.raises(PropertyConstraintViolationError):
            await cp2.stop_tx(tid, 900, central.now_iso(30))
    rows = await transactions(central)
    assert len(rows) == 1 and rows[0]["end"] == ""


async def test_an_answer_that_breaks_the_schema_is_a_refusal(central: Central) -> None:
    await central.add_evse("E2", "CP1")
    ws = await raw(central, "CP1")
    await ws.send(json.dumps([2, "b", "BootNotification",
                              {"chargePointVendor": "A", "chargePointModel": "B"}]))
    evse = central.app.ocpp.hub.connectors("CP1")[1]
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame[0] == 2 and frame[2] == "SetChargingProfile":
            await ws.send(json.dumps([3, frame[1], {"status": "Maybe"}]))
            break
        if frame[0] == 2:
            await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
    await wait_for(lambda: evse.refusal == "FormationViolation")
    assert evse.confirmed is None
    await ws.close()
