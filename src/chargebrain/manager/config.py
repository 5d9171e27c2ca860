"""Typed configuration of the charging manager: site parameters and device settings.

Plain frozen values, and the defaults of every setting; what the API accepts is declared
in api/shapes/ (which takes these defaults), what it shows in api/views.py.
A limit that may be a formula is kept as `Limit`: either a number (mA) or formula text.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

Limit = int | str  # mA, or a formula giving mA


class ConfigError(ValueError):
    """A configuration the manager cannot accept; nothing was changed."""


@dataclass(frozen=True)
class SiteParams:
    title: str = "chargebrain"
    desc: str = ""
    max_total_current: Limit = 32_000
    reserve_current: int = 0
    max_total_evse_current: Limit = 0
    lb_enabled: bool = True
    disable_policy: int = 1
    max_imbalance_cur: int = 20_000
    imbalance_add: bool = False
    min_pause_time: int = 300
    phase_switch_delay: int = 180
    reduce_on_com_err: bool = True
    surplus_expr: str = ""
    price_model: int = 0
    fixed_price: float = 0.0
    max_total_cur_prc: int = 100  # not persisted
    cycle_ms: int = 1000  # control period
    # The OCPP central system (servers/ocpp): its port (at start; 0 = off, and
    # `--ocpp-port` wins), the charge points' password, TLS, and unknown charge points.
    ocpp_srv_port: int = 19520
    ocpp_srv_password: str = ""
    ocpp_srv_tls_mode: str = "off"
    ocpp_srv_accept_unknown: bool = False
    mqtt_url: str = ""  # the MQTT broker; "" = no MQTT
    mqtt_serial_prefix: bool = False  # topics under cfos_mqtt_<serial> instead of cfos_mqtt
    mqtt_ha_discovery: bool = False  # announce every device to Home Assistant
    metrics_public: bool = False  # GET /metrics without the admin password
    # The SunSpec Modbus server (servers/sunspec): its port (at start; 0 = off, and
    # `--sunspec-port` wins) and the unit id of the site (the devices answer at id + 1).
    sunspec_port: int = 0
    sunspec_id: int = 1
    # Taking a limit from a master charging manager (manager/cascade.py): whether this
    # manager does, how long the master's limit holds unrenewed (s), and what its EVSEs
    # may take together while no master's limit is in force (mA per phase).
    cm_master_enabled: bool = False
    cm_master_timeout: int = 90
    cm_master_fallback: int = 0
    history_max_mb: int = 256  # the size limit of the history file

    def with_changes(self, **changes: Any) -> SiteParams:
        return replace(self, **changes)


# Meter roles as the API numbers them.
ROLE_DISPLAY = 0
ROLE_CONSUMPTION = 1
ROLE_PRODUCTION = 2
ROLE_GRID = 3
ROLE_VEHICLE = 4
ROLE_STORAGE_HOME = 5
ROLE_STORAGE_ALL = 6


@dataclass(frozen=True)
class DeviceConfig:
    """Settings of one device (EVSE, meter or EVSE group)."""

    dev_id: str
    dev_type: str
    name: str = ""
    desc: str = ""
    address: str = ""
    id: int = 1  # Modbus slave id / connector id
    number: int = 0
    device_enabled: bool = True
    label: str = ""
    group: int = 0  # the group this device belongs to, 0 = main
    mqtt_publish: bool = False  # its state on <prefix>/get/<dev_id>
    # EVSE settings
    min_charging_cur: int = 6000
    max_charging_cur: Limit = 16_000
    prio: int = 1
    phase_rotation: int = 0
    used_phases: int = 0  # 0 = determine
    attach: str = ""
    fixed_rfid: str = ""
    enable_snooze: bool = False
    enable_wakeup: bool = False
    phase_switch_auto: bool = False  # automatic 1/3-phase switching for surplus charging
    battery_save_threshold: int = 0
    users: tuple[str, ...] = ()
    charging_rules: tuple[dict[str, Any], ...] = ()
    crule_set: dict[str, Any] | None = None
    # The OCPP gateway: the EVSE as a charge point of an outside backend (its URL, ws://
    # or wss://, "" = none; the charge point id the backend knows it by, "" = the
    # device id; the HTTP Basic password, "" = none). servers/ocpp/gateways.py.
    ocpp_gateway_url: str = ""
    ocpp_gateway_client_id: str = ""
    ocpp_gateway_password: str = ""
    password: str = ""  # evse_cm: the slave's admin password (never shown)
    publish_sunspec: bool = False  # EVSEs and meters: shown at the SunSpec unit id + 1
    # Meter settings
    role: int = ROLE_DISPLAY
    invert: bool = False
    factor: float = 1.0
    phases: int = 7
    is_va: bool = False
    expr: str = ""  # expression meters
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_evse(self) -> bool:
        return self.dev_id.startswith("E")

    @property
    def is_group(self) -> bool:
        return self.dev_type == "evse_group"

    @property
    def group_number(self) -> int:
        """A group's own number, from its id (E5 is group 5)."""
        return int(self.dev_id[1:])

    def with_changes(self, **changes: Any) -> DeviceConfig:
        return replace(self, **changes)
