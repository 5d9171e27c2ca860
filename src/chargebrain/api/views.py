"""The cFos JSON shapes: parsing configuration in, serialising state out.

The one module that spells the API's field names (get_dev_info, get_params, set_params,
get_devices). Parsing validates every field and raises ApiError before anything is
changed; serialising turns the manager's snapshot into the documented shapes, with the
2.x names and the 1.x aliases clients still read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from chargebrain.api.errors import ApiError
from chargebrain.api.params import parse_bool, parse_int, parse_number
from chargebrain.core.formula import FormulaError, compile_formula
from chargebrain.core.rules import validate_rules
from chargebrain.devices.powerbrain import address_form
from chargebrain.manager.config import DeviceConfig, Limit, SiteParams
from chargebrain.powerbrain.phase_switch import CP_OFF_RANGE_S, PhaseSwitchSettings

if TYPE_CHECKING:
    from chargebrain.manager.runtime import ChargingManager
    from chargebrain.manager.state import DeviceRuntime

VERSION = "2.0.1"
VERSION_CODE = (2 << 24) | (0 << 16) | 1
VOLTAGE = 230


# --- field parsers ---------------------------------------------------------------------


def _int_range(lo: int, hi: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        v = parse_int(value, name)
        if not lo <= v <= hi:
            raise ApiError(400, f"{name}: {v} out of range {lo}..{hi}")
        return v

    return parse


def _choice(*allowed: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        v = parse_int(value, name)
        if v not in allowed:
            raise ApiError(400, f"{name}: {v} is not one of {', '.join(map(str, allowed))}")
        return v

    return parse


def _bool(name: str, value: Any) -> bool:
    return parse_bool(value, name)


def _text(limit: int = 200) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ApiError(400, f"{name}: a string is required")
        s = str(value)
        if len(s) > limit:
            raise ApiError(400, f"{name}: longer than {limit} characters")
        return s

    return parse


def _word(*allowed: str) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        text = _text(20)(name, value).strip().lower()
        if text not in allowed:
            raise ApiError(400, f"{name}: {text!r} is not one of {', '.join(allowed)}")
        return text

    return parse


def _password(name: str, value: Any) -> str:
    text = _text(64)(name, value)
    if any(ord(c) < 32 for c in text):
        raise ApiError(400, f"{name}: no control characters")
    return text


def _formula_text(name: str, value: Any) -> str:
    text = _text(4096)(name, value)
    if text.strip():
        try:
            compile_formula(text)
        except FormulaError as exc:
            raise ApiError(400, f"{name}: {exc}") from None
    return text


def _limit(lo: int, hi: int) -> Callable[[str, Any], Limit]:
    """A current in mA, or a formula that gives one."""

    def parse(name: str, value: Any) -> Limit:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _int_range(lo, hi)(name, value)
        text = _text(4096)(name, value).strip()
        try:
            return _int_range(lo, hi)(name, float(text))
        except (ValueError, ApiError) as exc:
            if isinstance(exc, ApiError) and _is_number(text):
                raise
        try:
            compile_formula(text)
        except FormulaError as exc:
            raise ApiError(400, f"{name}: {exc}") from None
        return text

    return parse


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _float(name: str, value: Any) -> float:
    return parse_number(value, name)


def _float_range(lo: float, hi: float) -> Callable[[str, Any], float]:
    def parse(name: str, value: Any) -> float:
        v = parse_number(value, name)
        if not lo <= v <= hi:
            raise ApiError(400, f"{name}: {v:g} out of range {lo:g}..{hi:g}")
        return v

    return parse


def _rules(name: str, value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ApiError(400, f"{name}: a list of rule objects is required")
    problems = validate_rules(value)
    if problems:
        raise ApiError(400, f"{name}: {'; '.join(problems)}")
    return tuple(dict(r) for r in value)


def _users(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ApiError(400, f"{name}: a list of user ids is required")
    out = []
    for v in value:
        if not isinstance(v, str | int) or isinstance(v, bool) or not str(v).strip():
            raise ApiError(400, f"{name}: {v!r} is not a user id")
        out.append(str(v))
    return tuple(out)


def _crule_set(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(400, f"{name}: an object is required")
    problems = validate_rules(value)
    if problems:
        raise ApiError(400, f"{name}: {'; '.join(problems)}")
    return dict(value)


def _attach(name: str, value: Any) -> str:
    s = _text(16)(name, value).strip()
    if s and not (s[0] in "Mm" and s[1:].isdigit()):
        raise ApiError(400, f"{name}: {s!r} is not a meter id")
    return s.upper()


@dataclass(frozen=True)
class Field:
    name: str
    parse: Callable[[str, Any], Any]
    persist: bool = True
    secret: bool = False  # never shown (get_params says whether it is set)


SITE_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("title", _text(100)),
        Field("desc", _text(500)),
        Field("max_total_current", _limit(0, 2_000_000)),
        Field("reserve_current", _int_range(0, 2_000_000)),
        Field("max_total_evse_current", _limit(0, 2_000_000)),
        Field("lb_enabled", _bool),
        Field("disable_policy", _choice(-1, 0, 1)),
        Field("max_imbalance_cur", _int_range(0, 2_000_000)),
        Field("imbalance_add", _bool),
        Field("min_pause_time", _int_range(0, 86_400)),
        Field("phase_switch_delay", _int_range(0, 86_400)),
        Field("reduce_on_com_err", _bool),
        Field("surplus_expr", _formula_text),
        Field("price_model", _int_range(0, 10)),
        Field("fixed_price", _float),
        Field("max_total_cur_prc", _int_range(0, 100), persist=False),
        Field("cycle_ms", _int_range(200, 10_000)),
        Field("ocpp_srv_port", _int_range(0, 65_535)),
        Field("ocpp_srv_password", _password, secret=True),
        Field("ocpp_srv_tls_mode", _word("off", "on")),
        Field("ocpp_srv_accept_unknown", _bool),
        Field("sunspec_port", _int_range(0, 65_535)),
        Field("sunspec_id", _int_range(1, 246)),
        Field("cm_master_enabled", _bool),
        Field("cm_master_timeout", _int_range(40, 86_400)),
        Field("cm_master_fallback", _int_range(0, 2_000_000)),
    )
}
# 1.x watt-based names some clients still send: converted to per-phase mA.
WATT_ALIASES = {
    "max_total_power": "max_total_current",
    "power_reserve": "reserve_current",
    "max_total_evse_power": "max_total_evse_current",
    "max_imbalance": "max_imbalance_cur",
}
#: Watt names that mean one phase (the imbalance is a difference between phases).
SINGLE_PHASE_WATTS = frozenset({"max_imbalance"})
MAX_WATTS = 1e12  # far above any current a watt name can stand for
SITE_STATE_FIELDS = ("overdraft_cur",)
# The controller's hardware configuration, set and read with the site parameters (the
# controller keeps it; API name -> PhaseSwitchSettings attribute).
HARDWARE_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("phase_switch_plugged", _bool),
        Field("phase_switch_cp_s", _int_range(*CP_OFF_RANGE_S)),
    )
}
_HARDWARE_ATTRS = {"phase_switch_plugged": "plugged", "phase_switch_cp_s": "cp_off_s"}


def parse_site_changes(
    body: Mapping[str, Any], current: SiteParams
) -> tuple[SiteParams, int | None]:
    """New site params from a set_params body, and an overdraft reset if one was asked."""
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key in WATT_ALIASES and WATT_ALIASES[key] in body:
            continue  # the answer's 1.x echo of a current also given: the current counts
        if key in WATT_ALIASES:
            # (Bounded first: near the largest float, the mA overflowed to infinity.)
            watts = _float_range(-MAX_WATTS, MAX_WATTS)(key, value)
            phases = 1 if key in SINGLE_PHASE_WATTS else 3
            key, value = WATT_ALIASES[key], round(watts / phases / VOLTAGE * 1000)
        f = SITE_FIELDS.get(key)
        if f is not None:
            changes[key] = f.parse(key, value)
    overdraft = None
    if "overdraft_cur" in body:
        overdraft = _int_range(0, 0)("overdraft_cur", body["overdraft_cur"])
    return current.with_changes(**changes), overdraft


def parse_hardware_changes(
    body: Mapping[str, Any], current: PhaseSwitchSettings
) -> PhaseSwitchSettings | None:
    """New phase-switching settings from a set_params body; None when it names none."""
    changes = {
        _HARDWARE_ATTRS[key]: f.parse(key, body[key])
        for key, f in HARDWARE_FIELDS.items()
        if key in body
    }
    return replace(current, **changes) if changes else None


def hardware_json(settings: PhaseSwitchSettings) -> dict[str, Any]:
    return {key: getattr(settings, attr) for key, attr in _HARDWARE_ATTRS.items()}


def site_persisted(params: SiteParams) -> dict[str, Any]:
    return {k: getattr(params, k) for k, f in SITE_FIELDS.items() if f.persist}


def site_from_stored(stored: Mapping[str, Any]) -> SiteParams:
    known = {f.name for f in fields(SiteParams)}
    return SiteParams(**{k: v for k, v in stored.items() if k in known})


COMMON_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("name", _text(100)),
        Field("desc", _text(500)),
        Field("address", _text(300)),
        Field("id", _int_range(0, 255)),
        Field("number", _int_range(0, 10_000)),
        Field("device_enabled", _bool),
        Field("label", _text(100)),
        Field("group", _int_range(0, 10_000)),
    )
}
EVSE_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("min_charging_cur", _int_range(6000, 80_000)),
        Field("max_charging_cur", _limit(0, 2_000_000)),
        Field("prio", _int_range(0, 100)),
        Field("phase_rotation", _choice(0, 120, 240)),
        Field("used_phases", _int_range(0, 7)),
        Field("attach", _attach),
        Field("fixed_rfid", _text(64)),
        Field("enable_snooze", _bool),
        Field("enable_wakeup", _bool),
        Field("battery_save_threshold", _int_range(0, 80_000)),
        Field("users", _users),
        Field("charging_rules", _rules),
        Field("crule_set", _crule_set),
        Field("ocpp_gateway_client_id", _text(64)),
        Field("password", _password, secret=True),
        Field("publish_sunspec", _bool),
    )
}
METER_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("role", _int_range(0, 6)),
        Field("invert", _bool),
        Field("factor", _float_range(-1e6, 1e6)),
        Field("phases", _int_range(1, 7)),
        Field("is_va", _bool),
        Field("expr", _formula_text),
        Field("publish_sunspec", _bool),
    )
}
GROUP_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("max_charging_cur", _limit(0, 2_000_000)),
        Field("prio", _int_range(0, 100)),
    )
}


def device_fields(cfg_kind: str) -> dict[str, Field]:
    extra = {"evse": EVSE_FIELDS, "meter": METER_FIELDS, "group": GROUP_FIELDS}[cfg_kind]
    return {**COMMON_FIELDS, **extra}


def parse_device_changes(body: Mapping[str, Any], base: DeviceConfig, kind: str) -> DeviceConfig:
    changes: dict[str, Any] = {}
    for key, value in body.items():
        f = device_fields(kind).get(key)
        if f is not None:
            changes[key] = f.parse(key, value)
    cfg = base.with_changes(**changes)
    cfg = cfg.with_changes(address=address_form(cfg.dev_type, cfg.address))
    limit = cfg.max_charging_cur
    if kind == "evse" and isinstance(limit, int) and 0 < limit < cfg.min_charging_cur:
        raise ApiError(400, "max_charging_cur is below min_charging_cur")
    return cfg


def device_config_json(cfg: DeviceConfig, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"dev_type": cfg.dev_type, "dev_id": cfg.dev_id}
    for name, f in device_fields(kind).items():
        value = getattr(cfg, name)
        if f.secret:
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
        "ocpp_gateway_license_cnt": 0,
        "ocpp_gateway_licenses_used": 0,
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
