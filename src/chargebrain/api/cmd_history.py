"""get_history: recorded power and current of the site and the devices over a range.

Public, as get_dev_info is: it is the same figures over time. What was sampled and not
yet written is written first, so the answer reaches the last 10 s. The file is read in
the worker thread (api/offload.py), never on the event loop.
"""

from __future__ import annotations

import math
import re
from typing import Any

from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.params import clean, parse_number
from chargebrain.manager.history import SITE_SERIES
from chargebrain.store.history import TIERS, Points, tier_for

MAX_RANGE_S = 20 * 366 * 86400
MAX_SERIES = 30
DEFAULT_POINTS = 500
MAX_POINTS = 2000
SERIES_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _time(req: Request, name: str, default: float) -> int:
    if name not in req.params:
        return int(default)
    value = parse_number(req.params[name], name)
    if not 0 <= value <= 1e11:
        raise ApiError(400, f"{name}: a time in Unix seconds is required")
    return int(value)


def _series(req: Request) -> list[str]:
    text = clean(req.params.get("series", ""))
    if not text:
        return list(SITE_SERIES)
    devices = req.app.manager.devices
    names: list[str] = []
    for part in text.split(","):
        name = clean(part)
        if not SERIES_NAME.match(name):
            raise ApiError(400, f"series: {name[:70]!r} is not a series name")
        if name.upper() in devices:
            name = name.upper()
        if name not in names:
            names.append(name)
    if len(names) > MAX_SERIES:
        raise ApiError(400, f"series: at most {MAX_SERIES} series at once")
    return names


def _devices(req: Request) -> dict[str, str]:
    return {dev_id: rt.settings.name for dev_id, rt in req.app.manager.devices.items()}


def _points(req: Request) -> int:
    if "points" not in req.params:
        return DEFAULT_POINTS
    value = parse_number(req.params["points"], "points")
    if not 10 <= value <= MAX_POINTS:
        raise ApiError(400, f"points: 10..{MAX_POINTS} is required")
    return int(value)


def _points_json(points: Points, names: dict[str, str]) -> dict[str, Any]:
    return {"id": points.name, "name": names.get(points.name, points.name), "t": points.t,
            "power_w": points.power_w, "current_l1": points.l1, "current_l2": points.l2,
            "current_l3": points.l3}


@command("get_history", Permission.PUBLIC,
         "Recorded power and current of the site and devices from=…&to=… (Unix s)")
async def get_history(req: Request) -> Any:
    app = req.app
    now = app.clock.now()
    end = _time(req, "to", now)
    start = _time(req, "from", end - 3600)
    if start >= end:
        raise ApiError(400, "from must be before to")
    if end - start > MAX_RANGE_S:
        raise ApiError(400, "the range is at most 20 years")
    names = _series(req)
    points = _points(req)
    finest = TIERS[tier_for(start, int(now))][0]
    wanted = math.ceil((end - start) / points)
    tier_step = TIERS[tier_for(start, int(now), wanted)][0]
    step = max(finest, math.ceil(wanted / tier_step) * tier_step)
    recorder = app.history
    await recorder.flush()
    found = await app.worker.run(recorder.store.read, names, start, end, step, now)
    devices = _devices(req)
    labels = {**{name: name for name in SITE_SERIES}, **devices}
    stored = await app.worker.run(recorder.store.series_names)
    available = [{"id": name, "name": name, "site": True} for name in SITE_SERIES]
    available += [{"id": dev_id, "name": name, "site": False}
                  for dev_id, name in devices.items()]
    available += [{"id": name, "name": name, "site": False} for name in stored
                  if name not in labels]
    return {"from": start, "to": end, "step": step,
            "series": [_points_json(p, labels) for p in found], "available": available}
