"""Charging schedules from an external energy manager: `set_cplan` and `get_cplan`.

set_cplan
    POST `dev_id=<EVSE or group id, or $G>[&tmp=1]` with the body
    `{"cplan": [{"dc": false, "st": 480, "dr": 60, "lm": 6000}, …]}` (declared in
    api/shapes/cplan.py): the limits by time of day, mA per phase; `$G` is the site's
    maximum total current per phase. Stored unless `tmp=1` (then in force until the next
    start, when the stored schedule comes back). An empty list removes the schedule.
    Answers "ok".
get_cplan
    `dev_id=…` → `{"dev_id", "cplan": […], "tmp", "limit"}`: the schedule in force,
    whether it is a temporary one, and the limit in force now (mA; -1 none).

Both are admin commands (an energy manager has the admin password). Every request is
checked completely before anything changes; bad input is a 400 JSON error. This module
never decides currents (the manager applies the limits, manager/schedules.py).
"""

from __future__ import annotations

from typing import Any

from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.params import clean, parse_bool
from chargebrain.api.shapes.cplan import schedule_entries
from chargebrain.manager.runtime import ChargingManager
from chargebrain.manager.schedules import SITE, minute_of_day


def _target(req: Request) -> str:
    """The schedule's target: `$G` or the id of an EVSE or an EVSE group."""
    mgr: ChargingManager = req.app.manager
    dev_id = clean(req.params.get("dev_id", "")).upper()
    if not dev_id:
        raise ApiError(400, "dev_id is required: an EVSE or group id, or $G (the site)")
    if dev_id == SITE:
        return SITE
    rt = mgr.devices.get(dev_id)
    if rt is None:
        raise ApiError(404, f"no device {dev_id}")
    if rt.kind_name == "meter":
        raise ApiError(400, f"{dev_id} is a meter: charging schedules are for EVSEs, EVSE "
                            "groups and $G (chargebrain controls no storage)")
    return dev_id


@command("set_cplan", Permission.ADMIN,
         "Set a charging schedule (limits by time of day) of an EVSE, a group or $G")
async def set_cplan(req: Request) -> Any:
    target = _target(req)
    temporary = parse_bool(req.params.get("tmp", "0"), "tmp")
    entries = schedule_entries(req.body)
    mgr: ChargingManager = req.app.manager
    mgr.decider.schedules.set(target, entries, temporary=temporary)
    mgr.wake()
    return "ok"


@command("get_cplan", Permission.ADMIN,
         "The charging schedule of an EVSE, a group or $G, and the limit in force")
async def get_cplan(req: Request) -> Any:
    target = _target(req)
    decider = req.app.manager.decider
    schedule = decider.schedules.get(target)
    minute = minute_of_day(req.app.clock.now(), decider.ctx.tz)
    limit = decider.schedules.limit(target, minute)
    return {
        "dev_id": target,
        "cplan": [{"dc": e.dc, "st": e.st, "dr": e.dr, "lm": e.lm}
                  for e in (schedule.entries if schedule is not None else ())],
        "tmp": schedule is not None and not schedule.persisted,
        "limit": limit if limit is not None else -1,
    }
