"""A charging manager under a master: the limit a master charging manager sets on it, and
what this manager's EVSEs want together (its demand).

A master treats this manager as one EVSE (its `evse_cm` device) and writes the current
all of this manager's EVSEs may take together per phase (`set_cm_slave`). The limit is
temporary: kept in memory, never persisted. It holds while the master renews it (the
master rewrites every command at least every 30 s); after `cm_master_timeout` seconds
without a write, and from a start until the master's first write, `cm_master_fallback`
is in force instead. The decider applies it as a limit on all EVSEs together, beside
`max_total_evse_current`, and names it in the reasons ("limited by master").

The master gives this manager at most its demand: what the balancer would give its EVSEs
without the master's limit (its own limits, lending, idle cars and pauses included). Where
the master's limit binds, that takes a second allocation a cycle; the balancer is pure,
so nothing of that run is kept.

Only while the site parameter `cm_master_enabled` is on; off, no master's limit is taken
and none applies. No I/O; the time comes in as monotonic seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from chargebrain.core.balancer import Allocation, BalancerState, SiteInput, allocate
from chargebrain.core.phases import ZERO, Phases
from chargebrain.manager.config import SiteParams

#: How the EVSE supply line is named in reasons while the master's limit binds.
MASTER_LABEL = "limited by master"


@dataclass(frozen=True)
class MasterLimit:
    """The limit in force: its value (mA per phase) and where it comes from."""

    current_ma: int
    from_master: bool  # False: the fallback (no master's limit in force)


class MasterLink:
    """The master's last write and when it came; the demand of the last cycle."""

    def __init__(self) -> None:
        self.current_ma: int | None = None
        self.at: float | None = None  # monotonic time of the master's last write
        self.writes = 0
        self.demand: Phases = ZERO  # what the EVSEs would take without the master's limit

    def set(self, current_ma: int, mono: float) -> None:
        """The master wrote `current_ma` at `mono`."""
        self.current_ma = current_ma
        self.at = mono
        self.writes += 1

    def age(self, mono: float) -> float | None:
        """Seconds since the master's last write (None: none since the start)."""
        return None if self.at is None else max(0.0, mono - self.at)

    def in_force(self, site: SiteParams, mono: float) -> MasterLimit | None:
        """The limit on all EVSEs together now; None when this manager takes none."""
        if not site.cm_master_enabled:
            return None
        age = self.age(mono)
        if self.current_ma is not None and age is not None and age <= site.cm_master_timeout:
            return MasterLimit(self.current_ma, True)
        return MasterLimit(site.cm_master_fallback, False)

    def supply(self, site: SiteParams, mono: float, max_evse: Phases) -> tuple[Phases, str]:
        """The EVSE supply line's limit (`max_total_evse_current` evaluated, 0: none) with
        the master's limit in force, and the line's name in reasons: "wallbox supply",
        or the master's where its limit is the lower."""
        master = self.in_force(site, mono)
        if master is None or 0 < max_evse.low() <= master.current_ma:
            return max_evse, "wallbox supply"
        # A limit of 0 lets nothing through (to the balancer 0 is "no limit").
        label = MASTER_LABEL if master.from_master else f"{MASTER_LABEL} (fallback)"
        return Phases.uniform(max(1, master.current_ma)), label

    def note_demand(self, site: SiteParams, site_input: SiteInput, alloc: Allocation,
                    max_evse: Phases, state: BalancerState, mono: float) -> None:
        """Note what the EVSEs would take together without the master's limit, after the
        cycle's allocation `alloc` (made from `site_input` and `state`); `max_evse` is the
        supply line's own limit."""
        if not site.cm_master_enabled:
            self.demand = ZERO
            return
        own = max_evse.low()
        if site_input.config.max_total_evse_current == own:
            self.demand = alloc.allocated  # the master's limit did not bind
            return
        config = replace(site_input.config, max_total_evse_current=own)
        self.demand = allocate(replace(site_input, config=config), state, mono).allocated


def given(alloc: Allocation | None) -> Phases:
    """What the EVSEs this manager controls were given by `alloc`, per building phase
    (not what it only counts for EVSEs it cannot reach or does not control)."""
    if alloc is None:
        return ZERO
    l1 = l2 = l3 = 0
    for d in alloc.evses:
        if d.controlled:
            l1 += d.load.l1
            l2 += d.load.l2
            l3 += d.load.l3
    return Phases(l1, l2, l3)
