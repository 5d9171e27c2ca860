"""Where the EVSEs charging from the surplus sit: their groups, the groups' room, the
surplus measured behind a group's own meter.

`pool_inputs` turns the EVSEs whose rules charge from the surplus into the claims of
core/rules/sharing.py, with what the sharing needs to honour groups like current does:
per node the current that may still reach its surplus EVSEs (what the last allocation
found available under it, less what its other EVSEs were given), and per group with
meters of its own the surplus measured there (EVSE power under it − its grid meter's
power; without a grid meter, its production − its consumption and storage charging), and
the production measured there (for solar rules). Pure: reads the runtime state only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from chargebrain.core.rules import PoolClaim, RuleContext
from chargebrain.devices.registry import Kind
from chargebrain.manager import config as C
from chargebrain.manager.state import DeviceRuntime

if TYPE_CHECKING:
    from chargebrain.manager.decide import Decider

Caps = dict[int, tuple[float, float, float]]


def node_path(mgr: Decider, group: int) -> tuple[int, ...]:
    """The nodes above a device in `group`: its group first, upwards, the site (0) last."""
    return mgr.inventory.topology().path_up(group)


def claim_of(mgr: Decider, rt: DeviceRuntime, rctx: RuleContext) -> PoolClaim:
    """An EVSE charging from the surplus, as the sharing sees it."""
    ev = rt.evse
    d = ev.decision if ev is not None else None
    charging = d is not None and d.charging_enabled and d.current_ma > 0
    return PoolClaim(rt.dev_id, rctx.phases, max(rctx.evse_min_ma, 0), rctx.evse_max_ma,
                     charging, rt.config.prio, node_path(mgr, rt.config.group),
                     d.phases if d is not None else 0)


def pool_inputs(mgr: Decider, claims: Sequence[PoolClaim]
                ) -> tuple[Caps, dict[int, float], dict[int, float]]:
    """(caps per node, surplus W per group with a meter, production W per group)."""
    alloc = mgr.last_allocation
    claimed = {c.dev_id for c in claims}
    caps: Caps = {}
    if alloc is not None:
        rest: dict[int, list[float]] = {}
        for rt, d in zip(mgr.inventory.evses_in_order(), alloc.evses, strict=False):
            if rt.dev_id in claimed or d.id != rt.dev_id:
                continue
            for node in node_path(mgr, rt.config.group):
                acc = rest.setdefault(node, [0.0, 0.0, 0.0])
                acc[0] += d.load.l1
                acc[1] += d.load.l2
                acc[2] += d.load.l3
        for nd in alloc.nodes:
            if nd.available is None:
                continue
            other = rest.get(nd.id, [0.0, 0.0, 0.0])
            a = nd.available
            caps[nd.id] = (max(0.0, a.l1 - other[0]), max(0.0, a.l2 - other[1]),
                             max(0.0, a.l3 - other[2]))
    return caps, *_local(mgr)


def _local(mgr: Decider) -> tuple[dict[int, float], dict[int, float]]:
    grid: dict[int, float] = {}
    grid_ok: set[int] = set()
    made: dict[int, float] = {}
    used: dict[int, float] = {}
    for rt in mgr.devices.values():
        cfg = rt.config
        g = cfg.group
        if rt.dtype.kind is not Kind.METER or not cfg.device_enabled or not g:
            continue
        ok = rt.meter is not None and not rt.status.com_err
        power = rt.meter.power_w if rt.meter is not None else 0.0
        if cfg.role == C.ROLE_GRID:
            grid.setdefault(g, 0.0)
            if ok:
                grid_ok.add(g)
                grid[g] += power
        elif not ok:
            continue
        elif cfg.role == C.ROLE_PRODUCTION:
            made[g] = made.get(g, 0.0) + abs(power)
        elif cfg.role in (C.ROLE_CONSUMPTION, C.ROLE_STORAGE_HOME, C.ROLE_STORAGE_ALL):
            used[g] = used.get(g, 0.0) + (abs(power) if cfg.role == C.ROLE_CONSUMPTION
                                          else max(0.0, power))
    if not grid and not made:
        return {}, {}
    evse_w: dict[int, float] = {}
    for rt in mgr.inventory.evses_in_order():
        ev = rt.evse
        if ev is None or ev.reading is None or rt.status.com_err:
            continue
        for node in node_path(mgr, rt.config.group)[:-1]:
            evse_w[node] = evse_w.get(node, 0.0) + ev.reading.power_w
    surplus: dict[int, float] = {}
    for g in set(grid) | set(made):
        if g in grid:
            surplus[g] = evse_w.get(g, 0.0) - grid[g] if g in grid_ok else 0.0
        else:
            surplus[g] = made.get(g, 0.0) - used.get(g, 0.0)
    return surplus, made
