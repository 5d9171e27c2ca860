"""Home Assistant MQTT discovery: every device as a Home Assistant device with entities.

Each entity is a retained config message on
`homeassistant/<component>/chargebrain_<serial>/<dev_id>_<key>/config` whose state comes
from the device's own topic `<prefix>/get/<dev_id>` (the site's from `<prefix>/get/params`)
through a value template, so Home Assistant needs no integration of its own. EVSEs get
sensors (power, currents, energy, state, …), binary sensors (charging, plugged in,
communication problem), a number for the current limit and a switch for "charging
allowed"; both command through `<prefix>/api/cmd=override_device&dev_id=<id>` (the
override of the running session, as the Power Brain integration sets it). Meters get
power, currents, voltages, energy counters (and the state of charge where they report
one), groups their allocated currents. Availability is `<prefix>/status`.

Pure: builds the messages as dicts; publishing them is the service's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chargebrain.manager.state import DeviceRuntime

DISCOVERY_PREFIX = "homeassistant"
ORIGIN = "chargebrain"
EVSE_STATES = ["Waiting", "Vehicle detected", "Charging", "Charging (vent)", "Error", "Offline"]


@dataclass(frozen=True)
class Entity:
    """One entity: its component, key (unique within the device) and config fields."""

    component: str
    key: str
    fields: dict[str, Any]


def _node(serial: str) -> str:
    return "chargebrain_" + re.sub(r"[^A-Za-z0-9_-]", "_", serial)


def _current(phase: int, name: str = "Current") -> Entity:
    return Entity("sensor", f"current_l{phase}", {
        "name": f"{name} L{phase}", "device_class": "current", "unit_of_measurement": "A",
        "state_class": "measurement", "suggested_display_precision": 1,
        "value_template": f"{{{{ value_json.current_l{phase} / 1000 }}}}"})


def _sensor(key: str, name: str, device_class: str | None, unit: str | None,
            state_class: str | None = "measurement", template: str | None = None,
            diagnostic: bool = False) -> Entity:
    fields: dict[str, Any] = {"name": name,
                              "value_template": template or f"{{{{ value_json.{key} }}}}"}
    if device_class:
        fields["device_class"] = device_class
    if unit:
        fields["unit_of_measurement"] = unit
    if state_class:
        fields["state_class"] = state_class
    if diagnostic:
        fields["entity_category"] = "diagnostic"
    return Entity("sensor", key, fields)


def _binary(key: str, name: str, device_class: str, condition: str,
            diagnostic: bool = False) -> Entity:
    fields: dict[str, Any] = {
        "name": name, "device_class": device_class,
        "value_template": f"{{{{ 'ON' if {condition} else 'OFF' }}}}"}
    if diagnostic:
        fields["entity_category"] = "diagnostic"
    return Entity("binary_sensor", key, fields)


def _com_err() -> Entity:
    return _binary("com_err", "Communication problem", "problem", "value_json.com_err",
                   diagnostic=True)


def evse_entities(rt: DeviceRuntime, command_topic: str) -> list[Entity]:
    limit = rt.settings.max_charging_cur
    max_a = max(6, limit // 1000) if isinstance(limit, int) and limit > 0 else 32
    return [
        _sensor("power_w", "Power", "power", "W"),
        *(_current(p) for p in (1, 2, 3)),
        _sensor("total_energy", "Energy", "energy", "Wh", "total_increasing"),
        _sensor("ta_en", "Session energy", "energy", "Wh", "total"),
        _sensor("last_set_charging_cur", "Offered current", "current", "A",
                template="{{ ([value_json.last_set_charging_cur, 0] | max) / 1000 }}"),
        Entity("sensor", "state", {
            "name": "State", "device_class": "enum", "options": EVSE_STATES,
            "value_template": "{{ value_json.evse.cp_state }}"}),
        _sensor("reason", "Limited by", None, None, state_class=None, diagnostic=True),
        _binary("charging", "Charging", "battery_charging", "value_json.evse.charging"),
        _binary("plugged", "Plugged in", "plug", "value_json.state in [2, 3, 4]"),
        _com_err(),
        Entity("number", "current_limit", {
            "name": "Current limit", "device_class": "current", "unit_of_measurement": "A",
            "min": 0, "max": max_a, "step": 1, "mode": "box",
            "command_topic": command_topic,
            "command_template": "mamps={{ (value * 1000) | int }}",
            "value_template": "{{ value_json.ov_cur / 1000 }}"}),
        Entity("switch", "charging_allowed", {
            "name": "Charging allowed", "command_topic": command_topic,
            "payload_on": "flags=c", "payload_off": "flags=C",
            "state_on": "ON", "state_off": "OFF",
            "value_template": "{{ 'OFF' if (value_json.overrides | int | bitwise_and(1)) "
                              "else 'ON' }}"}),
    ]


def meter_entities(rt: DeviceRuntime) -> list[Entity]:
    entities = [
        _sensor("power_w", "Power", "power", "W"),
        *(_current(p) for p in (1, 2, 3)),
        *(_sensor(f"voltage_l{p}", f"Voltage L{p}", "voltage", "V", diagnostic=True)
          for p in (1, 2, 3)),
        _sensor("import", "Energy imported", "energy", "Wh", "total_increasing"),
        _sensor("export", "Energy exported", "energy", "Wh", "total_increasing"),
        _com_err(),
    ]
    if rt.meter is not None and rt.meter.soc is not None:
        entities.append(_sensor("soc", "State of charge", "battery", "%"))
    return entities


def group_entities() -> list[Entity]:
    return [_current(p, "Allocated current") for p in (1, 2, 3)]


def site_entities() -> list[Entity]:
    return [
        _sensor("grid_pwr", "Grid power", "power", "W"),
        _sensor("cons_pwr", "Consumption without EVSEs", "power", "W"),
        _sensor("prod_pwr", "Production", "power", "W"),
        _sensor("surplus_power", "Surplus", "power", "W"),
        _sensor("cons_evse_power", "EVSE power", "power", "W"),
        _sensor("avail_evse_power", "Power available to EVSEs", "power", "W"),
        _sensor("cycle_time", "Cycle time", "duration", "ms", diagnostic=True),
    ]


class Discovery:
    """The discovery messages for one server (`serial`) and topic prefix."""

    def __init__(self, serial: str, prefix: str, version: str) -> None:
        self.node = _node(serial)
        self.prefix = prefix
        self.version = version

    def _config(self, entity: Entity, dev_key: str, state_topic: str,
                device: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        topic = f"{DISCOVERY_PREFIX}/{entity.component}/{self.node}/{dev_key}_{entity.key}/config"
        config = {
            **entity.fields,
            "unique_id": f"{self.node}_{dev_key}_{entity.key}",
            "state_topic": state_topic,
            "availability_topic": f"{self.prefix}/status",
            "device": device,
            "origin": {"name": ORIGIN, "sw_version": self.version},
        }
        return topic, config

    def site(self, title: str) -> dict[str, dict[str, Any]]:
        """The site's device (the charging manager itself) and its entities."""
        device = {"identifiers": [self.node], "name": title or "chargebrain",
                  "manufacturer": ORIGIN, "model": "Charging Manager",
                  "sw_version": self.version}
        state = f"{self.prefix}/get/params"
        return dict(self._config(e, "site", state, device) for e in site_entities())

    def device(self, rt: DeviceRuntime, model: str) -> dict[str, dict[str, Any]]:
        """One device's entities (topic → config)."""
        cfg = rt.settings
        dev_id = cfg.dev_id
        device = {"identifiers": [f"{self.node}_{dev_id}"], "name": cfg.name or dev_id,
                  "manufacturer": ORIGIN, "model": model or cfg.dev_type,
                  "via_device": self.node}
        kind = rt.kind_name
        if kind == "evse":
            command = f"{self.prefix}/api/cmd=override_device&dev_id={dev_id}"
            entities = evse_entities(rt, command)
        elif kind == "group":
            entities = group_entities()
        else:
            entities = meter_entities(rt)
        state = f"{self.prefix}/get/{dev_id}"
        return dict(self._config(e, dev_id, state, device) for e in entities)
