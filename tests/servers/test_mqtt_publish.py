"""What chargebrain publishes on a real mosquitto broker: the state topics (retained,
only when changed), a device's own topic, transactions, log lines, the serial prefix."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest

from tests.conftest import Running, wait_for
from tests.mqtt_broker import Broker, mqtt_client

P = "cfos_mqtt"


async def post(http: aiohttp.ClientSession, site: Running, query: str, body: Any) -> Any:
    async with http.post(site.url(query), data=json.dumps(body)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_state_topics_are_retained_and_anonymous(mqtt_site: Running, broker: Broker,
                                                       http: aiohttp.ClientSession) -> None:
    await post(http, mqtt_site, "cmd=set_device",
               {"devices": [{"dev_id": "E1", "users": []}]})
    # A client that comes later still gets the state: the topics are retained.
    async with mqtt_client(broker, f"{P}/get/#", f"{P}/status") as client:
        info = (await client.wait(f"{P}/get/dev_info")).payload
        params = await client.wait(f"{P}/get/params")
        status = await client.wait(f"{P}/status")
    assert status.retain and bytes(status.payload) == b"online"
    doc = json.loads(info)
    assert {d["dev_id"] for d in doc["devices"]} >= {"E1", "M1", "M2"}
    e1 = next(d for d in doc["devices"] if d["dev_id"] == "E1")
    assert "user_id" not in e1 and "users" not in e1  # the view of a caller without password
    assert json.loads(params.payload)["vsn"]["serialno"] == (
        mqtt_site.app.powerbrain.serial)
    # Nothing per device unless asked for.
    assert not client.on(f"{P}/get/E1")


async def test_a_quiet_site_publishes_only_what_changed(mqtt_site: Running, broker: Broker,
                                                        http: aiohttp.ClientSession) -> None:
    app = mqtt_site.app
    async with mqtt_client(broker, f"{P}/get/params") as client:
        # The state after the first cycle (before it, nothing is available to the EVSEs).
        await client.wait(f"{P}/get/params", lambda p: p["avail_evse_power"] > 0)
        seen = len(client.on(f"{P}/get/params"))
        cycles = app.manager.cycle_count
        await wait_for(lambda: app.manager.cycle_count >= cycles + 3, timeout=15)
        # The time and the measured cycle period moved; nothing else did.
        assert len(client.on(f"{P}/get/params")) == seen
        await post(http, mqtt_site, "cmd=set_params", {"title": "Garage"})
        await client.wait(f"{P}/get/params", lambda p: p["title"] == "Garage")
    # Retained: a client that subscribes now gets the new state at once.
    async with mqtt_client(broker, f"{P}/get/params") as late:
        message = await late.wait(f"{P}/get/params")
    assert message.retain and json.loads(message.payload)["title"] == "Garage"


async def test_a_device_topic_when_the_device_asks_for_it(mqtt_site: Running, broker: Broker,
                                                          http: aiohttp.ClientSession) -> None:
    async with mqtt_client(broker, f"{P}/get/M3") as client:
        await post(http, mqtt_site, "cmd=set_device", {"devices": [
            {"dev_type": "meter_ajax", "dev_id": "M3", "name": "Grid", "role": 3,
             "mqtt_publish": True}]})
        async with http.get(mqtt_site.url("cmd=set_ajax_meter&dev_id=M3&power_w=2760"
                                          "&current=8000,2000,2000")) as resp:
            assert resp.status == 200
        message = await client.wait(f"{P}/get/M3", lambda p: p.get("power_w") == 2760)
        assert json.loads(message.payload)["current_l1"] == 8000
        async with mqtt_client(broker, f"{P}/get/M3") as late:
            assert (await late.wait(f"{P}/get/M3")).retain
        count = len(client.messages)
        await post(http, mqtt_site, "cmd=set_device",
                   {"devices": [{"dev_id": "M3", "mqtt_publish": False}]})
        # No longer published: its retained state is removed (an empty retained message).
        await client.wait(f"{P}/get/M3", lambda p: p == "", after=count)
    async with http.get(mqtt_site.url("cmd=get_devices")) as resp:
        devices = {d["dev_id"]: d for d in await resp.json()}
    assert devices["M3"]["mqtt_publish"] is False and devices["E1"]["mqtt_publish"] is False


async def test_a_transaction_is_published_when_it_ends(
        mqtt_site: Running, broker: Broker, http: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chargebrain")
    await post(http, mqtt_site, "cmd=set_device", {"devices": [
        {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Carport"}]})
    async with mqtt_client(broker, f"{P}/ta_log", f"{P}/log") as client:
        await client.publish(f"{P}/set/E2", json.dumps({"state": 2, "total_energy": 1000}))
        await client.wait(f"{P}/log", lambda line: "E2 (Carport): vehicle plugged in" in line)
        await client.publish(f"{P}/set/E2", json.dumps(
            {"state": 3, "current": [16000, 16000, 16000], "total_energy": 1500}))
        await wait_for(lambda: mqtt_site.app.manager.devices["E2"].evse.total_energy_wh == 1500,
                       timeout=10)
        await client.publish(f"{P}/set/E2", json.dumps({"state": 1, "total_energy": 1800}))
        message = await client.wait(f"{P}/ta_log")
    assert not message.retain
    doc = json.loads(message.payload)
    assert doc["dev_id"] == "E2" and doc["name"] == "Carport"
    assert doc["start_wh"] == 1000 and doc["end_wh"] == 1800 and doc["energy_wh"] == 800
    assert doc["start"].endswith("Z") and doc["end"].endswith("Z")
    assert "rfid" not in doc and "user_id" not in doc  # credentials stay off the broker


async def test_log_lines_at_info_and_above(mqtt_site: Running, broker: Broker,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="chargebrain")
    async with mqtt_client(broker, f"{P}/log") as client:
        logging.getLogger("chargebrain.test").debug("not this one")
        logging.getLogger("chargebrain.test").warning("a warning for the broker")
        message = await client.wait(f"{P}/log", lambda line: "a warning for the broker" in line)
    assert "WARNING chargebrain.test" in bytes(message.payload).decode()
    assert not any(b"not this one" in bytes(m.payload) for m in client.messages)


async def test_the_serial_prefix(mqtt_site: Running, broker: Broker,
                                 http: aiohttp.ClientSession) -> None:
    serial = mqtt_site.app.powerbrain.serial
    prefix = f"cfos_mqtt_{serial}"
    async with mqtt_client(broker, f"{prefix}/#") as client:
        await post(http, mqtt_site, "cmd=set_params", {"mqtt_serial_prefix": True})
        await client.wait(f"{prefix}/get/params")
        await client.wait(f"{prefix}/status", lambda p: p == "online")
        # Commands are taken under the new prefix.
        await client.publish(f"{prefix}/api/cmd=get_license", b"")
        await client.wait(f"{prefix}/api_res", lambda p: "license_accepted" in p)
