"""Bad `cmd=modbus` requests get a 4xx JSON error and change nothing."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import Running, observe_only

BAD = [
    ("cmd=modbus&device=charger&read=8002", 400),
    ("cmd=modbus&device=meter1", 400),
    ("cmd=modbus&device=meter1&read=9000", 400),
    ("cmd=modbus&device=meter1&read=8048", 400),  # a gap
    ("cmd=modbus&device=meter1&read=80x2", 400),
    ("cmd=modbus&device=meter1&read=8002&count=500", 400),
    ("cmd=modbus&device=meter1&read=8002&count=abc", 400),
    ("cmd=modbus&device=meter1&write=8002&value=5", 400),  # read-only
    ("cmd=modbus&device=evse&write=8093&value=59", 400),  # below 6 A
    ("cmd=modbus&device=evse&write=8093&value=631", 400),  # above 63 A
    ("cmd=modbus&device=evse&write=8093&value=1.5", 400),
    ("cmd=modbus&device=evse&write=8093&value=", 400),
    ("cmd=modbus&device=evse&write=8093", 400),
    ("cmd=modbus&device=evse&write=8094&value=2", 400),
    ("cmd=modbus&device=evse&write=8044&values=[7,230,999,230]", 400),
    ("cmd=modbus&device=meter1&write=8093&value=100", 400),  # EVSE register on a meter
    ("cmd=modbus&device=evse&write=8058q&value=5", 400),  # energy read-only on the EVSE
    ("cmd=modbus&device=evse&write=8093&value=70000", 400),
    ("cmd=nosuchcommand", 404),
]


@pytest.mark.parametrize(("query", "status"), BAD)
async def test_bad_request_changes_nothing(
    running: Running, http: aiohttp.ClientSession, query: str, status: int
) -> None:
    await observe_only(running)
    before = {name: bank.snapshot() for name, bank in running.app.powerbrain.banks.items()}
    async with http.get(running.url(query)) as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert isinstance(body, dict | str)
    if isinstance(body, dict):
        assert body["error"]
    after = {name: bank.snapshot() for name, bank in running.app.powerbrain.banks.items()}
    assert before == after


async def test_multi_write_is_all_or_nothing(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await observe_only(running)
    bank = running.app.powerbrain.banks["meter1"]
    async with http.get(running.url("cmd=modbus&device=meter1&write=8044&values=[3,240,50]")) as r:
        assert r.status == 400
    assert bank.get("phases") == 1
    assert bank.get("voltage_l1") == 230
