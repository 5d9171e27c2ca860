"""A whole charging session of an OCPP 1.6 wallbox managed by chargebrain: boot, status,
card, transaction, meter values, the manager's limit as charging profiles, an overload
that lowers it, stop, and the transaction in get_transactions."""

from __future__ import annotations

import csv
import io

from tests.ocpp.conftest import Central, connected, wait_for


async def transactions(central: Central) -> list[dict[str, str]]:
    async with central.http.get(central.running.url("cmd=get_transactions")) as resp:
        assert resp.status == 200
        return list(csv.DictReader(io.StringIO(await resp.text())))


async def test_boot_is_accepted_and_the_box_is_an_evse(central: Central) -> None:
    await central.add_evse("E2", "CP1")
    async with connected(central, "CP1") as cp:
        answer = await cp.boot()
        assert answer.status == "Accepted"
        assert answer.interval == 60
        await cp.status("Available")
        await wait_for(lambda: cp.received.limits() == [0.0])
        await central.cycle()
        dev = await central.device("E2")
        assert dev["com_err"] is False
        assert dev["state"] == 1
        assert dev["model"] == "Acme Box 11, serial S-1, firmware 1.2.3"
        assert dev["dev_type"] == "evse_ocpp"
        await wait_for(lambda: len(cp.received.of("ChangeConfiguration")) == 2)
        configured = {p["key"]: p["value"] for p in cp.received.of("ChangeConfiguration")}
        assert configured["MeterValueSampleInterval"] == "10"
        assert "Current.Import" in configured["MeterValuesSampledData"]


async def test_whole_session_with_card_overload_and_transaction(central: Central) -> None:
    await central.params(max_total_current=32000)
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    await central.api("cmd=set_params", {"devices": [{
        "dev_type": "meter_ajax", "dev_id": "M5", "name": "grid", "role": 3}]})
    uid = await central.api("cmd=get_new_user_id")
    await central.api("cmd=set_user", {"id": uid, "name": "alice", "dev_ids": ["E2"],
                                       "rfids": [{"id": "CARD1"}]})
    await central.api("cmd=set_ajax_meter&dev_id=M5&current=[2000,2000,2000]")
    async with connected(central, "CP1") as cp:
        await cp.boot()
        await cp.status("Available")
        await wait_for(lambda: cp.received.limits() == [0.0])
        assert await cp.authorize("NOPE") == "Invalid"
        assert await cp.authorize("card1") == "Accepted"
        await cp.status("Preparing")
        started = await cp.start_tx("CARD1", 1000, central.now_iso())
        assert started.id_tag_info["status"] == "Accepted"
        tid = started.transaction_id
        await cp.status("Charging")
        await cp.meter(central.now_iso(), transaction_id=tid, amps=(0, 0, 0), wh=1000)
        await central.cycle()
        # The manager allows 16 A: the profile arrives.
        await wait_for(lambda: cp.received.limits()[-1:] == [16.0])
        await cp.meter(central.now_iso(), transaction_id=tid, amps=(16, 16, 16), wh=1100)
        await central.api("cmd=set_ajax_meter&dev_id=M5&current=[18000,18000,18000]")
        await central.tick()
        dev = await central.device("E2")
        assert dev["current_l1"] == 16000
        assert dev["user"] == "alice"
        # The house draws 24 A more: of the 32 A only 8 A are left for the car.
        await central.api("cmd=set_ajax_meter&dev_id=M5&current=[40000,40000,40000]")
        await central.tick()
        await wait_for(lambda: cp.received.limits()[-1] < 16.0)
        limits = cp.received.limits()
        assert limits[:2] == [0.0, 16.0]
        assert 6.0 <= limits[2] < 16.0  # lowered, not paused
        stopped = await cp.stop_tx(tid, 5000, central.now_iso(60), reason="EVDisconnected")
        assert stopped is not None
        await cp.status("Finishing")
        await cp.status("Available")
        await central.cycle()
    rows = await transactions(central)
    assert len(rows) == 1
    row = rows[0]
    assert row["dev_id"] == "E2"
    assert row["rfid"] == "CARD1"
    assert row["user_name"] == "alice"
    assert row["start_wh"] == "1000" and row["end_wh"] == "5000"


async def test_two_wallboxes_share_their_group_like_any_evses(central: Central) -> None:
    await central.api("cmd=set_params", {"devices": [{
        "dev_type": "evse_group", "dev_id": "E10", "name": "garage",
        "max_charging_cur": 16000}]})
    await central.add_evse("E2", "CP1", max_charging_cur=16000, group=10)
    await central.add_evse("E3", "CP2", max_charging_cur=16000, group=10)
    async with connected(central, "CP1") as cp1, connected(central, "CP2") as cp2:
        for cp in (cp1, cp2):
            await cp.boot()
            await cp.status("Preparing")
            tid = (await cp.start_tx("ANY", 0, central.now_iso())).transaction_id
            await cp.status("Charging")
            # One reports currents, the other only its power (outside the transaction).
            if cp is cp1:
                await cp.meter(central.now_iso(), transaction_id=tid, amps=(8, 8, 8),
                               wh=250)
            else:
                await cp.meter(central.now_iso(), watts=5520, wh=4000)
        await central.cycle()
        await wait_for(lambda: cp1.received.limits()[-1:] == [8.0]
                       and cp2.received.limits()[-1:] == [8.0])
        await central.cycle()
        e2, e3 = await central.device("E2"), await central.device("E3")
        assert e2["total_energy"] == 250 and e3["total_energy"] == 4000
        assert (e3["current_l1"], e3["current_l2"], e3["current_l3"]) == (8000, 8000, 8000)
        assert e2["power_w"] == 5520
