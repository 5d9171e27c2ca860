"""The site parameters as set_params takes them, declared once.

`SiteSettings` is the charging manager's site (manager/config.SiteParams, whose defaults
these are), `Hardware` the controller's phase-switching configuration (kept by the
controller, set and shown with the site parameters), `SiteBody` a whole set_params body:
both, the 1.x watt names that stand for currents, and `overdraft_cur` (0 resets the
overdraft). A field's docstring is its meaning (docs/configuration.md shows the same
text), its markers give the range, the unit and whether it is an advanced setting.

`site_changes` reads a body: only the keys it carries change. Of several problems the one
reported comes first in the order the API has always checked: the site parameters (and
watt names) in the body's key order, then `overdraft_cur`, then the hardware fields.

This module must never apply anything; it gives new values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar

from pydantic import model_validator
from pydantic.json_schema import SkipJsonSchema

from chargebrain.api.lenient import Body, check, ui
from chargebrain.api.params import Refused
from chargebrain.api.shapes.fields import (
    any_number,
    broker_url,
    choice,
    flag,
    formula,
    int_range,
    limit,
    number_range,
    password,
    text,
    word,
)
from chargebrain.manager.config import Limit, SiteParams
from chargebrain.powerbrain.phase_switch import CP_OFF_RANGE_S, PhaseSwitchSettings
from chargebrain.servers.mqtt.url import masked

VOLTAGE = 230
MAX_MA = 2_000_000
MAX_WATTS = 1e12  # far above any current a watt name can stand for
#: 1.x watt-based names some clients still send: converted to per-phase mA.
WATT_ALIASES = {
    "max_total_power": "max_total_current",
    "power_reserve": "reserve_current",
    "max_total_evse_power": "max_total_evse_current",
    "max_imbalance": "max_imbalance_cur",
}
#: Watt names that mean one phase (the imbalance is a difference between phases).
SINGLE_PHASE_WATTS = frozenset({"max_imbalance"})
#: Keys that are no setting: state a body may carry (`overdraft_cur`: 0 resets it).
STATE_KEYS = ("overdraft_cur",)
#: API name -> PhaseSwitchSettings attribute.
HARDWARE_ATTRS = {"phase_switch_plugged": "plugged", "phase_switch_cp_s": "cp_off_s"}

_SITE = SiteParams()
_HARDWARE = PhaseSwitchSettings()
_WATTS = number_range(-MAX_WATTS, MAX_WATTS)


class SiteSettings(Body):
    """The charging manager's site parameters."""

    #: Settings that start at their default after every start.
    not_persisted: ClassVar[frozenset[str]] = frozenset({"max_total_cur_prc"})
    #: Settings never shown (get_params says `<name>_set`: whether they are set).
    secret: ClassVar[frozenset[str]] = frozenset({"ocpp_srv_password"})

    title: Annotated[str, text(100), ui()] = _SITE.title
    """Name of the installation, shown by clients."""
    desc: Annotated[str, text(500), ui()] = _SITE.desc
    """Description of the installation."""
    max_total_current: Annotated[Limit, limit(0, MAX_MA), ui("mA")] = _SITE.max_total_current
    """The most the house connection may carry on each phase, for everything together
    (house and cars); the fuse rating less a margin. Scaled by `max_total_cur_prc`. `0`
    lets no car charge. May be a formula."""
    reserve_current: Annotated[int, int_range(0, MAX_MA), ui("mA")] = _SITE.reserve_current
    """Kept free on each phase below `max_total_current`."""
    max_total_evse_current: Annotated[Limit, limit(0, MAX_MA), ui("mA")] = (
        _SITE.max_total_evse_current)
    """The most all EVSEs together may take on each phase, for example the rating of the
    wallboxes' own supply line. `0`: no such limit. May be a formula."""
    lb_enabled: Annotated[bool, flag(), ui()] = _SITE.lb_enabled
    """Load management on. `false` is **observe mode**: everything is read and decided,
    nothing is written to any wallbox, and charging rules are not evaluated. Use it on a
    controller that another charging manager controls."""
    disable_policy: Annotated[int, choice(-1, 0, 1), ui(advanced=True)] = _SITE.disable_policy
    """What an EVSE with `device_enabled` 0 gets: `0` nothing (charging off); `1` its
    minimum current, counted as load; `-1` free charging: it is not controlled and its
    maximum is counted as load."""
    max_imbalance_cur: Annotated[int, int_range(0, MAX_MA), ui("mA", advanced=True)] = (
        _SITE.max_imbalance_cur)
    """The largest difference the EVSEs may cause between the most and the least loaded
    phase (single- and two-phase cars are reduced or paused to keep it). `0`: no limit."""
    imbalance_add: Annotated[bool, flag(), ui(advanced=True)] = _SITE.imbalance_add
    """Count the imbalance of the non-EVSE load (house) too."""
    min_pause_time: Annotated[int, int_range(0, 86_400), ui("s", advanced=True)] = (
        _SITE.min_pause_time)
    """A car the manager paused stays paused at least this long."""
    phase_switch_delay: Annotated[int, int_range(0, 86_400), ui("s", advanced=True)] = (
        _SITE.phase_switch_delay)
    """Least time between two changes of the built-in controller's 1-/3-phase contactor
    (see Phase switching)."""
    reduce_on_com_err: Annotated[bool, flag(), ui(advanced=True)] = _SITE.reduce_on_com_err
    """Kept and shown for clients that send it; it has no effect: chargebrain always
    counts a device that stops answering at its worst (see load-management.md,
    "Faults")."""
    surplus_expr: Annotated[str, formula(), ui("W", advanced=True)] = _SITE.surplus_expr
    """A formula giving the surplus in W that charging rules use, instead of the built-in
    one (which it can read as `CM._org_surplus`); empty: the built-in one. See
    rules.md."""
    price_model: Annotated[int, int_range(0, 10), ui(advanced=True)] = _SITE.price_model
    """Where the energy price for rules comes from: `0` none, `1` `fixed_price`, `2` the
    CM variables `_set_price` and `_set_price_level`; other values: no price."""
    fixed_price: Annotated[float, any_number(), ui(advanced=True)] = _SITE.fixed_price
    """The price for `price_model` 1, in the unit the rules compare with (ct/kWh)."""
    max_total_cur_prc: Annotated[int, int_range(0, 100), ui("%", advanced=True)] = (
        _SITE.max_total_cur_prc)
    """Share of `max_total_current` in use now, for example for a grid operator's signal.
    A CM variable `_max_total_current_prc` overrides it while it exists."""
    cycle_ms: Annotated[int, int_range(200, 10_000), ui("ms", advanced=True)] = _SITE.cycle_ms
    """Period of the control cycle. A push that matters runs a cycle at once in
    between."""
    ocpp_srv_port: Annotated[int, int_range(0, 65_535), ui(advanced=True)] = (
        _SITE.ocpp_srv_port)
    """Port of the OCPP 1.6J central system (on the HTTP host), read at start: a change
    counts from the next start. `0`: off. `chargebrain run --ocpp-port N` wins over it.
    See ocpp.md."""
    ocpp_srv_password: Annotated[str, password(), ui(advanced=True)] = (
        _SITE.ocpp_srv_password)
    """Password OCPP charge points send with HTTP Basic (the user is their ChargeBox ID);
    empty: none asked. Counts from the next connection. Never shown: get_params answers
    `ocpp_srv_password_set`."""
    ocpp_srv_tls_mode: Annotated[str, word("off", "on"), ui(advanced=True)] = (
        _SITE.ocpp_srv_tls_mode)
    """`on`: the OCPP server speaks TLS only (`wss://`), with the HTTPS certificate
    (`--tls-cert`) or else the self-signed one of the data directory; `off`: plain
    `ws://`. Read at start."""
    ocpp_srv_accept_unknown: Annotated[bool, flag(), ui(advanced=True)] = (
        _SITE.ocpp_srv_accept_unknown)
    """Serve OCPP charge points whose ChargeBox ID no `evse_ocpp` device has (else refused
    with 404), and list them in `get_ocpp_unknown` for the admin to add."""
    mqtt_url: Annotated[str, broker_url(), ui(advanced=True)] = _SITE.mqtt_url
    """The MQTT broker, `mqtt://user:password@host:1883` (`mqtts://` TLS, `mqtt5://` MQTT
    5; see mqtt.md). `""`: no MQTT. `chargebrain run --mqtt URL` sets it at start.
    get_params shows the password as `***` (sent back that way, the stored one is
    kept)."""
    mqtt_serial_prefix: Annotated[bool, flag(), ui(advanced=True)] = _SITE.mqtt_serial_prefix
    """Topics under `cfos_mqtt_<serial>/` instead of `cfos_mqtt/` (several servers on one
    broker)."""
    mqtt_ha_discovery: Annotated[bool, flag(), ui(advanced=True)] = _SITE.mqtt_ha_discovery
    """Announce every device to Home Assistant by MQTT discovery (mqtt.md)."""
    metrics_public: Annotated[bool, flag(), ui(advanced=True)] = _SITE.metrics_public
    """`GET /metrics` (Prometheus) without the admin password; otherwise it needs it once
    one is set (operations.md)."""
    sunspec_port: Annotated[int, int_range(0, 65_535), ui(advanced=True)] = _SITE.sunspec_port
    """Port of the SunSpec Modbus TCP server (on the Modbus host, for the networks
    `--modbus-allow` admits), read at start. `0`: off. `chargebrain run --sunspec-port N`
    wins over it. See sunspec.md."""
    sunspec_id: Annotated[int, int_range(1, 246), ui(advanced=True)] = _SITE.sunspec_id
    """Modbus unit id of the SunSpec site chain; the published devices answer at this id +
    1."""
    cm_master_enabled: Annotated[bool, flag(), ui(advanced=True)] = _SITE.cm_master_enabled
    """This manager is a slave: a master charging manager controls it as one EVSE
    (`evse_cm`) and sets the current all its EVSEs may take together (see Cascading
    charging managers). Off: `set_cm_slave` is refused and no master's limit applies."""
    cm_master_timeout: Annotated[int, int_range(40, 86_400), ui("s", advanced=True)] = (
        _SITE.cm_master_timeout)
    """A slave: how long the master's limit holds without being written again (the master
    rewrites it at least every 30 s). Then, and after every start until the master's first
    write, `cm_master_fallback` is in force."""
    cm_master_fallback: Annotated[int, int_range(0, MAX_MA), ui("mA", advanced=True)] = (
        _SITE.cm_master_fallback)
    """A slave: the current all its EVSEs may take together per phase while no master's
    limit is in force. `0`: none (cars pause)."""
    history_max_mb: Annotated[int, int_range(1, 100_000), ui("MB", advanced=True)] = (
        _SITE.history_max_mb)
    """Size limit of the history file (`history.sqlite`: power and current every 10 s
    for 2 days, every minute for 30 days, every 15 minutes after that). Over it, the
    oldest days of 15-minute values are dropped (api.md, `get_history`)."""


class Hardware(Body):
    """The built-in controller's hardware configuration that set_params sets."""

    phase_switch_plugged: Annotated[bool, flag(), ui(advanced=True)] = _HARDWARE.plugged
    """The built-in controller may switch between 1 and 3 phases while a car is plugged
    in (register 8113 bit 8). Part of the controller's hardware configuration."""
    phase_switch_cp_s: Annotated[int, int_range(*CP_OFF_RANGE_S), ui("s", advanced=True)] = (
        _HARDWARE.cp_off_s)
    """Seconds the built-in controller holds the control pilot off for such a switch (the
    car sees an unplug). Hardware configuration."""


_Watts = SkipJsonSchema[Annotated[float | None, _WATTS]]


class SiteBody(Hardware, SiteSettings):  # (fields: SiteSettings' first)
    """The site parameters and the built-in controller's hardware settings."""

    # A set_params body also has the 1.x watt names and `overdraft_cur`, outside the
    # schema; other keys get_params shows are the caller's to accept (api/known_keys.py).

    max_total_power: _Watts = None
    """1.x: `max_total_current` in W (÷ 3 ÷ 230 V)."""
    power_reserve: _Watts = None
    """1.x: `reserve_current` in W (÷ 3 ÷ 230 V)."""
    max_total_evse_power: _Watts = None
    """1.x: `max_total_evse_current` in W (÷ 3 ÷ 230 V)."""
    max_imbalance: _Watts = None
    """1.x: `max_imbalance_cur` in W of one phase (÷ 230 V)."""
    overdraft_cur: SkipJsonSchema[Annotated[int | None, int_range(0, 0)]] = None
    """0 resets the largest overdraft seen; any other value is refused."""

    @model_validator(mode="before")
    @classmethod
    def _watts_to_currents(cls, data: Any) -> Any:
        """A watt name stands for its current, at its place in the body; beside the
        current itself (get_params shows both) it is ignored: the current counts."""
        if not isinstance(data, Mapping) or WATT_ALIASES.keys().isdisjoint(data):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            current = WATT_ALIASES.get(key)
            if current is None:
                out[key] = value
            elif current not in data:
                try:
                    watts = _WATTS.parse(value)
                except Refused:
                    out[key] = value  # its field reports it
                    continue
                phases = 1 if key in SINGLE_PHASE_WATTS else 3
                out[current] = round(watts / phases / VOLTAGE * 1000)
        return out


SITE_KEYS = tuple(SiteSettings.model_fields)
#: The site parameters kept across restarts.
PERSISTED_KEYS = tuple(k for k in SITE_KEYS if k not in SiteSettings.not_persisted)
#: The persisted ones get_params shows (a secret as `<name>_set`).
SHOWN_PERSISTED_KEYS = tuple(f"{k}_set" if k in SiteSettings.secret else k
                             for k in PERSISTED_KEYS)
HARDWARE_KEYS = tuple(Hardware.model_fields)


@dataclass(frozen=True)
class SiteChanges:
    """What a set_params body asks for: the new site parameters, the new hardware
    configuration (None: unchanged), whether to reset the overdraft, and whether a
    persisted parameter was sent."""

    site: SiteParams
    hardware: PhaseSwitchSettings | None
    reset_overdraft: bool
    persist: bool


def _check_order(body: Mapping[str, Any]) -> list[str]:
    late = {*STATE_KEYS, *HARDWARE_KEYS}
    order: list[str] = []
    for key in body:
        if key not in late:
            order.append(key)
            current = WATT_ALIASES.get(key)
            if current is not None and current not in body:
                order.append(current)  # the current the watt name stands for
    return [*order, *STATE_KEYS, *HARDWARE_KEYS]


def site_changes(body: Mapping[str, Any], site: SiteParams,
                 hardware: PhaseSwitchSettings) -> SiteChanges:
    """The changes a set_params body asks for, or ApiError 400 naming the first bad key."""
    if "mqtt_url" in body and body["mqtt_url"] == masked(site.mqtt_url):
        # get_params' form of the URL (the password hidden) sent back: no change.
        body = {k: v for k, v in body.items() if k != "mqtt_url"}
    shape = check(SiteBody, body, _check_order(body))
    given = shape.model_fields_set
    changes = {key: getattr(shape, key) for key in SITE_KEYS if key in given}
    switching = {HARDWARE_ATTRS[key]: getattr(shape, key) for key in HARDWARE_KEYS
                 if key in given}
    persist = any(k in PERSISTED_KEYS or k in WATT_ALIASES for k in body)
    return SiteChanges(
        site=site.with_changes(**changes),
        hardware=replace(hardware, **switching) if switching else None,
        reset_overdraft="overdraft_cur" in given, persist=persist)

