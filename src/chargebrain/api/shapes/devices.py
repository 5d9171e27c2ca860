"""A device's settings as set_device takes them, declared once per kind.

`CommonSettings` are every device's, `EvseSettings`, `MeterSettings` and `GroupSettings`
add a kind's own (`DEVICE_SHAPES` by kind: "evse", "meter", "group"). The defaults are
manager/config.DeviceConfig's; a field's docstring is its meaning (docs/configuration.md
shows the same text), its markers give the range, the unit and whether it is an
advanced setting. `dev_id` and `dev_type` name the device and its type; they are read by
the command (api/cmd_manager.py), not here.

`device_changes` reads one device object: only the keys it carries change, and of
several problems the one of the first key in the object is reported. Keys that are no
setting of that kind are the caller's to refuse (api/known_keys.py).

This module must never apply anything; it gives new settings.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from chargebrain.api.errors import ApiError
from chargebrain.api.lenient import Body, check, ui
from chargebrain.api.shapes.fields import (
    choice,
    flag,
    formula,
    gateway_url,
    int_range,
    limit,
    meter_id,
    number_range,
    rule_list,
    rule_set,
    text,
    user_ids,
)
from chargebrain.api.shapes.fields import password as secret_text
from chargebrain.devices.powerbrain import address_form
from chargebrain.manager.config import DeviceConfig, Limit

MAX_MA = 2_000_000
_D = DeviceConfig("", "")


class CommonSettings(Body):
    """The settings of every device."""

    #: Settings never shown (get_devices says `<name>_set`: whether they are set).
    secret: ClassVar[frozenset[str]] = frozenset()

    name: Annotated[str, text(100), ui(default=False)] = _D.name
    """Display name."""
    desc: Annotated[str, text(500), ui()] = _D.desc
    """Description."""
    address: Annotated[str, text(300), ui()] = _D.address
    """Where the device is reached; what it must be depends on the `dev_type` (see Device
    types). Required for the types that are read over the network."""
    id: Annotated[int, int_range(0, 255), ui()] = _D.id
    """Modbus unit (slave) id, for devices read over Modbus: another Power Brain, Modbus
    meters. Not used otherwise."""
    number: Annotated[int, int_range(0, 10_000), ui(advanced=True)] = _D.number
    """A number for display; not used by the manager."""
    device_enabled: Annotated[bool, flag(), ui()] = _D.device_enabled
    """`1` on, `0` off. An EVSE that is off is still read and gets what `disable_policy`
    says; a meter that is off is neither read nor counted; for a group it has no effect
    (its limit always applies)."""
    label: Annotated[str, text(100), ui(advanced=True)] = _D.label
    """Free text for display."""
    group: Annotated[int, int_range(0, 10_000), ui()] = _D.group
    """The number of the group the device belongs to (group E5 is number 5); `0`:
    directly under the site. For a meter: the group whose load it measures. For a group:
    its parent group. The group must exist."""
    mqtt_publish: Annotated[bool, flag(), ui(advanced=True)] = _D.mqtt_publish
    """Publish the device's state on `cfos_mqtt/get/<dev_id>` (retained) when MQTT is on
    (mqtt.md); with Home Assistant discovery every device is published."""


class EvseSettings(CommonSettings):
    """The settings of an EVSE (charge point)."""

    secret: ClassVar[frozenset[str]] = frozenset({"ocpp_gateway_password", "password"})

    min_charging_cur: Annotated[int, int_range(6000, 80_000), ui("mA")] = _D.min_charging_cur
    """The least current the EVSE is given while it charges; a car whose minimum does not
    fit is paused, never given less. A car that has shown it needs more to start gets that
    as its minimum until unplugged."""
    max_charging_cur: Annotated[Limit, limit(0, MAX_MA), ui("mA")] = _D.max_charging_cur
    """The most this EVSE may take on each phase. `0`: it never charges. A number above 0
    but below `min_charging_cur` is refused. May be a formula (evaluated per phase with
    the EVSE as its own device; the lowest value counts). An HTTP-input EVSE may lower it
    with the `max_charging_current` it pushes."""
    prio: Annotated[int, int_range(0, 100), ui()] = _D.prio
    """Priority; a higher number is served first (see Priorities)."""
    phase_rotation: Annotated[int, choice(0, 120, 240), ui("degrees", advanced=True)] = (
        _D.phase_rotation)
    """How the wallbox's L1, L2, L3 are wired to the building's phases (see Phase
    rotation)."""
    used_phases: Annotated[int, int_range(0, 7), ui(advanced=True)] = _D.used_phases
    """The wallbox phases the car charges on, as a bit mask in the wallbox's own order:
    1 = L1, 2 = L2, 4 = L3, 3 = L1+L2, 7 = all three. `0`: determine from the EVSE's
    meter."""
    attach: Annotated[str, meter_id(), ui()] = _D.attach
    """The meter (`M…`) that measures this EVSE, for an EVSE without a meter of its own
    (see Attached meters). `""`: none."""
    fixed_rfid: Annotated[str, text(64), ui(advanced=True)] = _D.fixed_rfid
    """An RFID/PIN applied at every plug-in when no card came first (see users.md)."""
    enable_snooze: Annotated[bool, flag(), ui(advanced=True)] = _D.enable_snooze
    """Kept and shown for clients that send it; no effect in chargebrain."""
    enable_wakeup: Annotated[bool, flag(), ui(advanced=True)] = _D.enable_wakeup
    """Wake a car that does not draw by interrupting the control pilot (at most 3 times
    per plug-in; see decisions.md, "Waking sleeping cars")."""
    phase_switch_auto: Annotated[bool, flag(), ui(advanced=True)] = _D.phase_switch_auto
    """Automatic 1/3-phase switching for surplus charging: a Power Brain wallbox
    (`evse_powerbrain`) whose controller permits switching with a car plugged in (its
    `phase_switch_plugged`) charges on one phase while the surplus is too small for three
    (see load-management.md, "Switching between one and three phases")."""
    battery_save_threshold: Annotated[int, int_range(0, 80_000), ui(advanced=True)] = (
        _D.battery_save_threshold)
    """Kept and shown for clients that send it; no effect in chargebrain."""
    users: Annotated[tuple[str, ...], user_ids(), ui()] = _D.users
    """Ids of the users who may charge here. Not empty: a car charges only after one of
    them presented a card (see Users on an EVSE)."""
    charging_rules: Annotated[tuple[dict[str, Any], ...], rule_list(), ui(advanced=True)] = (
        _D.charging_rules)
    """The EVSE's charging rules, classic form (see rules.md)."""
    crule_set: Annotated[dict[str, Any] | None, rule_set(), ui(advanced=True)] = _D.crule_set
    """The EVSE's rule set, newer form; used instead of `charging_rules` when set (see
    rules.md)."""
    ocpp_gateway_url: Annotated[str, gateway_url(), ui(advanced=True)] = _D.ocpp_gateway_url
    """The OCPP gateway: this EVSE appears to an outside OCPP 1.6J backend (billing,
    monitoring) as a charge point of its own, connecting to this URL (`ws://` or `wss://`;
    the charge point id is appended as the last path segment). `""`: no gateway. See
    ocpp.md."""
    ocpp_gateway_client_id: Annotated[str, text(64), ui(advanced=True)] = (
        _D.ocpp_gateway_client_id)
    """The charge point id (ChargeBox ID) the backend knows this EVSE by. `""`: the device
    id (`E2`). EVSEs with the same URL, id and password are the connectors of one charge
    point, numbered 1, 2, … in the order of their device ids."""
    ocpp_gateway_password: Annotated[str, secret_text(), ui(advanced=True)] = (
        _D.ocpp_gateway_password)
    """The password the gateway sends to the backend (HTTP Basic, the charge point id as
    the user; OCPP security profile 1, or 2 with `wss://`). `""`: none. Never shown:
    get_devices answers `ocpp_gateway_password_set`."""
    password: Annotated[str, secret_text(), ui(advanced=True)] = _D.password
    """`evse_cm` only: the slave charging manager's admin password, sent with every
    request to it (empty: none). Never shown: get_devices shows `password_set`."""
    publish_sunspec: Annotated[bool, flag(), ui(advanced=True)] = _D.publish_sunspec
    """Show this EVSE at the SunSpec server's device unit (model 113 with its state and
    number; see sunspec.md)."""


class MeterSettings(CommonSettings):
    """The settings of a meter."""

    role: Annotated[int, int_range(0, 6), ui()] = _D.role
    """What the meter measures and how it counts for load management (see Meter
    roles)."""
    invert: Annotated[bool, flag(), ui(advanced=True)] = _D.invert
    """Negate power and currents, for a meter mounted the other way round. The energy
    counters are not changed."""
    factor: Annotated[float, number_range(-1e6, 1e6), ui(advanced=True)] = _D.factor
    """Multiply power and currents, for example by a current transformer's ratio. The
    energy counters are not changed. Applies to meters that are read or pushed, not to
    expression and virtual meters."""
    phases: Annotated[int, int_range(1, 7), ui(advanced=True)] = _D.phases
    """The phases the meter measures, as a bit mask (1 = L1, 2 = L2, 4 = L3, 7 = all).
    Shown as `used_phases` in get_dev_info; not used in any calculation."""
    is_va: Annotated[bool, flag(), ui(advanced=True)] = _D.is_va
    """The meter's power is apparent power (VA); shown as `is_va` in get_dev_info (which
    is also true when the meter reports VA itself)."""
    expr: Annotated[str, formula(), ui("W")] = _D.expr
    """The formula of a `meter_expression`: its power in W (formulas.md); the energy
    counters are integrated from it."""
    publish_sunspec: Annotated[bool, flag(), ui(advanced=True)] = _D.publish_sunspec
    """Show this meter at the SunSpec server's device unit (model 213 with its role and
    number; see sunspec.md)."""


class GroupSettings(CommonSettings):
    """The settings of an EVSE group."""

    max_charging_cur: Annotated[Limit, limit(0, MAX_MA), ui("mA")] = _D.max_charging_cur
    """The group's feed: the most the group may carry on each phase, its EVSEs plus the
    non-EVSE load its own meters measure. `0`: no limit of its own (its EVSEs then share
    only the limits above it). May be a formula (per phase; the lowest value counts). **A
    new group gets 16 A**; set the feed's rating."""
    prio: Annotated[int, int_range(0, 100), ui()] = _D.prio
    """Ranks the group against the EVSEs and groups beside it (see Priorities)."""


DEVICE_SHAPES: dict[str, type[CommonSettings]] = {
    "evse": EvseSettings, "meter": MeterSettings, "group": GroupSettings}


@functools.cache
def setting_keys(kind: str) -> tuple[str, ...]:
    """The settings of a device of this kind ("evse", "meter", "group"), in order."""
    return tuple(DEVICE_SHAPES[kind].model_fields)


def device_changes(doc: Mapping[str, Any], base: DeviceConfig, kind: str) -> DeviceConfig:
    """`base` with the settings `doc` carries, or ApiError 400 naming the first bad key."""
    shape = check(DEVICE_SHAPES[kind], doc, list(doc))
    cfg = base.with_changes(**{k: getattr(shape, k) for k in shape.model_fields_set})
    cfg = cfg.with_changes(address=address_form(cfg.dev_type, cfg.address))
    maximum = cfg.max_charging_cur
    if kind == "evse" and isinstance(maximum, int) and 0 < maximum < cfg.min_charging_cur:
        raise ApiError(400, "max_charging_cur is below min_charging_cur")
    return cfg
