"""Charger definitions through the API and the manager: listed by get_dev_types, a
wallbox device that the manager reads and commands, a user upload, line-accurate errors
of a bad upload, and a box that stops answering (a communication error, never a crash)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from chargebrain.sim.wallboxes.modbus_boxes import Heidelberg
from chargebrain.sim.wallboxes.vestel import WebastoNext
from tests.chargers.conftest import served
from tests.conftest import Running, wait_for
from tests.manager.test_manager_http import add, call, dev

BUNDLED = ("evse_heidelberg", "evse_abl_emh1", "evse_alfen_evepro", "evse_mennekes_hcc3",
           "evse_phoenix_ev_eth", "evse_wallbe", "evse_vestel_evc04", "evse_smartevse",
           "evse_go_e_homeplus_mobile", "evse_webasto_next", "evse_keba_c_x")

UPLOAD = b"""// a user's own wallbox: Webasto Next's map under another name
{
  rtype: 0, mtype: 8, dev_type: "my_box", name: "My box",
  modbus_read: 3,
  state: {address: 1000, type: "uint16", map: {"0": "A", "1": "B", "3": "C", "4": "B"}},
  current_l1: {address: 1008, type: "uint16"},
  set_current: [{address: 5004, value: "amps"}],
  disable: [{address: 5004, value: 0}],
}
"""


async def test_bundled_wallboxes_are_device_types(running: Running,
                                                 http: aiohttp.ClientSession) -> None:
    _, types = await call(http, running, "cmd=get_dev_types")
    assert set(BUNDLED) <= set(types)
    assert types["evse_heidelberg"] == "Heidelberg Energy Control"


async def test_the_manager_drives_a_defined_wallbox(running: Running,
                                                   http: aiohttp.ClientSession) -> None:
    box = Heidelberg(unit=1, now=time.monotonic)
    box.plug()
    async with served(box, "rtu") as (address, server):
        await add(http, running, {"dev_type": "evse_heidelberg", "dev_id": "E2", "name": "hd",
                                  "address": address, "id": 1})

        async def charging() -> dict[str, Any] | None:
            d = await dev(http, running, "E2")
            return d if d["state"] == 3 and d["current_l1"] > 0 else None

        e2 = await wait_for(charging, timeout=10)
        assert e2["com_err"] is False and box.limit_ma >= 6000
        server.silent = True

        async def lost() -> dict[str, Any] | None:
            d = await dev(http, running, "E2")
            return d if d["com_err"] else None

        e2 = await wait_for(lost, timeout=15)
        assert "no answer" in e2["last_error"]


async def test_an_uploaded_charger_definition(running: Running,
                                             http: aiohttp.ClientSession) -> None:
    async with http.post(running.url("cmd=set_meter_def"), data=UPLOAD) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["dev_type"] == "evse_my_box"
    _, types = await call(http, running, "cmd=get_dev_types")
    assert types["evse_my_box"] == "My box"
    box = WebastoNext(unit=255, now=time.monotonic)
    box.plug()
    async with served(box) as (address, _):
        await add(http, running, {"dev_type": "evse_my_box", "dev_id": "E3", "name": "mine",
                                  "address": address, "id": 255})

        async def charging() -> dict[str, Any] | None:
            d = await dev(http, running, "E3")
            return d if d["state"] == 3 else None

        await wait_for(charging, timeout=10)
    bad = UPLOAD.replace(b'value: "amps"', b'value: "amps + nonsense"')
    async with http.post(running.url("cmd=set_meter_def"), data=bad) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == (
            "invalid meter definition: line 7, field 'set_current[0].value': 'nonsense' is "
            "neither a variable of this definition nor one of current_ma, current_a, amps, "
            "enabled, phases")
    bad = UPLOAD.replace(b'"3": "C"', b'"3": "X"')
    async with http.post(running.url("cmd=set_meter_def"), data=bad) as resp:
        assert resp.status == 400
        assert "line 5, field 'state.map.3': must be one of A, B, C, D, E, F" in (
            (await resp.json())["error"])
    no_state = UPLOAD.replace(b"state:", b"status:")
    async with http.post(running.url("cmd=set_meter_def"), data=no_state) as resp:
        assert resp.status == 400
        assert "needs a 'state' variable" in (await resp.json())["error"]
