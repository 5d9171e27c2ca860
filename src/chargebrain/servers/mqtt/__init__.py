"""MQTT in the vendor's topic layout (`cfos_mqtt/…`): publishing the site's state,
taking pushed readings, API calls and observe-mode orders, meters read over MQTT, and
Home Assistant discovery. `service.MqttService` runs it; `adapter` is the only module
that imports the MQTT library. See docs/mqtt.md.
"""
