"""How the manager controls an OCPP wallbox: charging profiles only when they change,
retries and their limit, clearing under the "cancel limit" policy, remote starts and
stops, fresh meter values after a change."""

from __future__ import annotations

import asyncio

from ocpp.v16 import call_result

from tests.ocpp.conftest import Central, TestChargePoint, connected, wait_for


async def charging(central: Central, cp: TestChargePoint, amps: float = 16.0) -> int:
    """Boot, plug in, start a transaction and charge until the manager's limit arrived;
    the transaction id."""
    await cp.boot()
    await cp.status("Preparing")
    tid = int((await cp.start_tx("TAG", 0, central.now_iso())).transaction_id)
    await cp.status("Charging")
    await cp.meter(central.now_iso(), transaction_id=tid, amps=(amps, amps, amps), wh=0)
    await central.cycle()
    await wait_for(lambda: cp.received.limits()[-1:] == [16.0])
    return tid


async def keep_charging(central: Central, cp: TestChargePoint, tid: int, seconds: int,
                        amps: float = 16.0) -> None:
    """Let `seconds` pass while the box reports its meter every 10 s."""
    for _ in range(seconds // 10):
        await cp.meter(central.now_iso(), transaction_id=tid, amps=(amps, amps, amps), wh=10)
        await central.tick(10)


async def test_profiles_are_sent_only_when_the_limit_changes(central: Central) -> None:
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    async with connected(central, "CP1") as cp:
        tid = await charging(central, cp)
        sent = len(cp.received.of("SetChargingProfile"))
        await keep_charging(central, cp, tid, 80)  # the writer refreshes every 30 s
        assert len(cp.received.of("SetChargingProfile")) == sent
        profile = cp.received.of("SetChargingProfile")[-1]
        assert profile["connector_id"] == 1
        cs = profile["cs_charging_profiles"]
        assert cs["charging_profile_purpose"] == "TxDefaultProfile"
        assert cs["charging_profile_kind"] == "Relative"
        assert cs["charging_schedule"]["charging_rate_unit"] == "A"
        await central.params(max_total_current=10000)
        await wait_for(lambda: cp.received.limits()[-1] == 10.0)


async def test_a_refused_profile_is_retried_then_the_box_counts_as_faulty(
        central: Central) -> None:
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    async with connected(central, "CP1") as cp:
        cp.answers["SetChargingProfile"] = "Rejected"
        await cp.boot()
        await cp.status("Available")
        evse = central.app.ocpp.hub.connectors("CP1")[1]

        async def refused(times: int) -> None:
            await wait_for(lambda: len(cp.received.of("SetChargingProfile")) == times
                           and evse.refusal == "Rejected")
            await asyncio.sleep(0.05)  # the retry waits on the virtual clock

        await refused(1)
        await central.tick(31)
        await refused(2)
        await central.tick(31)
        dev = await central.device("E2")
        assert dev["com_err"] is True
        assert "does not accept the current limit" in dev["last_error"]
        cp.answers["SetChargingProfile"] = "Accepted"
        # the next retry (every 30 s of virtual time) is accepted; when the last refusal's
        # answer arrived after a tick, its retry falls due one tick later
        for _ in range(3):
            await central.tick(31)
            await asyncio.sleep(0.2)
            if evse.refused_since is None:
                break
        assert evse.refused_since is None
        await central.cycle()
        assert (await central.device("E2"))["com_err"] is False


async def test_cancel_limit_policy_clears_the_profile(central: Central) -> None:
    await central.params(disable_policy=-1)
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    async with connected(central, "CP1") as cp:
        tid = await charging(central, cp)
        await central.add_evse("E2", "CP1", device_enabled=0)
        await wait_for(lambda: len(cp.received.of("ClearChargingProfile")) == 1)
        cleared = cp.received.of("ClearChargingProfile")[0]
        assert cleared["connector_id"] == 1
        await keep_charging(central, cp, tid, 40)
        assert len(cp.received.of("ClearChargingProfile")) == 1
        before = len(cp.received.of("SetChargingProfile"))
        await central.add_evse("E2", "CP1", device_enabled=1)
        await wait_for(lambda: len(cp.received.of("SetChargingProfile")) > before)
        assert cp.received.limits()[-1] == 16.0


async def test_disabled_without_free_charging_gets_zero(central: Central) -> None:
    await central.params(disable_policy=0)
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    async with connected(central, "CP1") as cp:
        await charging(central, cp)
        await central.add_evse("E2", "CP1", device_enabled=0)
        await wait_for(lambda: cp.received.limits()[-1] == 0.0)
        assert cp.received.of("ClearChargingProfile") == []


async def test_override_c_stops_and_restarts_the_transaction(central: Central) -> None:
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    async with connected(central, "CP1") as cp:
        tid = await charging(central, cp)
        await central.api("cmd=override_device&dev_id=E2&flags=C")
        await wait_for(lambda: cp.received.of("RemoteStopTransaction")
                       == [{"transaction_id": tid}])
        await cp.stop_tx(tid, 500, central.now_iso(), reason="Remote")
        await cp.status("Finishing")
        await central.tick()
        assert cp.received.limits()[-1] == 0.0
        await central.api("cmd=override_device&dev_id=E2&flags=c")
        await wait_for(lambda: len(cp.received.of("RemoteStartTransaction")) == 1)
        started = cp.received.of("RemoteStartTransaction")[0]
        assert started["connector_id"] == 1
        await central.tick()
        assert len(cp.received.of("RemoteStartTransaction")) == 1


async def test_a_card_entered_at_chargebrain_starts_the_transaction(central: Central) -> None:
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    uid = await central.api("cmd=get_new_user_id")
    await central.api("cmd=set_user", {"id": uid, "name": "bob", "dev_ids": ["E2"],
                                       "rfids": [{"id": "B0B"}]})
    async with connected(central, "CP1") as cp:
        await cp.boot()
        await cp.status("Preparing")
        await central.cycle()
        assert (await central.device("E2"))["needs_auth"] is True
        await central.api("cmd=enter_rfid&dev_id=E2&rfid=B0B")
        await wait_for(lambda: cp.received.of("RemoteStartTransaction")
                       == [{"connector_id": 1, "id_tag": "B0B"}])
        answer = await cp.start_tx("B0B", 0, central.now_iso())
        assert answer.id_tag_info["status"] == "Accepted"


async def test_fixed_rfid_starts_the_transaction(central: Central) -> None:
    uid = await central.api("cmd=get_new_user_id")
    await central.add_evse("E2", "CP1", max_charging_cur=16000, fixed_rfid="FLEET")
    await central.api("cmd=set_user", {"id": uid, "name": "fleet", "dev_ids": ["E2"],
                                       "rfids": [{"id": "FLEET"}]})
    async with connected(central, "CP1") as cp:
        await cp.boot()
        await cp.status("Preparing")
        await central.cycle()
        await wait_for(lambda: cp.received.of("RemoteStartTransaction")
                       == [{"connector_id": 1, "id_tag": "FLEET"}])


async def test_fresh_meter_values_are_asked_for_after_a_change(central: Central) -> None:
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    async with connected(central, "CP1") as cp:
        await charging(central, cp)
        triggers = len(cp.received.of("TriggerMessage"))
        await central.params(max_total_current=10000)
        await wait_for(lambda: cp.received.limits()[-1] == 10.0)
        central.clock.advance(6)
        await wait_for(lambda: {"requested_message": "MeterValues", "connector_id": 1}
                       in cp.received.of("TriggerMessage")[triggers:])


async def test_a_wallbox_that_does_not_answer_never_holds_the_cycle(central: Central) -> None:
    await central.add_evse("E2", "CP1", max_charging_cur=16000)
    async with connected(central, "CP1") as cp:
        release = asyncio.Event()

        async def hang(**kw: object) -> object:
            cp.received.calls.append(("SetChargingProfile", dict(kw)))
            await release.wait()
            return call_result.SetChargingProfile(status="Accepted")

        cp.route_map["SetChargingProfile"]["_on_action"] = hang
        await cp.boot()
        await cp.status("Available")
        await wait_for(lambda: len(cp.received.of("SetChargingProfile")) == 1)
        mgr = central.app.manager
        before = mgr.cycle_count
        for limit in (10000, 12000, 14000):  # changes while the wallbox is silent
            await central.params(max_total_current=limit)
            await central.cycle()
        assert mgr.cycle_count >= before + 3
        assert not release.is_set() and len(cp.received.of("SetChargingProfile")) == 1
        release.set()
