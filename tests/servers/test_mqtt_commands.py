"""What chargebrain does with what it receives over a real mosquitto broker: pushed
readings, API calls (with MQTT 5 request/response), observe-mode orders, and every kind
of message it must ignore without harm."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import Running, observe_only, wait_for
from tests.mqtt_broker import Broker, mqtt_client

P = "cfos_mqtt"


async def get_json(http: aiohttp.ClientSession, site: Running, query: str) -> Any:
    async with http.get(site.url(query)) as resp:
        return await resp.json()


async def device(http: aiohttp.ClientSession, site: Running, dev_id: str) -> dict[str, Any]:
    info = await get_json(http, site, "cmd=get_dev_info")
    found: dict[str, Any] = next(d for d in info["devices"] if d["dev_id"] == dev_id)
    return found


async def test_set_pushes_a_meter_and_an_evse(mqtt_site: Running, broker: Broker,
                                              http: aiohttp.ClientSession) -> None:
    async with http.post(mqtt_site.url("cmd=set_device"), data=json.dumps({"devices": [
            {"dev_type": "meter_ajax", "dev_id": "M3", "role": 3}]})) as resp:
        assert resp.status == 200
    async with http.post(mqtt_site.url("cmd=set_device"), data=json.dumps({"devices": [
            {"dev_type": "evse_ajax", "dev_id": "E2"}]})) as resp:
        assert resp.status == 200
    async with mqtt_client(broker) as client:
        await client.publish(f"{P}/set/M3", json.dumps(
            {"power_w": 2760, "current": [8000, 2000, 2000], "import_wh": 12345}))
        await client.publish(f"{P}/set/e2", json.dumps(
            {"state": 3, "current": [10000, 10000, 10000], "total_energy": 500}))

        async def pushed() -> bool:
            m3, e2 = await device(http, mqtt_site, "M3"), await device(http, mqtt_site, "E2")
            return m3["power_w"] == 2760 and e2["state"] == 3 and not e2["com_err"]

        await wait_for(pushed, timeout=10)
    m3 = await device(http, mqtt_site, "M3")
    assert m3["current_l1"] == 8000 and m3["import"] == 12345 and not m3["com_err"]


async def test_api_calls_run_as_the_admin(mqtt_site: Running, broker: Broker,
                                          http: aiohttp.ClientSession) -> None:
    # Even with an admin password: MQTT reaches only who may publish on the broker.
    async with http.get(mqtt_site.url("cmd=change_admin_pwd&old_pwd=&new_pwd=s3cret-pass")
                        ) as resp:
        assert resp.status == 200
    async with mqtt_client(broker, f"{P}/api_res") as client:
        await client.publish(f"{P}/api/cmd=set_params", json.dumps({"max_total_current": 25000}))
        await client.wait(f"{P}/api_res", lambda p: p == "ok")
        await client.publish(f"{P}/api/cmd=get_devices", b"")
        devices = await client.wait(f"{P}/api_res", lambda p: isinstance(p, list))
        await client.publish(f"{P}/api/cmd=no_such_command", b"")
        unknown = await client.wait(f"{P}/api_res", lambda p: isinstance(p, dict) and "error"
                                    in p)
        # Form fields as the payload, as a form body over HTTP.
        await client.publish(f"{P}/api/cmd=override_device&dev_id=E1", b"mamps=10000")
        await client.wait(f"{P}/api_res", lambda p: isinstance(p, dict) and p.get("ov_cur")
                          == 10000)
        # An answer that is no JSON comes as HTTP would send it.
        await client.publish(f"{P}/api/cmd=get_transactions", b"")
        await client.wait(f"{P}/api_res", lambda p: isinstance(p, str) and p.startswith(
            "id,dev_id,user_id"))
    assert mqtt_site.app.manager.site.max_total_current == 25000
    assert {d["dev_id"] for d in json.loads(devices.payload)} >= {"E1", "M1"}
    assert json.loads(unknown.payload) == {"error": "unknown command 'no_such_command'"}


async def test_mqtt5_answers_on_the_response_topic_with_the_correlation(
        tmp_path: Any, broker: Broker, http: aiohttp.ClientSession) -> None:
    from chargebrain.app import App, Config
    from tests.conftest import free_ports

    port = free_ports(1)
    app = App(Config(tmp_path / "data5", "127.0.0.1", port, 0,
                     mqtt_url=broker.url.replace("mqtt://", "mqtt5://")))
    await app.start()
    try:
        await wait_for(lambda: app.mqtt.connected, timeout=15)
        async with mqtt_client(broker, "answers/me", version=5) as client:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = "answers/me"
            props.CorrelationData = b"request-7"
            await client.publish(f"{P}/api/cmd=get_license", b"", properties=props)
            message = await client.wait("answers/me")
        assert message.properties is not None
        assert message.properties.CorrelationData == b"request-7"
        assert ("status", "200") in message.properties.UserProperty
        assert "license_accepted" in json.loads(message.payload)
    finally:
        await app.stop()


async def test_ctl_drives_the_wallbox_in_observe_mode(mqtt_site: Running, broker: Broker,
                                                      http: aiohttp.ClientSession) -> None:
    bank = mqtt_site.app.powerbrain.banks["evse"]
    await observe_only(mqtt_site)
    async with mqtt_client(broker) as client:
        await client.publish(f"{P}/ctl", json.dumps({"E1": {"cur": 10000, "ena": True}}))
        await wait_for(lambda: bank.read_words(8093, 2) == [100, 1], timeout=10)
        # Keys left out keep their value; the current is capped at the EVSE's maximum.
        await client.publish(f"{P}/ctl", json.dumps({"E1": {"cur": 40000}}))
        await wait_for(lambda: bank.read_words(8093, 2) == [160, 1], timeout=10)
        await client.publish(f"{P}/ctl", json.dumps({"E1": {"ena": False, "phs": 1}}))
        await wait_for(lambda: bank.read_words(8094, 1) == [0], timeout=10)
    assert bank.read_words(8087, 1) == [1]
    assert (await device(http, mqtt_site, "E1"))["last_set_charging_cur"] == 0


async def test_ctl_is_refused_while_the_manager_controls(
        mqtt_site: Running, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    bank = mqtt_site.app.powerbrain.banks["evse"]
    await mqtt_site.app.manager.wait_cycle()
    async with mqtt_client(broker) as client:
        await client.publish(f"{P}/ctl", json.dumps({"E1": {"cur": 7000, "ena": True}}))
        await wait_for(lambda: "observe mode only" in caplog.text, timeout=10)
    # No car: the manager keeps charging off.
    assert bank.read_words(8094, 1) == [0]


async def test_what_does_not_fit_is_ignored_with_a_log_line(
        mqtt_site: Running, broker: Broker, http: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chargebrain")
    await observe_only(mqtt_site)
    async with http.post(mqtt_site.url("cmd=set_device"), data=json.dumps({"devices": [
            {"dev_type": "meter_ajax", "dev_id": "M3"}]})) as resp:
        assert resp.status == 200
    bad = [
        (f"{P}/set/M3", b"not json"),
        (f"{P}/set/M3", b'{"power_w": "lots"}'),
        (f"{P}/set/M3", b"[1, 2, 3]"),
        (f"{P}/set/E99", b'{"power_w": 1}'),
        (f"{P}/set/E1", b'{"state": 2}'),  # the built-in EVSE is no HTTP input
        (f"{P}/ctl", b"\xff\xfe garbage"),
        (f"{P}/ctl", b'{"E1": {"cur": "high"}}'),
        (f"{P}/ctl", b'{"E1": {"phs": 2}, "E77": {"cur": 6000}}'),
        (f"{P}/ctl", b'{"E1": {"speed": 3}}'),
        (f"{P}/ctl", b'["E1"]'),
        (f"{P}/api/cmd=set_params", b'{"max_total_current": '),
        (f"{P}/api/", b""),
        (f"{P}/set/M3", b"{" + b" " * (3 * 1024 * 1024) + b"}"),
        (f"{P}/get/whatever", b"1"),  # our own topic, not a command
    ]
    async with mqtt_client(broker, f"{P}/api_res") as client:
        for topic, payload in bad:
            await client.publish(topic, payload)
        # A retained command is not run when it comes again at a (re)connect.
        app, mgr = mqtt_site.app, mqtt_site.app.manager
        url = mgr.site.mqtt_url
        mgr.settings.set(mgr.site.with_changes(mqtt_url=""))
        await wait_for(lambda: not app.mqtt.connected, timeout=10)
        await client.publish(f"{P}/api/cmd=set_params", b'{"title": "retained"}', retain=True)
        mgr.settings.set(mgr.site.with_changes(mqtt_url=url))
        await wait_for(lambda: "retained message" in caplog.text, timeout=15)
        await client.publish(f"{P}/api/cmd=set_params", b"", retain=True)  # clears it
        # ... and after all of it, a good message still works.
        await client.publish(f"{P}/set/M3", b'{"power_w": 1234}')
        await client.wait(f"{P}/api_res", lambda p: isinstance(p, dict) and "error" in p)
        await wait_for(lambda: mqtt_site.app.manager.devices["M3"].meter is not None
                       and mqtt_site.app.manager.devices["M3"].meter.power_w == 1234,
                       timeout=10)
    assert mqtt_site.app.manager.site.title != "retained"
    text = caplog.text
    for expected in ("ignored set/M3", "ignored set/E99: no device",
                     "ignored set/E1: not an HTTP-input device", "ctl: E1:",
                     "ctl: E77: no such EVSE", "larger than", "retained message",
                     "no query after api/"):
        assert expected in text, expected
    assert "Traceback" not in text
    assert mqtt_site.app.mqtt.connected
