"""Charging-manager commands: state, parameters, devices and HTTP-input devices.

What set_params, set_device and the pushes take is declared in api/shapes/ (and
get_config_schema shows it); this module applies it. The formulas of set_params and
set_device are compiled in the worker thread before the request is checked and applied
(api/offload.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chargebrain.api import formula_texts, known_keys, views
from chargebrain.api.answers import JSON_TYPE
from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.dev_info_cache import dev_info_bytes
from chargebrain.api.errors import ApiError
from chargebrain.api.offload import prepare_request_formulas
from chargebrain.api.params import (
    clean,
    parse_number,
    refuse_unknown,
)
from chargebrain.api.shapes import pushes
from chargebrain.api.shapes.devices import device_changes
from chargebrain.api.shapes.schema import config_schema
from chargebrain.api.shapes.site import site_changes
from chargebrain.core.formula import prepared
from chargebrain.devices.ajax import AjaxEvse
from chargebrain.devices.powerbrain import internal_address, meter_unit
from chargebrain.devices.registry import Kind
from chargebrain.manager.config import ConfigError, DeviceConfig
from chargebrain.manager.runtime import ChargingManager
from chargebrain.manager.users import UserDirectory


def _mgr(req: Request) -> ChargingManager:
    return req.app.manager


def _object_body(req: Request) -> dict[str, Any]:
    if not isinstance(req.body, dict):
        raise ApiError(400, "a JSON object is required in the request body")
    return req.body


def _dev_id(req: Request) -> str:
    dev_id = clean(req.params.get("dev_id", "")).upper()
    if not dev_id:
        raise ApiError(400, "dev_id is required")
    if dev_id not in _mgr(req).devices:
        raise ApiError(404, f"no device {dev_id}")
    return dev_id


@command("get_dev_info", Permission.PUBLIC, "State of all devices and the global parameters")
async def get_dev_info(req: Request) -> Any:
    app = req.app

    def user_label(user_id: str) -> str:
        user = app.users.get(user_id)
        return user.name if user is not None and user.display else ""

    viewer = views.Viewer(admin=req.caller.is_admin, user_label=user_label)
    body = dev_info_bytes(app.manager, app.clock.now(), app.clock.monotonic(), viewer)
    return web.Response(body=body, content_type=JSON_TYPE)


def params_answer(mgr: ChargingManager, now: float) -> dict[str, Any]:
    """The get_params answer."""
    out = views.params_json(mgr, now)
    out["dev_meta"] = views.dev_meta(mgr)
    return out


@command("get_params", Permission.PUBLIC, "Global parameters and the device type names")
async def get_params(req: Request) -> Any:
    return params_answer(_mgr(req), req.app.clock.now())


@command("get_config_schema", Permission.PUBLIC,
         "JSON Schema of the settings (site, each kind of device, user) for forms")
async def get_config_schema(req: Request) -> Any:
    return config_schema()


@command("get_dev_types", Permission.PUBLIC, "Device types and their display names")
async def get_dev_types(req: Request) -> Any:
    return views.dev_meta(_mgr(req))


def _kind_of(mgr: ChargingManager, dev_type: str) -> str:
    try:
        dtype = mgr.inventory.dtype_of(dev_type)
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    if dtype.kind is Kind.EVSE:
        return "evse"
    if dtype.kind is Kind.GROUP:
        return "group"
    return "meter"


def apply_device(mgr: ChargingManager, doc: dict[str, Any],
                 users: UserDirectory) -> dict[str, Any]:
    """Create or update one device from its JSON settings; returns the stored settings."""
    dev_id = clean(str(doc.get("dev_id", ""))).upper()
    existing = mgr.devices.get(dev_id) if dev_id else None
    if existing is not None:
        base = existing.settings
        dev_type = str(doc.get("dev_type", base.dev_type))
        if dev_type != base.dev_type and mgr.inventory.types.get(base.dev_type) is not None:
            # (A device of an unknown type, kept as stored, may be given a type.)
            if mgr.inventory.is_internal(base):
                raise ApiError(400, f"{dev_id} is built in: its type stays {base.dev_type}")
            raise ApiError(400, f"{dev_id} is a {base.dev_type}; delete it and create a new "
                           "device to change its type")
        base = base.with_changes(dev_type=dev_type)
    else:
        dev_type = str(doc.get("dev_type", ""))
        if not dev_type:
            raise ApiError(400, "dev_type is required for a new device")
        kind = _kind_of(mgr, dev_type)
        if not dev_id:
            dev_id = mgr.inventory.next_dev_id(kind != "meter")
        base = DeviceConfig(dev_id, dev_type, name=dev_id)
    kind = _kind_of(mgr, dev_type)
    known_keys.check_device(doc, kind)
    cfg = device_changes(doc, base, kind)
    unknown = [u for u in cfg.users if u not in base.users and users.get(u) is None]
    if unknown:
        # (An id stored before its user was deleted stays, so the EVSE stays editable.)
        raise ApiError(400, f"users: no user {unknown[0]}")
    if existing is None and "id" not in doc and dev_type == "meter_powerbrain" and not (
            internal_address(cfg.address)):
        # Another controller's S0 meters answer as units 2 and 3, never as unit 1.
        cfg = cfg.with_changes(id=meter_unit(cfg.address))
    try:
        mgr.inventory.upsert_device(cfg)
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    return views.device_config_json(cfg, kind)


@command("set_params", Permission.ADMIN, "Set global parameters, or one device's settings")
async def set_params(req: Request) -> Any:
    body = _object_body(req)
    compiled = await prepare_request_formulas(req.app.worker,
                                              lambda: formula_texts.params_body(body))
    with prepared(compiled):
        return _set_params(req, body)


def _set_params(req: Request, body: dict[str, Any]) -> Any:
    mgr = _mgr(req)
    known = known_keys.site_keys(params_answer(mgr, req.app.clock.now()))
    refuse_unknown(body, known | {"devices"}, "in set_params")
    if "devices" in body:
        devices = body["devices"]
        if not isinstance(devices, list) or len(devices) != 1 or not isinstance(devices[0], dict):
            raise ApiError(400, "devices must be a list with exactly one device object")
        apply_device(mgr, devices[0], req.app.users)
        return "ok"
    if "overdraft_cur" in body and _same_number(body["overdraft_cur"], mgr.decider.overdraft_cur):
        # The overdraft as get_params showed it, sent back: no reset asked.
        body = {k: v for k, v in body.items() if k != "overdraft_cur"}
    controller = mgr.inventory.powerbrain
    changes = site_changes(body, mgr.site, controller.phase_switching)
    try:
        mgr.settings.set(changes.site, persist=changes.persist)
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    if changes.hardware is not None:
        controller.configure_phase_switching(changes.hardware)
    if changes.reset_overdraft:
        mgr.decider.reset_overdraft()
    return "ok"


def _same_number(value: Any, current: int) -> bool:
    try:
        return current != 0 and parse_number(value, "overdraft_cur") == current
    except ApiError:
        return False


@command("get_devices", Permission.ADMIN, "The configuration of every device")
async def get_devices(req: Request) -> Any:
    mgr = _mgr(req)
    return [views.device_config_json(rt.settings, rt.kind_name)
            for rt in mgr.inventory.devices_in_order()]


@command("set_device", Permission.ADMIN, "Create or update one device ({devices:[dev]})")
async def set_device(req: Request) -> Any:
    body = _object_body(req)
    if "devices" in body:
        refuse_unknown(body, frozenset({"devices"}), "in set_device")
    devices = body.get("devices", [body] if "dev_id" in body or "dev_type" in body else None)
    if not isinstance(devices, list) or len(devices) != 1 or not isinstance(devices[0], dict):
        raise ApiError(400, "devices must be a list with exactly one device object")
    doc = devices[0]
    compiled = await prepare_request_formulas(req.app.worker, lambda: formula_texts.device(doc))
    with prepared(compiled):
        return apply_device(_mgr(req), doc, req.app.users)


@command("del_device", Permission.ADMIN, "Delete a device")
async def del_device(req: Request) -> Any:
    dev_id = _dev_id(req)
    try:
        _mgr(req).inventory.delete_device(dev_id)
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    _mgr(req).decider.schedules.forget(dev_id)  # its charging schedule goes with it
    return "ok"


@command("reset_device", Permission.ADMIN, "Delete and recreate a device")
async def reset_device(req: Request) -> Any:
    try:
        _mgr(req).reset_device(_dev_id(req))
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    return "ok"


def _fields(req: Request) -> dict[str, Any]:
    """Pushed values: the JSON body, or the query parameters for GET."""
    if req.body is not None:
        return _object_body(req)
    return {k: v for k, v in req.params.items() if k not in ("cmd", "dev_id")}


@command("set_ajax_meter", Permission.ADMIN, "Push the values of an HTTP-input meter")
async def set_ajax_meter(req: Request) -> Any:
    dev_id = _dev_id(req)
    reading = pushes.meter_reading(_fields(req))
    try:
        _mgr(req).pushes.push_meter(dev_id, reading)
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    return "ok"


@command("set_ajax_evse", Permission.ADMIN, "Push an HTTP-input EVSE's values; answers its orders")
async def set_ajax_evse(req: Request) -> Any:
    dev_id = _dev_id(req)
    reading = pushes.evse_reading(_fields(req))
    mgr = _mgr(req)
    try:
        rt = mgr.pushes.push_evse(dev_id, reading)
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    # A push that matters has woken a cycle: answer with its decision. Any other push is
    # kept for the next periodic cycle and answered with the decision in force.
    await mgr.wait_woken()
    decision = rt.evse.decision if rt.evse else None
    answer: dict[str, Any] = {
        "device_enabled": rt.settings.device_enabled,
        "charging_enabled": bool(decision and decision.charging_enabled),
        "paused": bool(decision and decision.paused),
        "charging_current": decision.current_ma if decision and decision.charging_enabled else 0,
    }
    if rt.config.enable_wakeup and isinstance(rt.driver, AjaxEvse):
        # Only EVSEs allowed to wake cars carry the extra order; others answer as the vendor.
        answer["wake_up"] = rt.driver.take_wake()
    return answer
