"""The settings' field table for the web UI's forms: a JSON Schema of each shape.

`config_schema()` is the answer of get_config_schema: `{"site": …, "device": {"evse": …,
"meter": …, "group": …}, "user": …}`, each a JSON Schema object of the settings that
set_params, set_device and set_user take. Every property has its `type`, `description`
(the field's docstring, on one line), `default`, the range (`minimum`/`maximum`, `enum`,
`maxLength`) and form hints: `advanced` (a tuning setting a form may fold away), `formula`
(whether a formula may stand for the value) and, where it has one, `unit` (`mA`, `s`, …).
Read-only keys the answers show (get_params' figures, a device's state), the 1.x watt
names and `overdraft_cur` are not in it; nested objects (a user's cards) are inline.

All of it is public: declarations, no configuration and no secrets. This module must
never look at the running configuration.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from chargebrain.api.lenient import Body
from chargebrain.api.shapes.devices import DEVICE_SHAPES
from chargebrain.api.shapes.site import SiteBody
from chargebrain.api.shapes.users import UserBody


def shape_schema(shape: type[Body], title: str) -> dict[str, Any]:
    """The JSON Schema of `shape` for a form titled `title`: references resolved,
    one-line descriptions, no generated titles."""
    raw = shape.model_json_schema()
    defs = raw.pop("$defs", {})
    return {"title": title, **_tidy(raw, defs)}


_DEVICE_TITLES = {"evse": "EVSE", "meter": "Meter", "group": "EVSE group"}
_SUBSCHEMAS = ("items", "additionalProperties")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def _tidy(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return _tidy(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]), defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue  # pydantic's "Max Total Current", "CardShape": the key says it
        if key == "description" and isinstance(value, str):
            value = " ".join(value.split())
        elif key == "properties":
            value = {name: _tidy(prop, defs) for name, prop in value.items()}
        elif key in _SUBSCHEMAS and isinstance(value, dict):
            value = _tidy(value, defs)
        elif key in _SUBSCHEMA_LISTS:
            value = [_tidy(item, defs) for item in value]
        out[key] = value
    return out


@functools.cache
def config_schema() -> dict[str, Any]:
    """The get_config_schema answer (the same object every time: do not change it)."""
    return {
        "site": shape_schema(SiteBody, "Site parameters"),
        "device": {kind: shape_schema(DEVICE_SHAPES[kind], title)
                   for kind, title in _DEVICE_TITLES.items()},
        "user": shape_schema(UserBody, "User"),
    }
