"""Meter definition files through the API: list, upload (validated, atomic) and delete.

An upload takes effect at once: the new `meter_<dev_type>` appears in get_dev_types and
devices of that type can be created. User files override bundled ones of the same type.
An upload is parsed, checked and written in the worker thread (api/offload.py); uploads
and deletions take effect one after the other, in the order they were asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.params import clean
from chargebrain.core.formula import prepare_formulas, prepared
from chargebrain.core.formula.cache import Prepared
from chargebrain.devices.meterdef import (
    MeterDefinition,
    MeterDefinitionError,
    builtin_definitions_dir,
    delete_user_definition,
    load_definitions,
    save_user_definition,
)

if TYPE_CHECKING:
    from chargebrain.api.services import Services
    from chargebrain.manager.runtime import ChargingManager


@command("get_meter_defs", Permission.ADMIN, "The meter definitions: dev_type, name, origin")
async def get_meter_defs(req: Request) -> Any:
    app = req.app
    builtin = load_definitions(builtin_definitions_dir(), None)
    out = []
    for dev_type, definition in sorted(app.types.definitions.items()):
        user_file = (app.meterdef_dir / f"{dev_type}.json").is_file()
        out.append({
            "dev_type": dev_type,
            "name": definition.name,
            "manufacturer": definition.manufacturer,
            "rtype": int(definition.rtype),
            "mtype": int(definition.mtype),
            "origin": "user" if user_file else "builtin",
            "overrides_builtin": user_file and dev_type in builtin,
        })
    return out


@command("set_meter_def", Permission.ADMIN, "Upload a meter definition (POST body: the file)")
async def set_meter_def(req: Request) -> Any:
    if req.method != "POST" or not req.raw_body.strip():
        raise ApiError(400, "POST the meter definition file as the request body")
    if len(req.raw_body) > 256 * 1024:
        raise ApiError(413, "a meter definition may be at most 256 KiB")
    app = req.app
    async with app.meterdefs_lock:
        try:
            definition, compiled = await app.worker.run(
                _save, app.meterdef_dir, req.raw_body, _faulted_formulas(app.manager))
        except MeterDefinitionError as exc:
            raise ApiError(400, f"invalid meter definition: {exc}") from None
        app.types.definitions[definition.dev_type] = definition
        with prepared(compiled):
            app.manager.inventory.retry_faulted()
    return {"dev_type": definition.dev_type, "name": definition.name}


def _faulted_formulas(mgr: ChargingManager) -> list[str]:
    """The formulas of the devices that cannot run (a new definition may let them)."""
    out: list[str] = []
    for rt in mgr.devices.values():
        if rt.fault:
            limit = rt.settings.max_charging_cur
            out += [limit, rt.settings.expr] if isinstance(limit, str) else [rt.settings.expr]
    return out


def _save(directory: Path, raw: bytes, formulas: list[str]) -> tuple[MeterDefinition, Prepared]:
    """In the worker thread: parse, check and store the definition; compile `formulas`."""
    return save_user_definition(directory, raw), prepare_formulas(formulas)


@command("del_meter_def", Permission.ADMIN, "Delete an uploaded meter definition")
async def del_meter_def(req: Request) -> Any:
    app = req.app
    dev_type = clean(req.params.get("dev_type", ""))
    if not dev_type:
        raise ApiError(400, "dev_type is required")
    if not dev_type.startswith(("meter_", "evse_")):
        known = app.types.definitions
        dev_type = "evse_" + dev_type if "evse_" + dev_type in known else "meter_" + dev_type
    async with app.meterdefs_lock:
        return _delete(app, dev_type)


def _delete(app: Services, dev_type: str) -> Any:
    in_use = [rt.dev_id for rt in app.manager.devices.values() if rt.settings.dev_type == dev_type]
    builtin = load_definitions(builtin_definitions_dir(), None)
    if in_use and dev_type not in builtin:
        raise ApiError(400, f"{dev_type} is used by {', '.join(in_use)}")
    if not delete_user_definition(app.meterdef_dir, dev_type):
        raise ApiError(404, f"no uploaded definition {dev_type}")
    if dev_type in builtin:
        app.types.definitions[dev_type] = builtin[dev_type]
    else:
        app.types.definitions.pop(dev_type, None)
    return "ok"
