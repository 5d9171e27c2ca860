"""Device settings that cannot work are refused with a 400 naming why, and an attached
meter's energy counter is the EVSE's."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import Running, wait_for
from tests.manager.test_manager_http import add, call, dev


async def test_bad_port_in_an_address_is_a_400(running: Running,
                                              http: aiohttp.ClientSession) -> None:
    for dev_type, dev_id in (("evse_powerbrain", "E2"), ("meter_powerbrain", "M3")):
        status, body = await call(http, running, "cmd=set_device", {"devices": [
            {"dev_type": dev_type, "dev_id": dev_id, "address": "10.0.0.1:notaport"}]})
        assert status == 400 and "not a port number" in body["error"]
        assert dev_id not in running.app.manager.devices


async def test_remote_s0_meter_gets_the_unit_of_its_port(running: Running,
                                                        http: aiohttp.ClientSession) -> None:
    await add(http, running, {"dev_type": "meter_powerbrain", "dev_id": "M3",
                              "address": "10.0.0.1:4702"})
    await add(http, running, {"dev_type": "meter_powerbrain", "dev_id": "M4",
                              "address": "10.0.0.1:4703"})
    await add(http, running, {"dev_type": "meter_powerbrain", "dev_id": "M5",
                              "address": "10.0.0.1:4703", "id": 7})
    _, devices = await call(http, running, "cmd=get_devices")
    ids = {d["dev_id"]: d["id"] for d in devices}
    assert (ids["M3"], ids["M4"], ids["M5"]) == (2, 3, 7)


async def test_a_built_in_device_exists_once(running: Running,
                                            http: aiohttp.ClientSession) -> None:
    for doc in ({"dev_type": "evse_powerbrain", "dev_id": "E2", "address": "evse:"},
                {"dev_type": "meter_powerbrain", "dev_id": "M3", "address": "meter1"}):
        status, body = await call(http, running, "cmd=set_device", {"devices": [doc]})
        assert status == 400 and "already" in body["error"], body
        assert doc["dev_id"] not in running.app.manager.devices


async def test_unknown_user_ids_on_an_evse_are_refused(running: Running,
                                                      http: aiohttp.ClientSession) -> None:
    status, body = await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "evse_ajax", "dev_id": "E2", "users": ["1234567890"]}]})
    assert status == 400 and "no user 1234567890" in body["error"]
    status, user = await call(http, running, "cmd=set_user", {"name": "kim"})
    assert status == 200
    await add(http, running, {"dev_type": "evse_ajax", "dev_id": "E2", "users": [user["id"]]})


async def test_attached_meter_energy_is_the_evse_energy(running: Running,
                                                       http: aiohttp.ClientSession) -> None:
    await add(http, running, {"dev_type": "meter_ajax", "dev_id": "M3", "role": 4})
    await add(http, running, {"dev_type": "evse_ajax", "dev_id": "E2", "attach": "M3"})
    await call(http, running, "cmd=set_ajax_meter&dev_id=M3&power_w=3680&"
                              "current=16000,0,0&import_wh=123456")
    await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3")

    async def counted() -> dict[str, Any] | None:
        d = await dev(http, running, "E2")
        return d if d["total_energy"] == 123456 else None

    assert (await wait_for(counted))["current_l1"] == 16000
