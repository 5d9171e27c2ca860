"""Home Assistant MQTT discovery on a real broker: every device announced with entities
whose value templates read keys its state topic has, commands that work, and the
announcements removed when discovery is switched off."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

from tests.conftest import Running, wait_for
from tests.mqtt_broker import Broker, mqtt_client

P = "cfos_mqtt"
HA = "homeassistant"


async def post(http: aiohttp.ClientSession, site: Running, query: str, body: Any) -> None:
    async with http.post(site.url(query), data=json.dumps(body)) as resp:
        assert resp.status == 200, await resp.text()


def _configs(client: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for message in client.messages:
        topic = str(message.topic)
        if topic.startswith(f"{HA}/") and topic.endswith("/config"):
            if message.payload:
                out[topic] = json.loads(message.payload)
            else:
                out.pop(topic, None)
    return out


async def test_every_device_appears_in_home_assistant(
        mqtt_site: Running, broker: Broker, http: aiohttp.ClientSession) -> None:
    app = mqtt_site.app
    serial = app.powerbrain.serial
    await post(http, mqtt_site, "cmd=set_device", {"devices": [
        {"dev_type": "meter_ajax", "dev_id": "M3", "name": "Grid", "role": 3}]})
    await post(http, mqtt_site, "cmd=set_device", {"devices": [
        {"dev_type": "evse_group", "dev_id": "E5", "name": "Garage"}]})
    async with mqtt_client(broker, f"{HA}/#", f"{P}/get/#") as client:
        await post(http, mqtt_site, "cmd=set_params", {"mqtt_ha_discovery": True})

        def complete() -> bool:
            configs = _configs(client)
            ids = {c["device"]["identifiers"][0] for c in configs.values()}
            return {f"chargebrain_{serial}_{d}" for d in ("E1", "M1", "M3", "E5")} <= ids
        await wait_for(complete, timeout=15)
        await wait_for(lambda: client.last_json(f"{P}/get/M3") is not None, timeout=10)
        configs = _configs(client)
        components = {t.split("/")[1] for t in configs}
        assert components == {"sensor", "binary_sensor", "number", "switch"}
        unique = [c["unique_id"] for c in configs.values()]
        assert len(unique) == len(set(unique))
        for topic, config in configs.items():
            state = client.last_json(config["state_topic"])
            assert state is not None, config["state_topic"]
            # Every key a template reads is in the device's state.
            for key in re.findall(r"value_json\.(\w+)", config.get("value_template", "")):
                assert key in state, (topic, key)
            assert config["availability_topic"] == f"{P}/status"
        by_key = {c["unique_id"].rsplit(f"{serial}_", 1)[1]: c for c in configs.values()}
        power = by_key["M3_power_w"]
        assert (power["device_class"], power["unit_of_measurement"]) == ("power", "W")
        energy = by_key["E1_total_energy"]
        assert (energy["device_class"], energy["state_class"]) == ("energy", "total_increasing")
        assert by_key["E1_current_l1"]["unit_of_measurement"] == "A"
        assert by_key["site_grid_pwr"]["state_topic"] == f"{P}/get/params"
        assert by_key["E1_com_err"]["entity_category"] == "diagnostic"

        # The number and the switch command the EVSE through the API topic.
        limit, switch = by_key["E1_current_limit"], by_key["E1_charging_allowed"]
        await client.publish(limit["command_topic"],
                             limit["command_template"].replace("{{ (value * 1000) | int }}",
                                                               "10000"))
        await wait_for(lambda: app.manager.devices["E1"].evse.ov_cur == 10000, timeout=10)
        await client.publish(switch["command_topic"], switch["payload_off"])
        await wait_for(lambda: app.manager.devices["E1"].evse.overrides & 1, timeout=10)

        # Switched off: the announcements are removed (empty retained messages).
        await post(http, mqtt_site, "cmd=set_params", {"mqtt_ha_discovery": False})
        await wait_for(lambda: not _configs(client), timeout=15)
    # Nothing is left at the broker: a new subscriber gets no config (the probe, published
    # after subscribing, comes after any retained message would have).
    async with mqtt_client(broker, f"{HA}/#") as late:
        await late.subscribe("probe/done")
        await late.publish("probe/done", b"1")
        await late.wait("probe/done")
        assert not _configs(late)
