"""What a support case needs from each control cycle, as DEBUG lines.

While diagnostic logging is on (`set_diag_logging`), every cycle writes: the site's
limits and the non-EVSE load per node as measured (and whether stale), every EVSE's
input (state, what it draws, its limits, rule and override wishes, offline since) and
the decision with its reason, and every group's share. Device errors are logged where
they happen (manager.reading). Nothing is computed unless DEBUG is on for this logger,
so a cycle without diagnostic logging costs one level check.
"""

from __future__ import annotations

import logging

from chargebrain.core.balancer import Allocation, Measurement, SiteInput
from chargebrain.core.phases import Phases

log = logging.getLogger("chargebrain.cycle")


def _a(p: Phases) -> str:
    return f"{p.l1 / 1000:.1f}/{p.l2 / 1000:.1f}/{p.l3 / 1000:.1f} A"


def _load(m: Measurement | None) -> str:
    if m is None:
        return "not metered"
    stale = f", stale mask {m.stale}" if m.stale else ""
    return f"{_a(m.current)}{stale}"


def log_cycle(site: SiteInput, alloc: Allocation, number: int) -> None:
    """Write the inputs and decisions of cycle `number` (only if DEBUG is on)."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    c = site.config
    log.debug(
        "cycle %d: max total %d mA, reserve %d mA, EVSE supply %d mA, imbalance limit %d mA, "
        "%s; site load %s; available for EVSEs %s, allocated %s, overdraft %d mA",
        number, c.max_total_current, c.reserve_current, c.max_total_evse_current,
        c.max_imbalance_cur, "load management" if c.lb_enabled else "observe mode",
        _load(site.load), _a(alloc.available), _a(alloc.allocated), alloc.overdraft_cur)
    for g in site.groups:
        log.debug("cycle %d: group E%d (in %d): max %d mA, prio %d, load %s", number, g.id,
                  g.parent, g.max_current, g.priority, _load(g.load))
    for e, d in zip(site.evses, alloc.evses, strict=True):
        wish = []
        if e.rule_current is not None:
            wish.append(f"rule {e.rule_current} mA")
        if e.override_current is not None:
            wish.append(f"override {e.override_current} mA")
        if e.override_disable:
            wish.append("override: charging disabled")
        if e.needs_auth:
            wish.append("authorised" if e.authorised else "not authorised")
        if e.offline_since is not None:
            wish.append("offline")
        log.debug(
            "cycle %d: %s state %d, draws %s, min %d max %d mA, prio %d, group %d%s -> "
            "%s %d mA (%s)%s", number, e.id, int(e.state), _a(e.measured), e.min_current,
            e.max_current, e.priority, e.group, f", {', '.join(wish)}" if wish else "",
            "on" if d.charging_enabled else "off", d.current_ma, d.reason,
            f", paused {d.pause_time:.0f} s" if d.paused else "")
    for node in alloc.nodes:
        if node.id:
            log.debug("cycle %d: %s: allocated %s, available %s", number, node.label,
                      _a(node.allocated),
                      _a(node.available) if node.available is not None else "no limit")
