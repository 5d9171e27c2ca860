"""The mosquitto broker and the app connected to it, for the MQTT tests here."""

from tests.mqtt_broker import broker, mqtt_site

__all__ = ["broker", "mqtt_site"]
