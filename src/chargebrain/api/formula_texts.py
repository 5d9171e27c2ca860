"""Where a request carries formulas: their texts, to compile before it is handled.

Each function takes a request's JSON (or its query parameters) as it came and returns the
text of every formula its handler may compile, checking nothing else: the handler refuses
whatever is wrong afterwards. The functions only read what they are given, so they may run
in the worker thread (offload.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

SITE_FORMULAS = ("max_total_current", "max_total_evse_current", "surplus_expr")
DEVICE_FORMULAS = ("max_charging_cur", "expr")
RULE_FORMULAS = ("expr", "cexpr", "aexpr")


def _texts(doc: object, keys: tuple[str, ...]) -> Iterator[str]:
    if isinstance(doc, Mapping):
        for key in keys:
            value = doc.get(key)
            if isinstance(value, str):
                yield value


def rules(value: object) -> list[str]:
    """A classic rule list's or a rule-set object's formulas."""
    items: list[Any] = []
    if isinstance(value, list):
        items = value
    elif isinstance(value, Mapping) and isinstance(value.get("rule_set"), Mapping):
        for rule_list in value["rule_set"].values():
            if isinstance(rule_list, list):
                items.extend(rule_list)
    return [text for rule in items for text in _texts(rule, RULE_FORMULAS)]


def device(doc: object) -> list[str]:
    """One device object's formulas (limits, expression, rules)."""
    if not isinstance(doc, Mapping):
        return []
    return [*_texts(doc, DEVICE_FORMULAS), *rules(doc.get("charging_rules")),
            *rules(doc.get("crule_set"))]


def params_body(body: object) -> list[str]:
    """set_params: the site's formulas, or the devices' in `devices`."""
    if not isinstance(body, Mapping):
        return []
    out = list(_texts(body, SITE_FORMULAS))
    devices = body.get("devices")
    if isinstance(devices, list):
        out += [text for doc in devices for text in device(doc)]
    return out


def user_body(body: object) -> list[str]:
    """set_user: the user's charging rules."""
    return rules(body.get("charging_rules")) if isinstance(body, Mapping) else []


def cm_vars_request(body: object, params: Mapping[str, str]) -> list[str]:
    """set_cm_vars: `vars[].expr` (or `val`) of the body, else `val` (or `expr`) of the
    query."""
    if body is None:
        return list(_texts(params, ("val",) if "val" in params else ("expr",)))
    items = body.get("vars") if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        return []
    out: list[str] = []
    for item in items:
        if isinstance(item, Mapping):
            out += _texts(item, ("expr",) if "expr" in item else ("val",))
    return out
