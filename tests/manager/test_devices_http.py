"""Device families through the API: meters from definitions, groups, virtual meters."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import Running, wait_for
from tests.devices.test_defined_meter import SHELLY_STATUS, http_server
from tests.manager.test_manager_http import add, call, dev

ABB_LIKE = b"""// A tiny user meter definition: one HTTP JSON document
{
  "rtype": 1, "mtype": 1, "name": "Test JSON meter", "manufacturer": "Test",
  "dev_type": "test_json",
  "power_w": {"address": "/data", "query": "p"},
  "current_l1": {"address": "/data", "query": "i[0]", "resolution": 1000},
  "current_l2": {"address": "/data", "query": "i[1]", "resolution": 1000},
  "current_l3": {"address": "/data", "query": "i[2]", "resolution": 1000},
  "import_wh": {"address": "/data", "query": "e"},
}
"""


async def test_shelly_meter_device_over_http(running: Running, http: aiohttp.ClientSession) -> None:
    async def status(_request: web.Request) -> web.Response:
        return web.json_response(SHELLY_STATUS)

    shelly = web.Application()
    shelly.router.add_get("/status", status)
    async with http_server(shelly) as port:
        await add(http, running, {"dev_type": "meter_shelly_3em_http_json", "dev_id": "M5",
                                  "name": "Shelly", "address": f"127.0.0.1:{port}", "role": 0})

        async def read() -> dict[str, Any] | None:
            d = await dev(http, running, "M5")
            return d if d["power_w"] else None

        m5 = await wait_for(read, timeout=5)
    assert m5["power_w"] == 6038
    assert m5["com_err"] is False
    assert m5["import"] == 12001


async def test_uploaded_definition_becomes_a_device_type(running: Running,
                                                        http: aiohttp.ClientSession) -> None:
    async with http.post(running.url("cmd=set_meter_def"), data=ABB_LIKE) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["dev_type"] == "meter_test_json"
    _, types = await call(http, running, "cmd=get_dev_types")
    assert types["meter_test_json"] == "Test JSON meter"

    async def data(_request: web.Request) -> web.Response:
        return web.json_response({"p": 1150, "i": [5.0, 0, 0], "e": 4321})

    meter = web.Application()
    meter.router.add_get("/data", data)
    async with http_server(meter) as port:
        await add(http, running, {"dev_type": "meter_test_json", "dev_id": "M6", "name": "t",
                                  "address": f"http://127.0.0.1:{port}"})

        async def read() -> dict[str, Any] | None:
            d = await dev(http, running, "M6")
            return d if d["power_w"] == 1150 else None

        m6 = await wait_for(read, timeout=5)
    assert m6["current_l1"] == 5000 and m6["import"] == 4321
    # A broken upload is refused and changes nothing.
    async with http.post(running.url("cmd=set_meter_def"), data=b"{ nonsense") as resp:
        assert resp.status == 400
        assert "line 1" in (await resp.json())["error"]
    bad = ABB_LIKE.replace(b'"i[1]", "resolution": 1000', b'"i[1]", "resolution": 0')
    async with http.post(running.url("cmd=set_meter_def"), data=bad) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == (
            "invalid meter definition: line 7, field 'current_l2.resolution': must not be 0"
        )
    bad = ABB_LIKE.replace(b'"query": "e"}', b'"query": "e"}, "x": {"expr": "import_wh *"}')
    async with http.post(running.url("cmd=set_meter_def"), data=bad) as resp:
        assert resp.status == 400
        assert "line 9, field 'x.expr': expression 'import_wh *': unexpected end" in (
            (await resp.json())["error"]
        )
    status, _ = await call(http, running, "cmd=del_meter_def&dev_type=test_json")
    assert status == 400  # still used by M6
    await call(http, running, "cmd=del_device&dev_id=M6")
    status, _ = await call(http, running, "cmd=del_meter_def&dev_type=test_json")
    assert status == 200
    _, types = await call(http, running, "cmd=get_dev_types")
    assert "meter_test_json" not in types


async def test_group_limits_its_members(running: Running, http: aiohttp.ClientSession) -> None:
    await call(http, running, "cmd=set_params", {"max_total_current": 63000, "disable_policy": 0,
                                                 "max_imbalance_cur": 0})
    await add(http, running, {"dev_id": "E1", "device_enabled": 0})
    await add(http, running, {"dev_type": "evse_group", "dev_id": "E10", "name": "Carport",
                              "max_charging_cur": 20000})
    for n in (2, 3):
        await add(http, running, {"dev_type": "evse_ajax", "dev_id": f"E{n}", "name": f"Sim-{n}",
                                  "max_charging_cur": 32000, "group": 10, "used_phases": 7})
    given = {"E2": 0, "E3": 0}
    for _ in range(4):
        for d in ("E2", "E3"):
            g = given[d]
            _, a = await call(http, running, f"cmd=set_ajax_evse&dev_id={d}&state=3"
                              f"&current={g},{g},{g}")
            given[d] = a["charging_current"]
    assert given["E2"] + given["E3"] <= 20000
    assert given["E2"] >= 6000 and given["E3"] >= 6000
    e10 = await dev(http, running, "E10")
    assert e10["dev_type"] == "evse_group" and e10["is_evse"] is True
    # A group with members cannot be deleted; a group that does not exist cannot be joined.
    status, body = await call(http, running, "cmd=del_device&dev_id=E10")
    assert status == 400 and "members" in body["error"]
    status, _ = await call(http, running, "cmd=set_params",
                           {"devices": [{"dev_id": "E2", "group": 11}]})
    assert status == 400


async def test_virtual_meters(running: Running, http: aiohttp.ClientSession) -> None:
    await add(http, running, {"dev_type": "meter_ajax", "dev_id": "M3", "name": "grid",
                              "role": 3})
    await add(http, running, {"dev_type": "meter_virtual_grid_demand", "dev_id": "M4",
                              "name": "grid demand"})
    await add(http, running, {"dev_type": "meter_virtual_available_evse_power", "dev_id": "M5",
                              "name": "available"})
    await add(http, running, {"dev_type": "meter_expression", "dev_id": "M6",
                              "name": "double grid", "expr": "M3.power_w * 2"})
    await call(http, running, "cmd=set_ajax_meter&dev_id=M3&power_w=2300&current=10000,0,0")

    async def ready() -> dict[str, Any] | None:
        got = {d: await dev(http, running, d) for d in ("M4", "M5", "M6")}
        return got if got["M4"]["power_w"] == 2300 and got["M6"]["power_w"] else None

    got = await wait_for(ready, timeout=5)
    assert got["M6"]["power_w"] == 4600
    assert got["M5"]["power_w"] > 0


async def test_reset_device(running: Running, http: aiohttp.ClientSession) -> None:
    await add(http, running, {"dev_type": "meter_ajax", "dev_id": "M3", "name": "feeder"})
    await call(http, running, "cmd=set_ajax_meter&dev_id=M3&power_w=100")
    status, body = await call(http, running, "cmd=reset_device&dev_id=M3")
    assert (status, body) == (200, "ok")
    m3 = running.app.manager.devices["M3"]
    assert m3.config.name == "feeder" and m3.meter is None
    status, _ = await call(http, running, "cmd=reset_device&dev_id=M99")
    assert status == 404
