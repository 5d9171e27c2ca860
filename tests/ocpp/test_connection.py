"""A wallbox that loses its connection is a communication error, as a Power Brain that
stops answering; it resumes its session when it is back, sends what it kept while
offline, and is known again after chargebrain restarts."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from chargebrain.clock import VirtualClock
from chargebrain.servers.ocpp.session import BOOT_WAIT_S
from tests.ocpp.conftest import Central, TestChargePoint, connected, make_central, wait_for


async def transactions(central: Central) -> list[dict[str, str]]:
    async with central.http.get(central.running.url("cmd=get_transactions")) as resp:
        return list(csv.DictReader(io.StringIO(await resp.text())))


def csv_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


async def test_a_lost_connection_is_offline_and_a_reconnect_resumes(central: Central) -> None:
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    async with connected(central, "CP1") as cp:
        await cp.boot()
        await cp.status("Preparing")
        tid = (await cp.start_tx("TAG", 100, central.now_iso())).transaction_id
        await cp.status("Charging")
        await cp.meter(central.now_iso(), transaction_id=tid, amps=(16, 16, 16), wh=100)
        await central.cycle()
        await wait_for(lambda: cp.received.limits()[-1:] == [16.0])
    await central.tick()
    dev = await central.device("E2")
    assert dev["com_err"] is True and dev["state"] == 6
    assert "not connected" in dev["last_error"]
    assert dev["lreason"] == 11  # offline: counted at its worst
    # Back: no new boot, the same transaction goes on.
    async with connected(central, "CP1") as cp:
        await cp.status("Charging")
        await cp.meter(central.now_iso(), transaction_id=tid, amps=(16, 16, 16), wh=600)
        await central.cycle()
        dev = await central.device("E2")
        assert dev["com_err"] is False and dev["state"] == 3
        # Everything is sent again: it may have lost it.
        await wait_for(lambda: cp.received.limits()[-1:] == [16.0])
        await cp.stop_tx(tid, 2100, central.now_iso(5))
        await cp.status("Available")
        await central.cycle()
    rows = await transactions(central)
    assert [(r["id"], r["start_wh"], r["end_wh"]) for r in rows] == [(str(tid), "100", "2100")]


async def test_stale_meter_values_while_charging(central: Central) -> None:
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    async with connected(central, "CP1") as cp:
        await cp.boot()
        await cp.status("Preparing")
        tid = (await cp.start_tx("TAG", 0, central.now_iso())).transaction_id
        await cp.status("Charging")
        await cp.meter(central.now_iso(), transaction_id=tid, amps=(16, 16, 16))
        await central.cycle()
        await central.tick(16)  # 1.5 sample intervals: fresh ones are asked for
        await wait_for(lambda: {"requested_message": "MeterValues", "connector_id": 1}
                       in cp.received.of("TriggerMessage"))
        assert (await central.device("E2"))["com_err"] is False
        await central.tick(15)  # three intervals without meter values
        dev = await central.device("E2")
        assert dev["com_err"] is True and "no meter values" in dev["last_error"]
        await cp.meter(central.now_iso(), transaction_id=tid, amps=(15, 15, 15))
        await central.cycle()
        assert (await central.device("E2"))["com_err"] is False


async def test_transactions_kept_offline_are_recorded_with_their_times(
        central: Central) -> None:
    await central.add_evse("E2", "CP1")
    uid = await central.api("cmd=get_new_user_id")
    await central.api("cmd=set_user", {"id": uid, "name": "carol", "rfids": [{"id": "C4"}]})
    async with connected(central, "CP1") as cp:
        await cp.boot()
        await cp.status("Available")
        await central.cycle()
        # What it kept while it could not reach us: a whole session an hour ago.
        began, ended = central.clock.now() - 3600, central.clock.now() - 1800
        started = await cp.start_tx("C4", 5000, central.now_iso(-3600))
        tid = started.transaction_id
        await cp.meter(central.now_iso(-2700), transaction_id=tid, amps=(32, 32, 32),
                       wh=9000)
        await cp.stop_tx(tid, 16000, central.now_iso(-1800))
        await central.cycle()
        dev = await central.device("E2")
        assert dev["state"] == 1 and dev["current_l1"] == 0  # history is not now
        assert dev["user"] == ""
    rows = await transactions(central)
    assert len(rows) == 1
    row = rows[0]
    assert row["user_name"] == "carol" and row["rfid"] == "C4"
    assert (row["start_wh"], row["end_wh"], row["energy_wh"]) == ("5000", "16000", "11000")
    assert abs(csv_time(row["start"]) - began) < 1 and abs(csv_time(row["end"]) - ended) < 1


async def test_a_charge_point_that_booted_before_a_restart_is_served_at_once(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    clock = VirtualClock()
    async for central in make_central(tmp_path, http, clock=clock):
        await central.add_evse("E2", "CP1")
        async with connected(central, "CP1") as cp:
            await cp.boot(vendor="Keba", model="P30")
            await cp.status("Available")
    async for central in make_central(tmp_path, http, clock=clock):
        async with connected(central, "CP1") as cp:
            await cp.status("Preparing")  # no BootNotification after a reconnection
            await central.cycle()
            dev = await central.device("E2")
            assert dev["state"] == 2 and dev["com_err"] is False
            assert dev["model"].startswith("Keba P30")
            assert not any(t["requested_message"] == "BootNotification"
                           for t in cp.received.of("TriggerMessage"))


async def test_a_charge_point_that_never_booted_here_is_asked_to_unless_it_boots(
        central: Central) -> None:
    await central.add_evse("E2", "CP1")
    await central.add_evse("E3", "CP2")
    async with connected(central, "CP1") as quiet, connected(central, "CP2") as booting:
        await booting.boot()
        await central.tick(BOOT_WAIT_S)

        def asked(cp: TestChargePoint) -> bool:
            return any(t["requested_message"] == "BootNotification"
                       for t in cp.received.of("TriggerMessage"))

        await wait_for(lambda: asked(quiet))
        assert not asked(booting)  # it booted of itself: asking again would boot it twice
