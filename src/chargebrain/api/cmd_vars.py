"""Charging Manager variables over HTTP: `set_cm_vars` and `get_cm_vars` (admin only).

set_cm_vars
    GET (or form POST) `name=<name>&val=<number or formula>`, or a JSON POST body
    `{"vars": [{"name": "var1", "expr": 1.5}, {"name": "var2", "expr": "CM.var1 * 2"}]}`.
    `clear=1` deletes every variable first (alone it only clears); `tmp=1` keeps the change
    in memory only (what is stored comes back after a restart). Answers "ok".
get_cm_vars
    `{"vars": [{"name", "expr", "val", "tmp"}], "predefined": {name: value}}` — see
    docs/formulas.md.

Every request is checked completely before anything changes (the body's shape is
declared in api/shapes/cm_vars.py); bad input is a 400 JSON error. The formulas are
compiled in the worker thread first (api/offload.py). This module must never evaluate
rules or touch devices.
"""

from __future__ import annotations

from typing import Any

from chargebrain.api import formula_texts
from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.offload import prepare_request_formulas
from chargebrain.api.params import parse_bool
from chargebrain.api.shapes.cm_vars import definition, definitions
from chargebrain.core.formula import prepared
from chargebrain.manager.cm_vars import (
    PRC_VAR,
    READ_ONLY_PREDEFINED,
    CmVar,
    CmVarError,
    CmVars,
)


def _vars(req: Request) -> CmVars:
    return req.app.cm_vars


def _flag(req: Request, name: str) -> bool:
    return parse_bool(req.params.get(name, "0"), name)


def _from_query(params: dict[str, str], clear: bool) -> list[CmVar]:
    if "name" not in params:
        if clear:
            return []
        raise ApiError(400, "parameter 'name' is required")
    value = params["val"] if "val" in params else params.get("expr")
    if value is None:
        raise ApiError(400, "parameter 'val' is required")
    return [definition(params["name"], value)]


@command("set_cm_vars", Permission.ADMIN, "Set Charging Manager variables (values or formulas)")
async def set_cm_vars(req: Request) -> Any:
    clear = _flag(req, "clear")
    tmp = _flag(req, "tmp")
    body = req.body
    compiled = await prepare_request_formulas(
        req.app.worker, lambda: formula_texts.cm_vars_request(body, req.params))
    with prepared(compiled):
        found = definitions(body, clear) if body is not None else _from_query(req.params, clear)
        try:
            _vars(req).apply(found, clear=clear, tmp=tmp)
        except CmVarError as exc:
            raise ApiError(400, str(exc)) from None
    return "ok"


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


@command("get_cm_vars", Permission.ADMIN, "All Charging Manager variables and their values")
async def get_cm_vars(req: Request) -> Any:
    cm = _vars(req)
    mgr = req.app.manager
    out: list[dict[str, Any]] = []
    for var in cm.all():
        value = cm.value(var.name)
        if value is None:
            ctx = mgr.decider.ctx
            value = var.constant if var.constant is not None else var.formula.evaluate(ctx)
        out.append({
            "name": var.name,
            "expr": _number(var.constant) if var.constant is not None else var.text,
            "val": _number(value),
            "tmp": not var.persisted,
        })
        if var.error:
            out[-1]["error"] = var.error
    predefined: dict[str, int | float] = {
        k: _number(v) for k, v in sorted(mgr.decider.cm_values.items()) if k in READ_ONLY_PREDEFINED
    }
    predefined[PRC_VAR] = mgr.site.max_total_cur_prc
    return {"vars": out, "predefined": predefined}
