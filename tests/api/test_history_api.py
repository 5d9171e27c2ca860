"""get_history over HTTP: the recorder samples every 10 s at the end of a cycle, the
coarser steps close as time goes on, and the answer comes in the asked buckets."""

from __future__ import annotations

from typing import Any

import aiohttp

from chargebrain.clock import VirtualClock
from tests.conftest import Running


async def get(http: aiohttp.ClientSession, running: Running, query: str) -> tuple[int, Any]:
    async with http.get(running.url(query)) as resp:
        return resp.status, await resp.json()


async def test_history_records_pushed_values(virtual: tuple[Running, VirtualClock],
                                             http: aiohttp.ClientSession) -> None:
    running, clock = virtual
    mgr = running.app.manager
    await http.post(running.url("cmd=set_device"),
                    json={"devices": [{"dev_type": "evse_ajax", "name": "Garage"}]})
    dev = next(d for d, rt in mgr.devices.items() if rt.settings.name == "Garage")
    start = int(clock.now()) // 60 * 60 + 60
    clock.set(start - 5)  # the EVSE answers before the first sample is due
    await http.get(running.url(f"cmd=set_ajax_evse&dev_id={dev}&state=3&current=6000,0,0"))
    await mgr.wait_cycle()
    clock.set(start)
    for i in range(13):  # two minutes and 10 s at one sample per 10 s
        await http.get(running.url(
            f"cmd=set_ajax_evse&dev_id={dev}&state=3&current={6000 + 1000 * (i // 6)},0,0"
            f"&power_w={1000 + 100 * i}"))
        await mgr.wait_cycle()
        clock.advance(10)
    status, answer = await get(http, running, f"cmd=get_history&from={start}&to={start + 130}"
                               f"&series={dev.lower()},grid&points=13")
    assert status == 200
    series = {s["id"]: s for s in answer["series"]}
    assert answer["step"] == 10
    assert series[dev]["t"][:2] == [start, start + 10]
    assert series[dev]["power_w"][:3] == [1000.0, 1100.0, 1200.0]
    assert series[dev]["current_l1"][0] == 6000.0
    assert series[dev]["name"] == "Garage"
    assert len(series["grid"]["t"]) == 13
    assert {"id": dev, "name": "Garage", "site": False} in answer["available"]
    # The minute step closed when the seventh sample came: the mean of the first six.
    rows = running.app.history.store.read([dev], start, start + 130, 60, start + 3 * 86400)
    assert rows[0].t[0] == start and rows[0].power_w[0] == 1250.0


async def test_bad_ranges_are_refused(running: Running, http: aiohttp.ClientSession) -> None:
    for query, words in (("from=10&to=5", "before"), ("from=x", "from"),
                         ("points=3", "points"), ("series=a;b", "series"),
                         ("from=0&to=99999999999", "20 years")):
        status, answer = await get(http, running, f"cmd=get_history&{query}")
        assert status == 400, query
        assert words in answer["error"], query


async def test_check_rules_names_the_rule(running: Running, http: aiohttp.ClientSession) -> None:
    async with http.post(running.url("cmd=check_rules"),
                         json=[{"mode": 0, "current": 8000}, {"expr": "8000 +"}]) as resp:
        answer = await resp.json()
    assert resp.status == 200
    assert answer["ok"] is False
    assert answer["errors"][0].startswith("rule 2: expr:")
    async with http.post(running.url("cmd=check_rules"), json=[{"expr": "E9.power"}]) as resp:
        assert (await resp.json())["ok"] is False  # no such device here
    async with http.post(running.url("cmd=check_rules"), json=[{"expr": "8000"}]) as resp:
        assert await resp.json() == {"ok": True, "errors": []}
    async with http.post(running.url("cmd=check_rules"), data="5") as resp:
        assert resp.status == 400


async def test_get_user_by_pin(running: Running, http: aiohttp.ClientSession) -> None:
    async with http.post(running.url("cmd=set_user"),
                         json={"name": "Alice", "rfids": [{"id": "4711"}]}) as resp:
        alice = await resp.json()
    running.app.store.set_setting("admin_pwd", "")  # the admin asks without a password
    from chargebrain.api.auth import set_admin_password
    set_admin_password(running.app.store, "pw-of-the-admin")
    status, answer = await get(http, running, "cmd=get_user&rfid=4711")
    assert status == 200 and answer["id"] == alice["id"]
    status, answer = await get(http, running, "cmd=get_user&rfid=0000")
    assert status == 401
