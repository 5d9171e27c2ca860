"""A charging manager under a master, over HTTP: `get_cm_slave` and `set_cm_slave`.

get_cm_slave (public)
    This manager as one EVSE, for a master's `evse_cm` device: `{"enabled",
    "lb_enabled", "state" (1 no car, 2 a car waits, 3 a car charges), "current" (what the
    EVSEs draw, mA per building phase), "power_w", "max_current" (the wiring limit: the
    max. total current in force, or the max. total EVSE current where that is lower),
    "demand" (what the EVSEs would be given without the master's limit, mA per phase),
    "allocated" (what the EVSEs it controls are given now), "limit" (mA the EVSEs may
    take together now, null: none), "from_master" (the limit is the master's, not the
    fallback), "master_age" (s since the master's last write, null: none since the
    start), "evses", "charging", "model", "serialno"}`.
set_cm_slave (admin)
    `cur=<mA>`: the master's limit for all EVSEs together, per phase (0..2000000), held
    for `cm_master_timeout` s unless written again; answers the same object. A 409 while
    `cm_master_enabled` is off.

The limit's bookkeeping is manager/cascade.py; this module only spells the answers.
"""

from __future__ import annotations

from typing import Any

from chargebrain import package_version
from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.params import parse_int
from chargebrain.core.phases import ZERO
from chargebrain.manager.cascade import given
from chargebrain.manager.runtime import ChargingManager

MAX_CURRENT = 2_000_000


def slave_state(mgr: ChargingManager, mono: float) -> dict[str, Any]:
    """The get_cm_slave answer."""
    site = mgr.site
    decider = mgr.decider
    snapshot = decider.last_site
    state = 1
    evses = charging = 0
    for rt in mgr.devices.values():
        ev = rt.evse
        if ev is None:
            continue
        evses += 1
        r = ev.reading
        if r is None or rt.status.com_err:
            continue
        if r.state.charging:
            charging += 1
            state = 3
        elif r.state.plugged and state < 2:
            state = 2
    wiring = decider.evaluated_max_total_ma
    if 0 < decider.evaluated_max_evse_ma < wiring:
        wiring = decider.evaluated_max_evse_ma
    limit = decider.master.in_force(site, mono)
    consumed = snapshot.consumed if snapshot is not None else ZERO
    age = decider.master.age(mono)
    return {
        "enabled": site.cm_master_enabled,
        "lb_enabled": site.lb_enabled,
        "state": state,
        "current": list(consumed.clamp_low(0)),
        "power_w": round(snapshot.evse_power_w) if snapshot is not None else 0,
        "max_current": max(0, wiring),
        "demand": list(decider.master.demand.clamp_low(0)),
        "allocated": list(given(decider.last_allocation).clamp_low(0)),
        "limit": limit.current_ma if limit is not None else None,
        "from_master": bool(limit and limit.from_master),
        "master_age": round(age, 1) if age is not None else None,
        "evses": evses,
        "charging": charging,
        "model": f"chargebrain {package_version()}, {site.title}",
        "serialno": mgr.serial,
    }


@command("get_cm_slave", Permission.PUBLIC, "This charging manager as one EVSE of a master")
async def get_cm_slave(req: Request) -> Any:
    return slave_state(req.app.manager, req.app.clock.monotonic())


@command("set_cm_slave", Permission.ADMIN, "A master's limit for all EVSEs together (cur=mA)")
async def set_cm_slave(req: Request) -> Any:
    mgr = req.app.manager
    if "cur" not in req.params:
        raise ApiError(400, "parameter 'cur' is required")
    current = parse_int(req.params["cur"], "cur")
    if not 0 <= current <= MAX_CURRENT:
        raise ApiError(400, f"cur: {current} out of range 0..{MAX_CURRENT}")
    site = mgr.site
    if not site.cm_master_enabled:
        raise ApiError(409, "this charging manager takes no limit from a master "
                       "(cm_master_enabled is off)")
    mono = req.app.clock.monotonic()
    link = mgr.decider.master
    before = link.in_force(site, mono)
    link.set(current, mono)
    if link.in_force(site, mono) != before:
        mgr.wake()
    return slave_state(mgr, mono)
