"""modbus_get / modbus_set against simulated devices on real sockets: types, orders,
RTU over TCP, and every failure a clear 4xx JSON answer."""

from __future__ import annotations

import time

import aiohttp

from chargebrain.sim.wallboxes.modbus_boxes import Alfen, Amtron, Heidelberg
from tests.chargers.conftest import served
from tests.conftest import Running
from tests.manager.test_manager_http import call


async def test_reads_and_writes_of_each_type(running: Running,
                                             http: aiohttp.ClientSession) -> None:
    box = Alfen(unit=1, now=time.monotonic)
    box.energy_wh = 4321.25
    async with served(box) as (address, _):
        base = f"cmd=modbus_get&addr={address}&id=1"
        assert await call(http, running, f"{base}&reg=1201&type=s&cnt=5") == (200, "A")
        assert await call(http, running, f"{base}&reg=306&type=f") == (200, 230.0)
        assert await call(http, running, f"{base}&reg=0x132&type=f&cnt=3") == (
            200, [230.0, 230.0, 230.0])
        assert await call(http, running, f"{base}&reg=1215") == (200, 3)
        status, _ = await call(http, running, f"cmd=modbus_set&addr={address}&id=1&reg=1210"
                                              "&type=f&val=10.5")
        assert status == 200 and box.limit_ma == 10_500
        status, body = await call(http, running, f"{base}&reg=1210&type=f")
        assert body == 10.5
    amtron = Amtron(unit=255, now=time.monotonic)
    amtron.energy_wh = 70_000
    amtron.session_wh = 70_000
    async with served(amtron) as (address, _):
        status, body = await call(http, running, f"cmd=modbus_get&addr={address}&id=255"
                                                 "&func=4&reg=0x030D&type=d&order=lh")
        assert (status, body) == (200, 70_000)
        status, _ = await call(http, running, f"cmd=modbus_set&addr={address}&id=255&func=6"
                                              "&reg=0x0400&val=16")
        assert status == 200 and amtron.limit_ma == 16_000


async def test_rtu_over_tcp_and_failures(running: Running, http: aiohttp.ClientSession) -> None:
    box = Heidelberg(unit=2, now=time.monotonic)
    async with served(box, "rtu") as (address, server):
        base = f"cmd=modbus_get&addr={address}&id=2"
        assert await call(http, running, f"{base}&func=4&reg=4") == (200, 0x0108)
        status, body = await call(http, running, f"{base}&func=4&reg=3")
        assert status == 424 and "exception 2" in body["error"]
        status, body = await call(http, running, f"cmd=modbus_set&addr={address}&id=2&reg=261"
                                                 "&val=5")
        assert status == 424 and "exception 3" in body["error"]
        server.silent = True
        status, body = await call(http, running, f"{base}&func=4&reg=4&timeout=0.3")
        assert status == 424 and "no answer within 0.3 s" in body["error"]
    for query, word in [("addr=&reg=1", "addr"), ("addr=h:99999&reg=1", "addr"),
                        ("addr=h&reg=x", "reg"), ("addr=h&reg=1&func=6", "func"),
                        ("addr=h&reg=1&type=z", "type"), ("addr=h&reg=65535&type=d", "reg"),
                        ("addr=h&reg=1&order=xy", "order"), ("addr=h&reg=1&cnt=200", "cnt"),
                        ("addr=h&reg=1&timeout=60", "timeout")]:
        status, body = await call(http, running, f"cmd=modbus_get&{query}")
        assert status == 400 and word in body["error"], (query, body)
    status, body = await call(http, running, "cmd=modbus_set&addr=h&reg=1&type=d&func=6&val=1")
    assert status == 400 and "func 6" in body["error"]
    status, body = await call(http, running, "cmd=modbus_set&addr=h&reg=1&val=70000")
    assert status == 400 and "val" in body["error"]
