"""Every `cmd=modbus` example of the original API document, against the running app."""

from __future__ import annotations

import aiohttp

from tests.conftest import Running


async def get(http: aiohttp.ClientSession, running: Running, query: str) -> tuple[int, object]:
    async with http.get(running.url(query)) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def test_read_product_id(running: Running, http: aiohttp.ClientSession) -> None:
    assert await get(http, running, "cmd=modbus&device=meter1&read=8002") == (200, 1)


async def test_read_power_of_meter_without_pulses(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    assert await get(http, running, "cmd=modbus&device=meter1&read=8062d") == (200, -1)


async def test_read_name_string(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    assert await get(http, running, "cmd=modbus&device=meter1&read=8016s") == (
        200, "cFos Power Brain")


async def test_read_count(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    status, value = await get(http, running, "cmd=modbus&device=meter1&read=8002&count=10")
    assert status == 200
    assert isinstance(value, list)
    assert value[:6] == [1, 257, 256, 0, 256, 0]
    serial = running.app.powerbrain.serial
    expected = [(ord(serial[i]) << 8) | ord(serial[i + 1]) for i in range(0, 8, 2)]
    assert value[6:] == expected


async def test_read_all_meter2(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    status, value = await get(http, running, "cmd=modbus&device=meter2&read=all")
    assert status == 200
    assert isinstance(value, dict)
    documented = {"8000d": -821755904, "8002": 1, "8003": 257, "8004": 16777216, "8006": 256,
                  "8007": 0, "8008s": "fcf5-c46d-310c", "8016s": "cFos Power Brain",
                  "8040": 41, "8041": 1, "8042d": 1000, "8044": 1, "8045": 230, "8046": 230,
                  "8047": 230, "8050q": 0, "8054d": 0, "8056": 0, "8057": 0, "8058q": 0,
                  "8062d": -1, "8064d": 0, "8066d": 0, "8068d": 0, "8070": 0, "8071": 0,
                  "8120d": 0}
    # Same keys in the same order, same types.
    assert list(value) == list(documented)
    for key, doc_value in documented.items():
        assert type(value[key]) is type(doc_value), key
    # Identity and idle values as documented; state-dependent ones checked for shape.
    for key in ("8000d", "8002", "8003", "8004", "8006", "8007", "8016s", "8041", "8042d",
                "8044", "8045", "8046", "8047", "8050q", "8054d", "8057", "8058q", "8062d",
                "8064d", "8066d", "8068d", "8070", "8071"):
        assert value[key] == documented[key], key
    assert value["8008s"] == running.app.powerbrain.serial
    assert len(value["8008s"]) == 14 and value["8008s"].count("-") == 2
    assert value["8040"] == 3  # slave id of S0 meter 2
    assert value["8120d"] >= 1  # restarts counted since the first start


async def test_write_examples(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    assert await get(http, running, "cmd=modbus&device=evse&write=8044&value=7") == (200, "ok")
    assert await get(http, running, 'cmd=modbus&device=evse&write=8050q&value=1"') == (200, "ok")
    status, body = await get(http, running, 'cmd=modbus&device=evse&write=8044d&value=1"')
    assert body == "bad modbus register size"
    assert status == 400
    assert await get(
        http, running, "cmd=modbus&device=evse&write=8044&values=[7,230,230,230 ]"
    ) == (200, "ok")
    bank = running.app.powerbrain.banks["evse"]
    assert bank.get("phases") == 7
    assert bank.get("pulses") == 1
    assert [bank.get(f"voltage_l{i}") for i in (1, 2, 3)] == [230, 230, 230]


async def test_post_form_works_like_get(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    async with http.post(running.url("cmd=modbus"), data={"device": "meter1", "read": "8002"}) as r:
        assert await r.json() == 1
    async with http.post(running.url("cmd=modbus&device=meter1&write=8045&value=231")) as r:
        assert await r.json() == "ok"
    assert running.app.powerbrain.banks["meter1"].get("voltage_l1") == 231
