"""Broker URLs: the vendor's schemes, default ports, credentials, TLS options, and the
form anyone may be shown."""

from __future__ import annotations

import pytest

from chargebrain.servers.mqtt.url import BrokerUrlError, masked, parse_broker_url


@pytest.mark.parametrize(("text", "version", "tls", "port"), [
    ("mqtt://broker", 3, False, 1883),
    ("mqtt3://broker:1884", 3, False, 1884),
    ("mqtt5://broker", 5, False, 1883),
    ("mqtts://broker", 3, True, 8883),
    ("mqtts5://broker:9999", 5, True, 9999),
    ("MQTT://broker", 3, False, 1883),
    ("mqtt://[fe80::1]:1883", 3, False, 1883),
])
def test_schemes_and_ports(text: str, version: int, tls: bool, port: int) -> None:
    url = parse_broker_url(text)
    assert (url.version, url.tls, url.port) == (version, tls, port)


def test_credentials_are_percent_decoded_and_never_shown() -> None:
    url = parse_broker_url("mqtt://cb:p%40ss%3Aword@10.0.0.2:1883")
    assert (url.host, url.username, url.password) == ("10.0.0.2", "cb", "p@ss:word")
    assert "p@ss" not in str(url) and "p%40ss" not in repr(url)
    assert masked("mqtt://cb:p%40ss%3Aword@10.0.0.2:1883") == "mqtt://cb:***@10.0.0.2:1883"
    assert masked("mqtt://10.0.0.2") == "mqtt://10.0.0.2"
    assert masked("") == ""


def test_tls_options() -> None:
    url = parse_broker_url("mqtts://broker?cafile=/etc/ca.pem&insecure=1")
    assert url.cafile == "/etc/ca.pem" and url.insecure


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty"),
    ("http://broker", "the scheme must be one of"),
    ("broker:1883", "the scheme must be one of"),
    ("mqtt://", "host is missing"),
    ("mqtt://broker:0", "port"),
    ("mqtt://broker:99999", "port"),
    ("mqtt://broker:x", "port"),
    ("mqtt://broker/topic", "a path is not allowed"),
    ("mqtt://broker?qos=2", "unknown option 'qos'"),
    ("mqtt://bro ker", "spaces"),
    ("mqtt://" + "b" * 600, "longer than"),
])
def test_what_is_refused(text: str, problem: str) -> None:
    with pytest.raises(BrokerUrlError, match=problem):
        parse_broker_url(text)
