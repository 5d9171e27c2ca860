"""Which keys a JSON object sent to set_params or set_device may carry.

Clients round-trip whole objects: get_devices → change one field → set_device with the
whole object; get_params → set_params with all of it (`vsn`, `version`, `time`,
`dev_meta` and the 1.x watt names included). So an object may carry the settings the
command changes and any key the API's own answer for that object shows; the read-only
ones among those are ignored. Any other key (a typo such as `max_total_curent`) is a 400
naming it, and nothing changes.

The settings are the fields of the declared shapes (api/shapes/). The keys of the answers
are taken from the serialisers themselves: `device_keys` runs `views.device_json` and
`views.device_config_json` on a sample device with every optional part present,
`site_keys` takes a get_params answer. An answer that gains a key accepts it back without
a second list to keep in step.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from chargebrain.api import views
from chargebrain.api.params import refuse_unknown
from chargebrain.api.shapes.devices import setting_keys
from chargebrain.api.shapes.site import SiteBody
from chargebrain.core.model import MeterReading
from chargebrain.devices.registry import DeviceType, Kind
from chargebrain.manager.config import DeviceConfig
from chargebrain.manager.state import DeviceRuntime, EvseRuntime

_KINDS = {"evse": Kind.EVSE, "meter": Kind.METER, "group": Kind.GROUP}
_NAMES = {"evse": "an EVSE", "meter": "a meter", "group": "an EVSE group"}
#: Keys the original API document lists for a device in set_params that chargebrain
#: does not take from there: `soft_meter` is set with cmd=soft_meter.
DOCUMENTED_IGNORED = {"evse": frozenset({"soft_meter"})}


@functools.cache
def device_keys(kind: str) -> frozenset[str]:
    """Every key a device object of this kind ("evse", "meter", "group") may carry: its
    settings, and every key get_devices and get_dev_info (as the admin sees it) show."""
    cfg = DeviceConfig("X1", "sample", expr="0")
    sample = DeviceRuntime(
        cfg, DeviceType("sample", "", _KINDS[kind]),
        meter=MeterReading(soc=0.0), evse=EvseRuntime() if kind == "evse" else None,
    )
    shown = views.device_json(sample, 0.0, views.Viewer(admin=True))
    stored = views.device_config_json(cfg, kind)
    return (frozenset(setting_keys(kind)) | frozenset(shown) | frozenset(stored)
            | DOCUMENTED_IGNORED.get(kind, frozenset()))


def check_device(doc: Mapping[str, Any], kind: str) -> None:
    refuse_unknown(doc, device_keys(kind), f"for {_NAMES[kind]}")


def site_keys(params_answer: Mapping[str, Any]) -> frozenset[str]:
    """Every key a set_params body may carry, given a get_params answer."""
    return frozenset(SiteBody.model_fields) | frozenset(params_answer)
