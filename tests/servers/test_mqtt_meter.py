"""A meter definition of MQTT type (rtype 2) as a meter: uploaded, made a device, fed by
messages on a real mosquitto broker through chargebrain's own connection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from chargebrain.app import App, Config
from tests.conftest import Running, free_ports, wait_for
from tests.mqtt_broker import Broker, mqtt_client

PLUG = """{
  // A Tasmota plug: one JSON message with the readings, the counter on its own topic
  rtype: 2, dev_type: "tasmota_plug", name: "Tasmota plug",
  power_w: {address: "tele/plug/SENSOR", query: "ENERGY.Power"},
  voltage_l1: {address: "tele/plug/SENSOR", query: "ENERGY.Voltage"},
  current_l1: {address: "tele/plug/SENSOR", query: "ENERGY.Current", resolution: 1000},
  import_wh: {address: "tele/plug/total", resolution: 1000},
  type_designation: {fixed: "Tasmota"},
}"""
SENSOR = {"ENERGY": {"Power": 1500, "Voltage": 231, "Current": 6.5}}


async def call(http: aiohttp.ClientSession, site: Running, query: str,
               body: str | None = None, status: int = 200) -> Any:
    async with http.post(site.url(query), data=body or b"") as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def meter(http: aiohttp.ClientSession, site: Running, dev_id: str) -> dict[str, Any]:
    info = await call(http, site, "cmd=get_dev_info")
    found: dict[str, Any] = next(d for d in info["devices"] if d["dev_id"] == dev_id)
    return found


async def test_an_mqtt_meter_reads_its_topics(mqtt_site: Running, broker: Broker,
                                              http: aiohttp.ClientSession) -> None:
    dev_type = (await call(http, mqtt_site, "cmd=set_meter_def", PLUG))["dev_type"]
    assert dev_type == "meter_tasmota_plug"
    async with mqtt_client(broker) as plug:
        # Published (retained) before the meter exists: it comes when it is subscribed.
        await plug.publish("tele/plug/SENSOR", json.dumps(SENSOR), retain=True)
        await call(http, mqtt_site, "cmd=set_device", json.dumps({"devices": [
            {"dev_type": dev_type, "dev_id": "M5", "address": "mqtt", "role": 1}]}))

        async def waiting() -> bool:
            m5 = await meter(http, mqtt_site, "M5")
            return m5["com_err"] and "topic tele/plug/total: no message yet" in m5["last_error"]

        # The counter's topic has no message yet: a communication error naming it.
        await wait_for(waiting, timeout=10)
        await plug.publish("tele/plug/total", "12.5")

        async def complete() -> bool:
            m5 = await meter(http, mqtt_site, "M5")
            return not m5["com_err"] and m5["import"] == 12500

        await wait_for(complete, timeout=10)
        m5 = await meter(http, mqtt_site, "M5")
        assert (m5["current_l1"], m5["voltage_l1"], m5["model"]) == (6500, 231, "Tasmota")
        await plug.publish("tele/plug/SENSOR", json.dumps(
            {"ENERGY": {"Power": 2000, "Voltage": 230, "Current": 8.7}}), retain=True)
        await wait_for(lambda: mqtt_site.app.manager.devices["M5"].meter is not None and
                       mqtt_site.app.manager.devices["M5"].meter.power_w == 2000, timeout=10)
        await plug.publish("tele/plug/SENSOR", b"", retain=True)  # clear the retained one
    feed = mqtt_site.app.mqtt.feed
    assert feed.topics() == {"tele/plug/SENSOR", "tele/plug/total"}
    await call(http, mqtt_site, "cmd=del_device&dev_id=M5")
    await wait_for(lambda: not feed.topics(), timeout=10)


async def test_an_mqtt_meter_needs_the_configured_broker(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    port = free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", port, 0))
    await app.start()
    site = Running(app, f"http://127.0.0.1:{port}", 0)
    try:
        dev_type = (await call(http, site, "cmd=set_meter_def", PLUG))["dev_type"]
        refused = await call(http, site, "cmd=set_device", json.dumps({"devices": [
            {"dev_type": dev_type, "dev_id": "M5", "address": "192.168.1.5"}]}), status=400)
        assert "an MQTT meter's address is 'mqtt'" in refused["error"]
        await call(http, site, "cmd=set_device", json.dumps({"devices": [
            {"dev_type": dev_type, "dev_id": "M5", "address": "mqtt"}]}))
        await app.manager.wait_cycle()
        m5 = await meter(http, site, "M5")
        assert m5["com_err"] and "no MQTT broker is configured (mqtt_url)" in m5["last_error"]
    finally:
        await app.stop()
