"""What the simulator measures: a policy that turns measurements into EVSE currents.

Each control cycle the runner hands the policy a Snapshot — exactly what a charging manager
would read from its devices (meter and EVSE readings, late and noisy as configured, None
for a device that does not answer) plus the static site configuration — and applies the
Decision it returns: per EVSE the offered current in mA, 0 (disabled) or at least the
EVSE's minimum. To measure the real charging manager, wrap it in a class with a `decide`
method that feeds these readings to it and returns its per-EVSE commands.

Two small reference policies live here for the simulator's own tests: FuseOnlyPolicy
(no load management: every plugged car gets its EVSE's maximum) and EqualSplitPolicy (an
equal share under every limit, pausing in rotation when the share falls below minimum).

This module must never see the plant's true state or the future: policies get measurements
only, and must not keep references to mutable simulator objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from chargebrain.core.model import EvseReading, EvseState, MeterReading
from chargebrain.core.phases import Phases, rotate, rotate_mask
from chargebrain.sim.group_meters import group_loads
from chargebrain.sim.scenario import EvseSpec, Site

GRID = "grid"
PV = "pv"
ACTIVE_MA = 500  # a phase carrying more than this counts as used


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One cycle's view of the site, as a charging manager would see it.

    `meters` has "grid" (signed currents at the connection, + = import, building phase
    order) and "pv" (production, positive) when the site has PV; a value is None while that
    meter delivers nothing. `evses` has every configured EVSE id; None while it does not
    answer. EVSE currents are in the EVSE's own phase order — map them to building phases
    with `core.phases.rotate(reading.currents, spec.phase_rotation)`.
    `EvseReading.max_current_ma` is the current the EVSE is signalling now. A car's
    departure plan, once it has announced one, is in its EVSE's reading: `departure` in
    seconds since the start of the run (like `t`), `req_energy_wh` the energy it asks
    for in the session.
    """

    t: int  # seconds since the start of the run
    time_of_day_s: int
    cycle: int  # 0, 1, 2, ... one per call
    meters: Mapping[str, MeterReading | None]
    evses: Mapping[str, EvseReading | None]
    site: Site


@dataclass(frozen=True, slots=True)
class Decision:
    """Per EVSE id the offered current in mA: 0 = disabled, otherwise ≥ the EVSE's minimum.

    EVSEs missing from `currents` get 0. A value between 0 and the minimum is refused by
    the EVSE (counted, treated as 0); above its maximum it is capped. `wake` lists EVSEs
    that should interrupt the control pilot for a moment to wake a sleeping car; `phases`
    says how many phases an EVSE that switches its contactor gives now.
    """

    currents: Mapping[str, int]
    wake: frozenset[str] = field(default_factory=frozenset)
    # EVSE id → the phases its contactor gives now (1 or 3), for EVSEs that switch
    # phases; the others give what they are wired for.
    phases: Mapping[str, int] = field(default_factory=dict)


class Policy(Protocol):
    """The load manager under test. One instance per run; it may keep state between calls."""

    def decide(self, snapshot: Snapshot) -> Decision:
        """Called once per control cycle, in time order."""
        ...


def building_currents(reading: EvseReading, spec: EvseSpec) -> Phases:
    """An EVSE's measured currents on the building's phases."""
    return rotate(reading.currents, spec.phase_rotation)


def building_mask(reading: EvseReading, spec: EvseSpec) -> int:
    """Building phases the EVSE loads: those it measurably draws on, else those wired to it."""
    measured = reading.currents.mask(ACTIVE_MA)
    evse_mask = measured if measured else (0b001 if spec.used_phases == 1 else 0b111)
    return rotate_mask(evse_mask, spec.phase_rotation)


_PLUGGED = frozenset({EvseState.EV_PRESENT, EvseState.CHARGING, EvseState.CHARGING_VENT})


class FuseOnlyPolicy:
    """No load management: every plugged-in car is offered its EVSE's maximum."""

    def decide(self, snapshot: Snapshot) -> Decision:
        evses = snapshot.evses
        return Decision(
            {
                e.id: e.max_ma
                for e in snapshot.site.evses
                if (r := evses[e.id]) is not None and r.state in _PLUGGED
            }
        )


Key = tuple[str, int]  # (limit name, building phase index)


class EqualSplitPolicy:
    """Equal shares under every limit; pause (in rotation) when the share is below minimum.

    Available per phase = connection − reserve − (measured grid − measured EVSEs); when
    the grid meter gives nothing the last estimate of the household load is kept. Limits
    are the connection phases, the EVSE supply line and every group on the way up (a
    group with a meter of its own: its limit less its own load, the meter's reading less
    its EVSEs', the last one kept while the meter is silent). Each plugged EVSE gets the
    smallest of (limit / EVSEs under it) over the limits it is under. EVSEs are admitted
    in an order that rotates every `rotate_s` seconds until their minimums no longer fit;
    the rest are paused. Priorities and phase imbalance are ignored, and current an EVSE
    cannot use is not handed on.
    """

    def __init__(self, rotate_s: int = 300) -> None:
        self.rotate_s = rotate_s
        self._house = (0, 0, 0)
        self._site: Site | None = None
        # per EVSE: spec, building phase p reads EVSE phase perm[p], wired building mask, limits
        self._evses: list[tuple[EvseSpec, tuple[int, int, int], int, tuple[str, ...]]] = []
        self._keys: dict[tuple[str, int], tuple[Key, ...]] = {}
        self._metered = False  # some group has a meter of its own
        self._group_house: dict[str, tuple[int, int, int]] = {}  # its own load, last known

    def _prepare(self, site: Site) -> None:
        self._site = site
        self._evses = []
        self._keys = {}
        self._metered = any(g.meter is not None for g in site.groups)
        self._group_house = {}
        for spec in site.evses:
            shift = {0: 0, 120: 1, 240: 2}[spec.phase_rotation % 360]
            perm = ((0 - shift) % 3, (1 - shift) % 3, (2 - shift) % 3)
            wired = rotate_mask(0b001 if spec.used_phases == 1 else 0b111, spec.phase_rotation)
            names = ("", *site.group_chain(spec.group))
            self._evses.append((spec, perm, wired, names))

    def decide(self, snapshot: Snapshot) -> Decision:
        site = snapshot.site
        if site is not self._site:
            self._prepare(site)
        lim = site.limits
        evses = snapshot.evses
        tot = [0, 0, 0]
        plugged: list[tuple[EvseSpec, tuple[Key, ...]]] = []
        drawn: dict[str, tuple[int, int, int]] = {}
        for spec, perm, wired, names in self._evses:
            r = evses[spec.id]
            if r is None or r.state not in _PLUGGED:
                continue
            c = r.currents.as_tuple()
            drawn[spec.id] = (c[perm[0]], c[perm[1]], c[perm[2]])
            mask = 0
            for p in range(3):
                v = c[perm[p]]
                tot[p] += v
                if v > ACTIVE_MA:
                    mask |= 1 << p
            mask = mask or wired
            ks = self._keys.get((spec.id, mask))
            if ks is None:
                ks = tuple((n, p) for p in range(3) if mask >> p & 1 for n in names)
                self._keys[(spec.id, mask)] = ks
            plugged.append((spec, ks))
        grid = snapshot.meters.get(GRID)
        if grid is not None:
            g = grid.currents
            self._house = (g.l1 - tot[0], g.l2 - tot[1], g.l3 - tot[2])
        if self._metered:
            for gid, own in group_loads(site, snapshot.meters, drawn).items():
                if own is not None:
                    self._group_house[gid] = own.as_tuple()
        if not plugged:
            return Decision({})

        # the connection and the EVSE line cover the same EVSEs: one limit per phase
        caps: dict[Key, float] = {}
        for p in range(3):
            cap = lim.max_current_ma - lim.reserve_ma - self._house[p]
            if lim.max_evse_current_ma and lim.max_evse_current_ma < cap:
                cap = lim.max_evse_current_ma
            caps[("", p)] = cap
            for grp in site.groups:
                room = self._group_house.get(grp.id)
                caps[(grp.id, p)] = grp.max_current_ma - (room[p] if room else 0)

        start = (snapshot.t // self.rotate_s) % len(plugged)
        reserved = dict.fromkeys(caps, 0.0)
        count = dict.fromkeys(caps, 0)
        admitted: list[tuple[EvseSpec, tuple[Key, ...]]] = []
        for spec, ks in plugged[start:] + plugged[:start]:
            need = spec.min_ma
            fits = True
            for k in ks:
                if reserved[k] + need > caps[k]:
                    fits = False
                    break
            if fits:
                for k in ks:
                    reserved[k] += need
                    count[k] += 1
                admitted.append((spec, ks))
        currents: dict[str, int] = {}
        for spec, ks in admitted:
            share = math.inf
            for k in ks:
                each = caps[k] / count[k]
                if each < share:
                    share = each
            offer = min(int(share), spec.max_ma)
            currents[spec.id] = offer if offer >= spec.min_ma else 0
        return Decision(currents)
