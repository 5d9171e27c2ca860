"""Charging sessions over HTTP with an HTTP-input EVSE: authorisation, overrides, soft meter,
transactions and their CSV."""

from __future__ import annotations

import csv
import io
import logging
from typing import Any

import aiohttp
import pytest

from chargebrain.clock import VirtualClock
from tests.api.test_users import (
    ADMIN,
    add_evse,
    add_user,
    call,
    device,
    set_password,
)
from tests.conftest import Running, wait_for


async def push(http: aiohttp.ClientSession, running: Running, dev_id: str, state: int,
               extra: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Push the EVSE's state until the charging manager has seen it; its orders."""
    query = f"cmd=set_ajax_evse&dev_id={dev_id}&state={state}{extra}"
    status, first = await call(http, running, query, headers=headers)
    assert status == 200, first

    async def seen() -> bool:
        return bool((await device(http, running, dev_id))["state"] == state)

    await wait_for(seen)
    # The answer of a push that follows a seen state reflects that state.
    status, orders = await call(http, running, f"cmd=set_ajax_evse&dev_id={dev_id}"
                                f"&state={state}", headers=headers)
    assert status == 200, orders
    return orders  # type: ignore[no-any-return]


async def transactions(http: aiohttp.ClientSession, running: Running, query: str = "",
                       headers: dict[str, str] | None = None) -> list[dict[str, str]]:
    async with http.get(running.url("cmd=get_transactions" + query), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/csv"
        text = await resp.text()
    return list(csv.DictReader(io.StringIO(text)))


async def site_with_user(http: aiohttp.ClientSession, running: Running,
                         **evse: Any) -> str:
    """E2 (HTTP input) with a user 'alice' (card 1234) assigned through dev_ids."""
    await add_evse(http, running, "E2", **evse)
    return await add_user(http, running, "alice", ["1234"], ["E2"])


async def test_assigned_user_waits_for_rfid_then_charges(running: Running,
                                                         http: aiohttp.ClientSession) -> None:
    uid = await site_with_user(http, running)
    orders = await push(http, running, "E2", 2)
    assert orders["charging_current"] == 0 and orders["charging_enabled"] is False
    e2 = await device(http, running, "E2")
    assert e2["needs_auth"] is True and e2["user"] == ""
    # Unknown card: refused, nothing changes.
    status, body = await call(http, running, "cmd=enter_rfid&rfid=9999")
    assert status == 403 and "unknown" in body["error"]
    assert (await push(http, running, "E2", 2))["charging_current"] == 0
    # The user's PIN without dev_id goes to the EVSE that waits for it.
    status, body = await call(http, running, "cmd=enter_rfid&rfid=1234")
    assert status == 200
    assert body == {"dev_id": "E2", "user": "alice", "authorised": True, "overrides": 0}
    orders = await push(http, running, "E2", 3, "&current=16000,16000,16000")
    assert orders["charging_enabled"] is True and orders["charging_current"] == 16000
    _, info = await call(http, running, "cmd=get_dev_info")
    assert info["auth_cnt"] == 1
    e2 = next(d for d in info["devices"] if d["dev_id"] == "E2")
    assert e2["user_id"] == uid and e2["needs_auth"] is True
    # Unplug ends the session: the next car waits again.
    await push(http, running, "E2", 1)
    orders = await push(http, running, "E2", 2)
    assert orders["charging_current"] == 0
    rows = await transactions(http, running)
    assert rows[0]["dev_id"] == "E2" and rows[0]["user_id"] == uid
    assert rows[0]["user_name"] == "alice" and rows[0]["rfid"] == "1234"
    assert rows[0]["end"].endswith("Z") and rows[0]["start"].endswith("Z")
    assert int(rows[0]["max_power_w"]) == 11040
    assert rows[1]["user_id"] == "" and rows[1]["end"] == ""  # the running one
    assert list(rows[0]) == ["id", "dev_id", "user_id", "user_name", "rfid", "start", "end",
                             "duration_s", "start_wh", "end_wh", "energy_wh", "max_power_w"]


async def test_device_users_setting_also_requires_authorisation(
        running: Running, http: aiohttp.ClientSession) -> None:
    uid = await add_user(http, running, "bob", ["42"])
    await add_evse(http, running, "E2", users=[uid])
    assert (await push(http, running, "E2", 2))["charging_current"] == 0
    status, body = await call(http, running, "cmd=enter_rfid&rfid=42&dev_id=e2")
    assert status == 200 and body["authorised"] is True
    assert (await push(http, running, "E2", 2))["charging_current"] > 0


async def test_user_assigned_during_a_session_makes_it_wait_for_a_card(
        running: Running, http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    orders = await push(http, running, "E2", 3, "&current=16000,16000,16000")
    assert orders["charging_current"] > 0
    assert (await device(http, running, "E2"))["needs_auth"] is False
    await add_user(http, running, "alice", ["1234"], ["E2"])

    async def waiting() -> bool:
        e2 = await device(http, running, "E2")
        return bool(e2["needs_auth"] and e2["evse"]["current"] == 0)

    await wait_for(waiting)
    assert (await push(http, running, "E2", 3))["charging_current"] == 0
    status, body = await call(http, running, "cmd=enter_rfid&rfid=1234")
    assert status == 200 and body["dev_id"] == "E2"
    assert (await push(http, running, "E2", 3))["charging_current"] > 0


async def test_refusals_are_clear(running: Running, http: aiohttp.ClientSession) -> None:
    await site_with_user(http, running)
    await add_evse(http, running, "E3")
    status, body = await call(http, running, "cmd=set_user", {
        "name": "eve", "dev_ids": ["E3"], "rfids": [{"id": "666"}, {"id": "667",
                                                                    "ac_auth": False}]})
    assert status == 200, body
    await push(http, running, "E2", 2)
    # A user who is not allowed at E2.
    status, body = await call(http, running, "cmd=enter_rfid&rfid=666&dev_id=E2")
    assert status == 403 and "E2" in body["error"]
    status, body = await call(http, running, "cmd=enter_rfid&rfid=666")
    assert status == 403
    # A card that does not authorise, at an EVSE the user may use.
    status, body = await call(http, running, "cmd=set_user", {
        "name": "carl", "dev_ids": ["E2"], "rfids": [{"id": "555", "ac_auth": False}]})
    status, body = await call(http, running, "cmd=enter_rfid&rfid=555&dev_id=E2")
    assert status == 403 and "does not authorise" in body["error"]
    assert (await push(http, running, "E2", 2))["charging_current"] == 0
    # Bad parameters.
    assert (await call(http, running, "cmd=enter_rfid"))[0] == 400
    assert (await call(http, running, "cmd=enter_rfid&rfid=1234&dev_id=E9"))[0] == 404
    assert (await call(http, running, "cmd=enter_rfid&rfid=1234&dev_id=M1"))[0] == 400
    # Once authorised, another user's card cannot take the session over.
    assert (await call(http, running, "cmd=enter_rfid&rfid=1234&dev_id=E2"))[0] == 200
    status, body = await call(http, running, "cmd=set_user", {
        "name": "dora", "dev_ids": ["E2"], "rfids": [{"id": "777"}]})
    status, body = await call(http, running, "cmd=enter_rfid&rfid=777&dev_id=E2")
    assert status == 409
    # Nobody waiting any more.
    status, body = await call(http, running, "cmd=enter_rfid&rfid=777")
    assert status == 409 and "waiting" in body["error"]
    assert running.app.manager.auth_count == 1


async def test_card_reader_fixed_rfid_and_card_before_plug(
        running: Running, http: aiohttp.ClientSession) -> None:
    uid = await site_with_user(http, running)
    # The EVSE's own reader (here: the pushed rfid) authorises.
    orders = await push(http, running, "E2", 2, "&rfid=1234")
    assert orders["charging_current"] > 0
    assert (await device(http, running, "E2"))["user_id"] == uid
    await push(http, running, "E2", 1)
    # An unknown card at the reader is refused (and logged).
    assert (await push(http, running, "E2", 2, "&rfid=0000"))["charging_current"] == 0
    await push(http, running, "E2", 1)
    # A card entered for E2 before the car arrives counts at plug-in.
    status, body = await call(http, running, "cmd=enter_rfid&rfid=1234&dev_id=E2")
    assert status == 200 and body["pending"] is True and body["authorised"] is False
    assert (await push(http, running, "E2", 2))["charging_current"] > 0
    await push(http, running, "E2", 1)
    # The EVSE's fixed RFID authorises every plug-in.
    await add_evse(http, running, "E2", fixed_rfid="1234")
    assert (await push(http, running, "E2", 2))["charging_current"] > 0
    assert running.app.manager.auth_count == 3


async def test_an_unknown_card_is_refused_only_where_a_card_is_needed(
        running: Running, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    await site_with_user(http, running)
    await add_evse(http, running, "E3")
    caplog.set_level(logging.DEBUG, logger="chargebrain.sessions")
    # E3 has no users: anyone charges, and a card no one has (a wallbox's own tag in free
    # charging) is no refusal worth a warning.
    assert (await push(http, running, "E3", 2, "&rfid=0000"))["charging_current"] > 0
    assert (await device(http, running, "E3"))["user_id"] == ""
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # At E2, which needs a card, the same card is refused with a warning.
    assert (await push(http, running, "E2", 2, "&rfid=0000"))["charging_current"] == 0
    await wait_for(lambda: any("refused" in r.getMessage() and r.levelno == logging.WARNING
                               for r in caplog.records))


async def test_override_c_stops_charging_until_unplug(running: Running,
                                                      http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    assert (await push(http, running, "E2", 3))["charging_current"] == 16000
    status, body = await call(http, running, "cmd=override_device&dev_id=E2&flags=C")
    assert status == 200 and body["overrides"] == 1
    assert (await push(http, running, "E2", 3))["charging_enabled"] is False
    assert (await device(http, running, "E2"))["overrides"] == 1
    # E and U are reported as bits 2 and 4; c undoes C.
    status, body = await call(http, running, "cmd=override_device&dev_id=E2&flags=EU")
    assert body["overrides"] == 7
    status, body = await call(http, running, "cmd=override_device&dev_id=E2&flags=ceu")
    assert body["overrides"] == 0
    assert (await push(http, running, "E2", 3))["charging_enabled"] is True
    await call(http, running, "cmd=override_device&dev_id=E2&flags=C")
    # Unplug clears the overrides.
    await push(http, running, "E2", 1)
    assert (await device(http, running, "E2"))["overrides"] == 0
    assert (await push(http, running, "E2", 3))["charging_current"] == 16000


async def test_override_current(running: Running, http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2", max_charging_cur=32000)
    await push(http, running, "E2", 3)
    # Home Assistant sends the limit as a float literal.
    status, body = await call(http, running, "cmd=override_device&dev_id=E2&mamps=6000.0")
    assert status == 200 and body["ov_cur"] == 6000
    assert (await push(http, running, "E2", 3))["charging_current"] == 6000
    assert (await device(http, running, "E2"))["ov_cur"] == 6000
    for bad in ("3000", "-5", "abc", "1e9", "nan"):
        status, body = await call(http, running, f"cmd=override_device&dev_id=E2&mamps={bad}")
        assert status == 400, (bad, body)
    assert (await device(http, running, "E2"))["ov_cur"] == 6000
    for bad in ("cmd=override_device&dev_id=E2", "cmd=override_device&dev_id=E2&flags=X",
                "cmd=override_device&flags=C", "cmd=override_device&dev_id=M1&flags=C"):
        status, _ = await call(http, running, bad)
        assert status in (400, 404), bad
    # 0 removes the limit.
    status, body = await call(http, running, "cmd=override_device&dev_id=E2&mamps=0")
    assert status == 200 and body["ov_cur"] == 0
    assert (await push(http, running, "E2", 3))["charging_current"] == 32000


async def test_override_permissions(running: Running, http: aiohttp.ClientSession) -> None:
    await site_with_user(http, running)
    await add_user(http, running, "zed", ["999"], ["E2"])
    await push(http, running, "E2", 2)
    await call(http, running, "cmd=enter_rfid&rfid=1234")
    await set_password(http, running)
    query = "cmd=override_device&dev_id=E2"
    # Neither admin nor the session user's card: 401 with a Basic challenge.
    async with http.get(running.url(query + "&flags=C")) as resp:
        assert resp.status == 401 and "Basic" in resp.headers["WWW-Authenticate"]
    assert (await call(http, running, query + "&flags=C&rfid=999"))[0] == 401
    assert (await call(http, running, query + "&flags=C&rfid=0"))[0] == 401
    # The session user's own card: C/c, U/u and mamps, but not E/e.
    status, body = await call(http, running, query + "&flags=C&rfid=1234")
    assert status == 200 and body["overrides"] == 1
    status, body = await call(http, running, query + "&flags=cU&mamps=8000&rfid=1234")
    assert status == 200 and body == {"dev_id": "E2", "overrides": 4, "ov_cur": 8000}
    assert (await call(http, running, query + "&flags=E&rfid=1234"))[0] == 401
    assert (await device(http, running, "E2"))["overrides"] == 4
    status, body = await call(http, running, query + "&flags=Eu", headers=ADMIN)
    assert status == 200 and body["overrides"] == 2


async def test_card_with_ac_ovch_toggles_charging(running: Running,
                                                  http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    status, _ = await call(http, running, "cmd=set_user", {
        "name": "tim", "dev_ids": ["E2"],
        "rfids": [{"id": "1", "ac_auth": True}, {"id": "2", "ac_auth": False, "ac_ovch": True}]})
    assert status == 200
    await push(http, running, "E2", 2)
    assert (await call(http, running, "cmd=enter_rfid&rfid=1"))[0] == 200
    status, body = await call(http, running, "cmd=enter_rfid&rfid=2&dev_id=E2")
    assert status == 200 and body["overrides"] == 1
    assert (await push(http, running, "E2", 2))["charging_enabled"] is False
    status, body = await call(http, running, "cmd=enter_rfid&rfid=2")
    assert status == 200 and body["overrides"] == 0
    assert (await push(http, running, "E2", 2))["charging_enabled"] is True


async def test_soft_meter(running: Running, http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    await push(http, running, "E2", 1)
    status, old = await call(http, running, "cmd=soft_meter&dev_id=E2")
    assert status == 200 and old == 0
    status, old = await call(http, running, "cmd=soft_meter&dev_id=E2&val=12345")
    assert status == 200 and old == 0
    assert (await call(http, running, "cmd=soft_meter&dev_id=E2&val=%2212000.0%22"))[1] == 12345
    assert (await device(http, running, "E2"))["total_energy"] == 12000
    for bad in ("&val=-1", "&val=x", "&val=inf"):
        assert (await call(http, running, "cmd=soft_meter&dev_id=E2" + bad))[0] == 400
    assert (await call(http, running, "cmd=soft_meter"))[0] == 400
    assert (await call(http, running, "cmd=soft_meter&dev_id=M1"))[0] == 400
    assert (await call(http, running, "cmd=soft_meter&dev_id=E2"))[1] == 12000
    # During a session a new reading keeps the session's energy.
    await push(http, running, "E2", 2)
    await call(http, running, "cmd=soft_meter&dev_id=E2&val=20000")
    e2 = await device(http, running, "E2")
    assert e2["total_energy"] == 20000 and e2["ta_en"] == 0
    await set_password(http, running)
    assert (await call(http, running, "cmd=soft_meter&dev_id=E2"))[0] == 401


async def test_transactions_csv_admin_and_own(running: Running,
                                              http: aiohttp.ClientSession) -> None:
    uid = await site_with_user(http, running)
    other = await add_user(http, running, "otto", ["88"], ["E2"])
    for card in ("1234", "88", "1234"):
        await push(http, running, "E2", 2)
        assert (await call(http, running, f"cmd=enter_rfid&rfid={card}"))[0] == 200
        await push(http, running, "E2", 1)
    await call(http, running, "cmd=set_user", {"id": other, "name": "=HYPERLINK(1)"})
    await set_password(http, running)
    everything = await transactions(http, running, headers=ADMIN)
    assert [r["user_id"] for r in everything] == [uid, other, uid]
    assert everything[1]["user_name"] == "'=HYPERLINK(1)"
    own = await transactions(http, running, f"&user_id={uid}")
    assert [r["id"] for r in own] == [everything[0]["id"], everything[2]["id"]]
    assert {r["user_id"] for r in own} == {uid}
    for query in ("", "&user_id=1000000000", "&user_id=bad!"):
        async with http.get(running.url("cmd=get_transactions" + query)) as resp:
            assert resp.status in (400, 401), query


async def test_running_transaction_is_written_every_minute(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, clock = virtual
    store = running.app.store
    await add_evse(http, running, "E2")
    await push(http, running, "E2", 3, "&total_energy=1000")
    await push(http, running, "E2", 3, "&total_energy=1600")

    def row() -> tuple[float, float, float]:
        end_wh, updated, start = store.query(
            "SELECT end_wh, updated_time, start_time FROM transactions")[0]
        return end_wh, updated, start

    assert row()[0] == 1000  # plug-in values only, so far
    clock.advance(61)
    await push(http, running, "E2", 3, "&total_energy=1700")
    await wait_for(lambda: row()[0] == 1700)
    _, updated, start = row()
    assert updated - start >= 61
    # A restart now would close it (if the car were gone) at that update, with 1700 Wh.
    rows = await transactions(http, running)
    assert rows[0]["end"] == "" and rows[0]["end_wh"] == "1700"
    assert rows[0]["energy_wh"] == "700" and int(rows[0]["duration_s"]) >= 61
