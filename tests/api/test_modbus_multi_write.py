"""Several `write=`/`value=` pairs in one `cmd=modbus` request: applied in order as one
change; a pair aimed at a read-only register is skipped inside such a request."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from tests.conftest import Running, observe_only


async def get(http: aiohttp.ClientSession, running: Running, query: str) -> tuple[int, Any]:
    async with http.get(running.url(query)) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def test_start_charging_button(running: Running, http: aiohttp.ClientSession,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """What a real client's "start charging" sends: the first pair aims at 8092 (the
    read-only CP state); it is skipped, the second one is applied."""
    caplog.set_level(logging.INFO, logger="chargebrain")
    await observe_only(running)
    evse = running.app.powerbrain.banks["evse"]
    assert await get(http, running, "cmd=modbus&device=evse&write=8094&value=0") == (200, "ok")
    cp_state = evse.get("charge_pilot_state")
    answer = await get(http, running,
                       "cmd=modbus&device=evse&write=8092&value=2&write=8094&value=1")
    assert answer == (200, "ok")
    assert evse.get("charging_enable") == 1
    assert evse.get("charge_pilot_state") == cp_state
    assert any("8092" in r.getMessage() and "read-only" in r.getMessage()
               for r in caplog.records)


async def test_pairs_are_applied_in_order(running: Running, http: aiohttp.ClientSession) -> None:
    await observe_only(running)
    evse = running.app.powerbrain.banks["evse"]
    query = ("cmd=modbus&device=evse&write=8093&value=100&write=8094&value=0"
             "&write=8093&value=160")
    assert await get(http, running, query) == (200, "ok")
    assert evse.get("charging_cur_limit") == 160
    assert evse.get("charging_enable") == 0
    # `values=` pairs too; the n-th write takes the n-th value, whatever the order.
    query = "cmd=modbus&device=evse&write=8044&write=8094&values=[3,240]&value=1"
    assert await get(http, running, query) == (200, "ok")
    assert (evse.get("phases"), evse.get("voltage_l1"), evse.get("charging_enable")) == (3, 240, 1)


@pytest.mark.parametrize("query", [
    "write=8093&value=100&write=8094&value=2",  # 8094 is 0 or 1
    "write=8093&value=100&write=8093&value=59",  # below 6 A
    "write=8093&value=100&write=8094&value=abc",
    "write=8093&value=100&write=8044d&value=1",  # bad size
    "write=8093&value=100&write=8200&value=1",  # no register
    "write=8093&value=100&write=8094",  # a write without its value
    "write=8093&write=8094&value=1",
    "write=8092&value=2&write=8094&value=7",  # a skipped pair does not excuse the others
])
async def test_one_bad_pair_refuses_the_whole_request(
    running: Running, http: aiohttp.ClientSession, query: str
) -> None:
    await observe_only(running)
    before = {name: bank.snapshot() for name, bank in running.app.powerbrain.banks.items()}
    status, body = await get(http, running, f"cmd=modbus&device=evse&{query}")
    assert status == 400
    assert body == "bad modbus register size" or body["error"]
    after = {name: bank.snapshot() for name, bank in running.app.powerbrain.banks.items()}
    assert before == after


async def test_a_single_write_to_a_read_only_register_stays_refused(
    running: Running, http: aiohttp.ClientSession
) -> None:
    await observe_only(running)
    status, body = await get(http, running, "cmd=modbus&device=evse&write=8092&value=2")
    assert status == 400 and "read-only" in body["error"]


async def test_only_read_only_pairs_change_nothing(running: Running,
                                                   http: aiohttp.ClientSession) -> None:
    await observe_only(running)
    before = running.app.powerbrain.banks["evse"].snapshot()
    query = "cmd=modbus&device=evse&write=8092&value=2&write=8095&value=1"
    assert await get(http, running, query) == (200, "ok")
    assert running.app.powerbrain.banks["evse"].snapshot() == before


async def test_several_writes_in_a_form_body(running: Running,
                                             http: aiohttp.ClientSession) -> None:
    await observe_only(running)
    evse = running.app.powerbrain.banks["evse"]
    async with http.post(running.url("cmd=modbus&device=evse"),
                         data="write=8093&value=120&write=8094&value=0",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 200 and await r.json() == "ok"
    assert (evse.get("charging_cur_limit"), evse.get("charging_enable")) == (120, 0)
