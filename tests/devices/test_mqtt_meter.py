"""The meter-definition driver reading MQTT topics: values from the last message of each
topic, old values a communication error (as a pushed meter's), the checks made when the
meter is made, and its topics let go when it closes. The feed is the one the MQTT
service uses; time is a virtual clock."""

from __future__ import annotations

import pytest

from chargebrain.clock import VirtualClock
from chargebrain.devices.defined_meter import MQTT_STALE_AFTER_S, DefinedMeter
from chargebrain.devices.errors import DeviceError
from chargebrain.devices.meterdef import parse_definition
from chargebrain.servers.mqtt.feed import Feed

DEFINITION = parse_definition("""{
  rtype: 2, dev_type: "shelly_mqtt", name: "Shelly over MQTT",
  power_w: {address: "shellies/em/emeter/0/power"},
  voltage_l1: {address: "shellies/em/emeter/0/voltage"},
  import_wh: {address: "shellies/em/emeter/0/total"},
  serial: {address: "shellies/em/info", query: "mac", type: "string", once: true},
  relay: {address: "shellies/em/info", query: "relay.on"},
  inputs: [{address: "shellies/em/input", count: 2}],
}""")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def publish_all(feed: Feed) -> None:
    feed.receive("shellies/em/emeter/0/power", b"1234.5")
    feed.receive("shellies/em/emeter/0/voltage", b"229.9")
    feed.receive("shellies/em/emeter/0/total", b"98765")
    feed.receive("shellies/em/info", b'{"mac": "A8:03:2A", "relay": {"on": true}}')
    feed.receive("shellies/em/input", b"2")


async def test_values_come_from_the_last_messages(clock: VirtualClock) -> None:
    feed = Feed(clock.monotonic)
    meter = DefinedMeter(DEFINITION, "mqtt", clock=clock, topics=feed)
    assert len(feed.topics()) == 5
    publish_all(feed)
    reading = await meter.read()
    assert reading.power_w == 1234.5 and reading.voltages[0] == 229.9
    assert reading.import_wh == 98765
    assert reading.extra["relay"] == 1.0
    assert (reading.extra["input1"], reading.extra["input2"]) == (0.0, 1.0)
    assert meter.texts["serial"] == "A8:03:2A"
    feed.receive("shellies/em/emeter/0/power", b"-300")
    assert (await meter.read()).power_w == -300
    await meter.close()
    assert feed.topics() == frozenset()


async def test_old_or_missing_values_are_a_communication_error(clock: VirtualClock) -> None:
    feed = Feed(clock.monotonic)
    meter = DefinedMeter(DEFINITION, "MQTT", clock=clock, topics=feed)
    feed.set_problem("MQTT broker 10.0.0.2:1883: connection refused")
    with pytest.raises(DeviceError, match=r"no message yet \(MQTT broker 10\.0\.0\.2:1883"):
        await meter.read()
    publish_all(feed)
    await meter.read()
    clock.advance(MQTT_STALE_AFTER_S - 1)
    feed.receive("shellies/em/emeter/0/power", b"10")
    await meter.read()
    clock.advance(2)
    with pytest.raises(DeviceError, match=r"topic shellies/em/emeter/0/\w+: no message for 3\d s"):
        await meter.read()


async def test_a_payload_that_is_no_number_is_an_error(clock: VirtualClock) -> None:
    feed = Feed(clock.monotonic)
    meter = DefinedMeter(DEFINITION, "mqtt", clock=clock, topics=feed)
    publish_all(feed)
    feed.receive("shellies/em/emeter/0/power", b"offline")
    with pytest.raises(DeviceError, match="'offline' is not a number"):
        await meter.read()


@pytest.mark.parametrize(("text", "address", "problem"), [
    ('{rtype: 2, dev_type: "x", power_w: {address: "a/+/power"}}', "mqtt", "wildcard"),
    ('{rtype: 2, dev_type: "x", power_w: {address: "a/#"}}', "mqtt", "wildcard"),
    ('{rtype: 2, dev_type: "x", power_w: {address: "a"}}', "10.0.0.5", "address is 'mqtt'"),
])
def test_what_cannot_be_read_is_refused_when_made(clock: VirtualClock, text: str,
                                                   address: str, problem: str) -> None:
    with pytest.raises(DeviceError, match=problem):
        DefinedMeter(parse_definition(text), address, clock=clock, topics=Feed(clock.monotonic))


def test_without_a_broker_connection_it_cannot_be_made() -> None:
    with pytest.raises(DeviceError, match="uses MQTT"):
        DefinedMeter(DEFINITION, "mqtt")
