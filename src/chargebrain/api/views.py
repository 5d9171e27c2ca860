"""The cFos JSON answers: the manager's state and settings in the documented shapes.

Serialises get_dev_info, get_params and get_devices, with the 2.x names and the 1.x
aliases clients still read, and the stored form of the settings. What comes in (the
settings set_params and set_device take) is declared in api/shapes/; the settings shown
here are those declarations' fields. This module never changes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from chargebrain.api.shapes.devices import DEVICE_SHAPES, setting_keys
from chargebrain.api.shapes.site import HARDWARE_ATTRS, PERSISTED_KEYS, VOLTAGE
from chargebrain.devices.powerbrain import address_form
from chargebrain.manager.config import DeviceConfig, Limit, SiteParams
from chargebrain.manager.plans import plan_of
from chargebrain.powerbrain.phase_switch import PhaseSwitchSettings
from chargebrain.servers.mqtt.url import masked

if TYPE_CHECKING:
    from chargebrain.manager.runtime import ChargingManager
    from chargebrain.manager.state import DeviceRuntime

VERSION = "2.0.1"
VERSION_CODE = (2 << 24) | (0 << 16) | 1


def hardware_json(settings: PhaseSwitchSettings) -> dict[str, Any]:
    return {key: getattr(settings, attr) for key, attr in HARDWARE_ATTRS.items()}


def site_persisted(params: SiteParams) -> dict[str, Any]:
    return {k: getattr(params, k) for k in PERSISTED_KEYS}


def site_from_stored(stored: Mapping[str, Any]) -> SiteParams:
    known = {f.name for f in fields(SiteParams)}
    return SiteParams(**{k: v for k, v in stored.items() if k in known})


def device_config_json(cfg: DeviceConfig, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"dev_type": cfg.dev_type, "dev_id": cfg.dev_id}
    secret = DEVICE_SHAPES[kind].secret
    for name in setting_keys(kind):
        value = getattr(cfg, name)
        if name in secret:  # never shown: whether it is set
            out[f"{name}_set"] = bool(value)
            continue
        if name == "device_enabled":
            value = 1 if value else 0
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def device_from_stored(stored: Mapping[str, Any]) -> DeviceConfig:
    known = {f.name for f in fields(DeviceConfig)}
    values = {k: v for k, v in stored.items() if k in known}
    for key in ("users", "charging_rules"):
        if key in values and isinstance(values[key], list):
            values[key] = tuple(values[key])
    if "device_enabled" in values:
        values["device_enabled"] = bool(values["device_enabled"])
    if isinstance(values.get("address"), str) and isinstance(values.get("dev_type"), str):
        values["address"] = address_form(values["dev_type"], values["address"])
    return DeviceConfig(**values)


# --- state out -------------------------------------------------------------------------


def _limit_out(value: Limit) -> Limit:
    return value


def params_json(mgr: ChargingManager, now: float) -> dict[str, Any]:
    p = mgr.site
    s = mgr.decider.last_site
    evse_w = round(s.evse_power_w) if s else 0
    avail_w = round(s.available.clamp_low(0).total() * VOLTAGE / 1000) if s else 0
    max_total_w = _watts(mgr.decider.evaluated_max_total_ma)
    out: dict[str, Any] = {
        "title": p.title,
        "desc": p.desc,
        "max_total_cur_prc": p.max_total_cur_prc,
        "max_total_current": _limit_out(p.max_total_current),
        "reserve_current": p.reserve_current,
        "overdraft_cur": mgr.decider.overdraft_cur,
        "cur_overdraft": s.overdraft_applied_ma if s else 0,
        "max_total_evse_current": _limit_out(p.max_total_evse_current),
        "cons_evse_power": evse_w,
        "avail_evse_power": avail_w,
        "cons_pwr": round(s.consumed_w) if s else 0,
        "prod_pwr": round(s.produced_w) if s else 0,
        "grid_pwr": round(s.grid_w) if s else 0,
        "surplus_power": round(s.surplus_w) if s else 0,
        "lb_enabled": p.lb_enabled,
        "disable_policy": p.disable_policy,
        "max_imbalance_cur": p.max_imbalance_cur,
        "imbalance_add": p.imbalance_add,
        "min_pause_time": p.min_pause_time,
        "phase_switch_delay": p.phase_switch_delay,
        **hardware_json(mgr.inventory.powerbrain.phase_switching),
        "reduce_on_com_err": p.reduce_on_com_err,
        "surplus_expr": p.surplus_expr,
        "price_model": p.price_model,
        "fixed_price": p.fixed_price,
        "ocpp_srv_port": p.ocpp_srv_port,
        "ocpp_srv_password_set": bool(p.ocpp_srv_password),
        "ocpp_srv_tls_mode": p.ocpp_srv_tls_mode,
        "ocpp_srv_accept_unknown": p.ocpp_srv_accept_unknown,
        "sunspec_port": p.sunspec_port,
        "sunspec_id": p.sunspec_id,
        "cm_master_enabled": p.cm_master_enabled,
        "cm_master_timeout": p.cm_master_timeout,
        "cm_master_fallback": p.cm_master_fallback,
        "cycle_time": mgr.cycle_time_ms,
        "cycle_ms": p.cycle_ms,
        "mqtt_url": masked(p.mqtt_url),
        "mqtt_serial_prefix": p.mqtt_serial_prefix,
        "mqtt_ha_discovery": p.mqtt_ha_discovery,
        "metrics_public": p.metrics_public,
        "history_max_mb": p.history_max_mb,
        "max_evses": mgr.max_evses,
        "shareware_mode": False,
        "version": VERSION,
        "time": int(now),
        "vsn": {
            "vendorid": 52997,
            "version": VERSION_CODE,
            "productid": 1,
            "serialno": mgr.serial,
            "platform": "chargebrain",
        },
        "ocpp_gateway_license_cnt": mgr.max_evses,
        "ocpp_gateway_licenses_used": sum(
            1 for rt in mgr.devices.values() if rt.evse is not None and rt.config.ocpp_gateway_url),
        # 1.x watt-based names, still read by some clients.
        "max_total_power": max_total_w,
        "power_reserve": _watts(p.reserve_current),
        "overdraft": _watts(mgr.decider.overdraft_cur),
        "max_total_evse_power": _watts(mgr.decider.evaluated_max_evse_ma) or max_total_w,
        "consumed_evse_power": evse_w,
        "remaining_evse_power": avail_w,
        "max_imbalance": _watts(p.max_imbalance_cur, phases=1),
    }
    return out


def _watts(ma: int | float | None, phases: int = 3) -> int:
    return round((ma or 0) * VOLTAGE * phases / 1000)


def dev_meta(mgr: ChargingManager) -> dict[str, str]:
    return mgr.inventory.types.names()


STATE_CP_TEXT = {1: "Waiting", 2: "Vehicle detected", 3: "Charging", 4: "Charging (vent)",
                 5: "Error", 6: "Offline"}


@dataclass(frozen=True)
class Viewer:
    """Who reads get_dev_info: user ids are secrets (they authenticate users), so only the
    admin sees them; everyone sees the name of a session's user if the user allows it."""

    admin: bool = False
    user_label: Callable[[str], str] = lambda _user_id: ""


def device_json(rt: DeviceRuntime, mono_now: float, viewer: Viewer = Viewer()) -> dict[str, Any]:
    cfg = rt.settings
    kind = rt.kind_name
    st = rt.status
    com_err_secs = int(mono_now - st.com_state_since)
    out: dict[str, Any] = {
        "dev_type": cfg.dev_type,
        "device_enabled": 1 if cfg.device_enabled else 0,
        "name": cfg.name,
        "address": cfg.address,
        "id": cfg.id,
        "dev_id": cfg.dev_id,
        "number": cfg.number,
        "desc": cfg.desc,
        "com_err": st.com_err,
        "com_err_secs": max(0, com_err_secs),
        "com_errors": st.com_errors,
        "status": "",
        "last_error": st.last_error,
        "is_evse": kind in ("evse", "group"),
        "used_phases": cfg.used_phases if kind == "evse" else cfg.phases,
        "label": cfg.label,
        "group": cfg.group,
    }
    if kind == "evse":
        out.update(_evse_json(rt, viewer))
    elif kind == "group":
        out.update(_group_json(rt))
    else:
        out.update(_meter_json(rt))
    return out


def _evse_json(rt: DeviceRuntime, viewer: Viewer) -> dict[str, Any]:
    cfg = rt.settings
    ev = rt.evse
    assert ev is not None
    reading = ev.reading
    state = int(reading.state) if (reading and not rt.status.com_err) else 6
    d = ev.decision
    # The wallbox's own phase order, as its current_l1..3 (docs/decisions.md).
    currents = reading.currents if reading else None
    power = round(reading.power_w) if reading else 0
    plan = plan_of(ev)
    out: dict[str, Any] = {
        "min_charging_cur": cfg.min_charging_cur,
        "max_charging_cur": cfg.max_charging_cur,
        "prio": cfg.prio,
        "phase_rotation": cfg.phase_rotation,
        "charging_enabled": bool(d.charging_enabled) if d else False,
        "power_w": power,
        "cur_charging_power": power,
        "current_l1": reading.currents.l1 if reading else 0,
        "current_l2": reading.currents.l2 if reading else 0,
        "current_l3": reading.currents.l3 if reading else 0,
        "last_set_charging_cur": ev.last_set_ma,
        "total_energy": round(ev.total_energy_wh),
        "ta_en": round(ev.transaction_energy_wh),
        "charging_dur": round(ev.charging_secs),
        "phases": currents.mask(500) if currents else 0,
        "state": state,
        "lreason": d.lreason if d else 0,
        "reason": d.reason if d else "",
        "model": reading.model if reading and reading.model else rt.model,
        "paused": bool(d.paused) if d else False,
        "pause_reason": d.pause_reason if d else 0,
        "pause_time": d.pause_time if d else 0,
        "pause_min_time": rt.manager_min_pause,
        "needs_auth": ev.needs_auth,
        "user": viewer.user_label(ev.user_id) if ev.user_id else "",
        "overrides": ev.overrides,
        "ov_cur": ev.ov_cur if ev.ov_cur is not None else 0,
        "attach": cfg.attach,
        "charging_rules": list(cfg.charging_rules),
        "rule_wish": ev.rule_wish if ev.rule_wish is not None else -1,
        "rule_source": ev.rule_source,
        "departure": round(plan.departure) if plan.departure is not None else 0,
        "req_energy": round(plan.energy_wh) if plan.energy_wh is not None else 0,
        "evse": {
            "cp_state": STATE_CP_TEXT.get(state, "Error"),
            "cp_fault": state == 5,
            "pp_state": "cable" if reading and reading.state.plugged else "no cable",
            "charging": bool(reading and reading.state.charging),
            "current": d.current_ma if d else 0,
            "enabled": bool(d.charging_enabled) if d else False,
            "dc_sensor_fault": False,
            "dc_sensor_faults": 0,
            "dc_sensor_glitches": 0,
        },
    }
    if viewer.admin:
        out["users"] = list(cfg.users)
        out["user_id"] = ev.user_id
    return out


def _meter_json(rt: DeviceRuntime) -> dict[str, Any]:
    cfg = rt.settings
    r = rt.meter
    power = round(r.power_w) if r else 0
    volts = r.voltages if r else (0.0, 0.0, 0.0)
    out = {
        "is_va": cfg.is_va or bool(r and r.is_va),
        "invert": cfg.invert,
        "factor": cfg.factor,
        "import": round(r.import_wh) if r else 0,
        "export": round(r.export_wh) if r else 0,
        "power_w": power,
        "power": power,
        "current_l1": r.currents.l1 if r else 0,
        "current_l2": r.currents.l2 if r else 0,
        "current_l3": r.currents.l3 if r else 0,
        "voltage_l1": round(volts[0]),
        "voltage_l2": round(volts[1]),
        "voltage_l3": round(volts[2]),
        "role": cfg.role,
        "model": (r.model if r and r.model else rt.model),
    }
    if r is not None and r.soc is not None:
        out["soc"] = r.soc
    if cfg.expr:
        out["expr"] = cfg.expr
    return out


def _group_json(rt: DeviceRuntime) -> dict[str, Any]:
    cfg = rt.settings
    g = rt.group_state
    return {
        "max_charging_cur": cfg.max_charging_cur,
        "prio": cfg.prio,
        "current_l1": g.l1 if g else 0,
        "current_l2": g.l2 if g else 0,
        "current_l3": g.l3 if g else 0,
        "state": 1,
        "model": rt.model,
    }


def dev_info_json(
    mgr: ChargingManager, now: float, mono_now: float, viewer: Viewer = Viewer()
) -> dict[str, Any]:
    return {
        "params": params_json(mgr, now),
        "auth_cnt": mgr.auth_count,
        "loadmgr_disabled": not mgr.site.lb_enabled,
        "devices": [device_json(rt, mono_now, viewer) for rt in mgr.inventory.devices_in_order()],
    }
