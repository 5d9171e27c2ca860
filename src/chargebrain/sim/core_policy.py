"""Simulator policies that call an allocation function of core/ directly, without the manager.

`CorePolicy(allocate)` turns each Snapshot into the balancer's immutable `SiteInput` the
way the charging manager's shell does (non-EVSE load = grid meter − the EVSEs' measured
currents on building phases; groups and EVSEs from the site configuration) and returns
the allocation's currents. With `allocate` it measures the core alone, which separates
the balancer's cost and behaviour from the manager shell's; with
`core.baselines.equal_split` or `core.baselines.fcfs_priority` it runs the baselines
against which the balancer is judged. `number_groups` and `number_evses` give the
scenario's groups and EVSEs the numeric device ids (E<n>) the manager uses; the manager
policy shares them so both name everything alike.

Differences from the manager shell, on purpose: a reading that is missing (None) counts at
once — a silent grid meter makes the site load stale, a silent EVSE is offline from that
cycle on — where the manager keeps a pushed value for its 30 s staleness period.

This module must never see the plant's true state, keep references to simulator objects
between calls other than the static Site, or drive real EVSEs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from chargebrain.core.balancer import (
    BalancerState,
    EvseInput,
    GroupConfig,
    Measurement,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.balancer import Policy as Allocator
from chargebrain.core.baselines import equal_split, fcfs_priority
from chargebrain.core.model import EvseReading, EvseState
from chargebrain.core.phases import ZERO, Phases, rotate
from chargebrain.sim.group_meters import group_loads
from chargebrain.sim.policy import GRID, Decision, Snapshot
from chargebrain.sim.scenario import Site

_DEVICE_ID = re.compile(r"^E(\d{1,4})$")


def number_groups(site: Site) -> dict[str, int]:
    """Group id → group number (device E<number>): an id that already reads E<n> keeps n,
    the others get the smallest free numbers in the order listed (not 1 where the
    controller's own EVSE is E1)."""
    out: dict[str, int] = {}
    reserved = {1} if any(e.interface == "powerbrain" for e in site.evses) else set()
    for g in site.groups:
        m = _DEVICE_ID.match(g.id)
        if m and 1 <= int(m.group(1)) <= 9999 and int(m.group(1)) not in out.values():
            out[g.id] = int(m.group(1))
    n = 1
    for g in site.groups:
        if g.id in out:
            continue
        while n in out.values() or n in reserved:
            n += 1
        out[g.id] = n
    return out


def number_evses(site: Site, groups: Mapping[str, int]) -> dict[str, int]:
    """EVSE id → device number E<number>, not colliding with the groups' numbers. The
    controller's own EVSE (interface "powerbrain") is E1, as on the real controller."""
    taken = set(groups.values())
    out: dict[str, int] = {}
    for e in site.evses:
        if e.interface == "powerbrain":
            if 1 in taken:
                raise ValueError(f"{e.id}: the controller's own EVSE is E1, which a group uses")
            out[e.id] = 1
            taken.add(1)
    for e in site.evses:
        if e.id in out:
            continue
        m = _DEVICE_ID.match(e.id)
        if m and 1 <= int(m.group(1)) <= 9999 and int(m.group(1)) not in taken:
            out[e.id] = int(m.group(1))
            taken.add(out[e.id])
    n = 1
    for e in site.evses:
        if e.id in out:
            continue
        while n in taken:
            n += 1
        out[e.id] = n
        taken.add(n)
    return out


def site_config(site: Site, min_pause_time: float = 300.0) -> SiteConfig:
    """The balancer's site-wide limits for a scenario's site."""
    lim = site.limits
    return SiteConfig(
        max_total_current=lim.max_current_ma,
        reserve_current=lim.reserve_ma,
        max_total_evse_current=lim.max_evse_current_ma,
        max_imbalance_cur=lim.max_imbalance_ma,
        min_pause_time=min_pause_time,
    )


class CorePolicy:
    """Runs an allocation function (the balancer or a baseline) once per cycle."""

    def __init__(
        self,
        allocator: Allocator = allocate,
        *,
        name: str = "",
        learn_phases: bool = True,
        min_pause_time: float = 300.0,
    ) -> None:
        """`learn_phases`: three-phase EVSEs are configured "determine" (the balancer
        learns which phases a car uses), as the manager policy does; False configures
        every wired phase."""
        self.allocator = allocator
        self.name = name or f"core:{getattr(allocator, '__name__', 'allocate')}"
        self.learn_phases = learn_phases
        self.min_pause_time = min_pause_time
        self.state = BalancerState()
        self._site: Site | None = None
        self._config = SiteConfig(max_total_current=0)
        self._groups: tuple[GroupConfig, ...] = ()
        # per EVSE: scenario id, device id, static part of the input
        self._evses: list[tuple[str, str, EvseInput]] = []
        self._rotations: dict[str, int] = {}
        self._offline: dict[str, float] = {}
        self._house = ZERO
        self._inputs: dict[str, tuple[EvseReading | None, float | None, EvseInput]] = {}
        self._plugged_wh: dict[str, float] = {}  # per EVSE: its energy counter at plug-in
        # per group with a meter: its own load, last known (None: no group has a meter)
        self._group_house: dict[str, Phases] | None = None

    def _prepare(self, site: Site) -> None:
        self._site = site
        self._config = site_config(site, self.min_pause_time)
        metered = any(g.meter is not None for g in site.groups)
        self._group_house = {} if metered else None
        groups = number_groups(site)
        evses = number_evses(site, groups)
        self._groups = tuple(
            GroupConfig(
                id=groups[g.id],
                parent=groups[g.parent] if g.parent is not None else 0,
                max_current=g.max_current_ma or None,
                priority=g.prio,
                name=g.id,
            )
            for g in site.groups
        )
        self._evses = []
        for e in site.evses:
            used = 0b001 if e.used_phases == 1 else (0 if self.learn_phases else 0b111)
            base = EvseInput(
                id=f"E{evses[e.id]}",
                group=groups[e.group] if e.group is not None else 0,
                priority=e.prio,
                min_current=e.min_ma,
                max_current=e.max_ma,
                rotation=e.phase_rotation,
                used_phases=used,
            )
            self._evses.append((e.id, base.id, base))
            self._rotations[e.id] = e.phase_rotation
        self._inputs = {}

    def _evse_input(self, sid: str, base: EvseInput, r: EvseReading | None,
                    offline: float | None) -> EvseInput:
        cached = self._inputs.get(sid)
        if cached is not None and cached[0] is r and cached[1] == offline:
            return cached[2]
        if r is None:
            made = EvseInput(
                id=base.id, group=base.group, priority=base.priority,
                min_current=base.min_current, max_current=base.max_current,
                rotation=base.rotation, used_phases=base.used_phases,
                state=EvseState.OFFLINE, offline_since=offline,
            )
        else:
            departure, need_wh = self._plan(sid, r)
            made = EvseInput(
                id=base.id, group=base.group, priority=base.priority,
                min_current=base.min_current, max_current=base.max_current,
                rotation=base.rotation, used_phases=base.used_phases,
                state=r.state, measured=r.currents, has_meter=r.has_meter,
                departure=departure, need_wh=need_wh,
            )
        self._inputs[sid] = (r, offline, made)
        return made

    def _metered_groups(self, site: Site, snapshot: Snapshot,
                        drawn: Mapping[str, tuple[int, int, int]]) -> tuple[GroupConfig, ...]:
        """The groups with their own load where a meter of theirs measures it (a silent
        meter: the last load, its phases stale)."""
        assert self._group_house is not None
        loads = group_loads(site, snapshot.meters, drawn)
        out = []
        for g, cfg in zip(site.groups, self._groups, strict=True):
            if g.id not in loads:
                out.append(cfg)
                continue
            own = loads[g.id]
            if own is None:
                last = self._group_house.get(g.id, ZERO)
                out.append(replace(cfg, load=Measurement(current=last, stale=0b111)))
            else:
                self._group_house[g.id] = own
                out.append(replace(cfg, load=Measurement(current=own)))
        return tuple(out)

    def _plan(self, sid: str, r: EvseReading) -> tuple[float | None, float]:
        """The car's departure plan as the manager gives it to the balancer: its departure
        and the energy it still wants (what it asked for less what it has had)."""
        if not r.state.plugged:
            self._plugged_wh.pop(sid, None)
            return None, 0.0
        start = self._plugged_wh.setdefault(sid, r.total_energy_wh)
        if r.departure is None or r.req_energy_wh is None:
            return None, 0.0
        return r.departure, max(0.0, r.req_energy_wh - (r.total_energy_wh - start))

    def decide(self, snapshot: Snapshot) -> Decision:
        site = snapshot.site
        if site is not self._site:
            self._prepare(site)
        now = float(snapshot.t)
        readings = snapshot.evses
        inputs: list[EvseInput] = []
        evse_sum = ZERO
        drawn: dict[str, tuple[int, int, int]] = {}
        for sid, _dev, base in self._evses:
            r = readings.get(sid)
            offline: float | None = None
            if r is None:
                offline = self._offline.setdefault(sid, now)
            else:
                self._offline.pop(sid, None)
                building = rotate(r.currents, self._rotations[sid])
                evse_sum = evse_sum + building
                if self._group_house is not None:
                    drawn[sid] = building.as_tuple()
            inputs.append(self._evse_input(sid, base, r, offline))
        grid = snapshot.meters.get(GRID)
        if grid is None:
            load = Measurement(current=self._house, stale=0b111)
        else:
            g = grid.currents
            self._house = Phases(g.l1 - evse_sum.l1, g.l2 - evse_sum.l2, g.l3 - evse_sum.l3)
            load = Measurement(current=self._house)
        groups = self._groups
        if self._group_house is not None:
            groups = self._metered_groups(site, snapshot, drawn)
        alloc = self.allocator(
            SiteInput(config=self._config, load=load, groups=groups, evses=tuple(inputs)),
            self.state,
            now,
        )
        self.state = alloc.state
        currents: dict[str, int] = {}
        for (sid, _dev, _base), d in zip(self._evses, alloc.evses, strict=True):
            if d.charging_enabled and d.current_ma > 0 and d.write:
                currents[sid] = d.current_ma
        return Decision(currents)


def core_balancer() -> CorePolicy:
    """The balancer of core/ alone."""
    return CorePolicy(allocate, name="core")


def equal_split_baseline() -> CorePolicy:
    """Equal split under every limit; everyone stops when a share is below a minimum."""
    return CorePolicy(equal_split, name="equal-split")


def fcfs_baseline() -> CorePolicy:
    """First come first served by priority, without rotation."""
    return CorePolicy(fcfs_priority, name="fcfs")
