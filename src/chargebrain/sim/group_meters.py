"""Meters at the feeds of groups: what flows through a group's feed, seen like the grid.

A group with a `meter` has a measuring point at its feed that sees its own consumers (and
those of the groups inside it) plus the EVSEs under it, per phase, with the meter's delay,
noise, random dropouts and spikes (`sim/meter.py`). The runner tells it each second what
the cars drew (`second`) and asks for the readings at each cycle (`readings`); the
snapshot carries them under `group_meter_key(group id)`.

This module must never read the plant's true state other than what it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from chargebrain.core.model import MeterReading
from chargebrain.core.phases import Phases
from chargebrain.sim.meter import Meter
from chargebrain.sim.profile import SiteProfile, sub_rng
from chargebrain.sim.scenario import Scenario, Site

#: Snapshot meter keys of group meters start with this, followed by the group's id.
GROUP_METER_PREFIX = "group:"


def group_meter_key(group_id: str) -> str:
    """The key of a group's meter in `Snapshot.meters`."""
    return GROUP_METER_PREFIX + group_id


class Drawing(Protocol):
    """A car drawing at an EVSE, as the runner keeps it."""

    @property
    def trace(self) -> Sequence[float]:
        """Its current per used phase, one per second."""

    @property
    def f1(self) -> float:
        """1.0 where it draws on building L1, else 0.0 (f2, f3 alike)."""

    @property
    def f2(self) -> float: ...

    @property
    def f3(self) -> float: ...

    @property
    def evse_id(self) -> str: ...


class GroupMeters:
    """The group meters of a run and the true histories they read."""

    def __init__(self, scenario: Scenario, profile: SiteProfile) -> None:
        site = scenario.site
        self.voltage = site.limits.voltage_v
        self.ids = [g.id for g in site.groups if g.meter is not None]
        self.meters: list[Meter] = []
        self.loads: list[Sequence[Sequence[float]] | None] = []
        self.hist: list[tuple[list[float], list[float], list[float]]] = []
        for g in site.groups:
            if g.meter is None:
                continue
            self.meters.append(Meter(g.meter, sub_rng(scenario.seed, f"meter:group:{g.id}")))
            load = profile.group_ma.get(g.id)
            self.loads.append(load)
            first = [load[p][0] if load is not None and load[p] else 0.0 for p in range(3)]
            self.hist.append(([first[0]], [first[1]], [first[2]]))
        index = {gid: i for i, gid in enumerate(self.ids)}
        # per EVSE: the metered groups it is under
        self.under = {e.id: [index[g] for g in site.group_chain(e.group) if g in index]
                      for e in site.evses}

    def __bool__(self) -> bool:
        return bool(self.ids)

    def second(self, t: int, drawing: Iterable[Drawing]) -> None:
        """Record the second [t, t+1): the groups' own load plus what the cars drew."""
        sums = []
        for load in self.loads:
            if load is None:
                sums.append([0.0, 0.0, 0.0])
            else:
                sums.append([load[0][t], load[1][t], load[2][t]])
        for live in drawing:
            drawn = live.trace[-1] if live.trace else 0.0
            if not drawn:
                continue
            for i in self.under[live.evse_id]:
                acc = sums[i]
                acc[0] += drawn * live.f1
                acc[1] += drawn * live.f2
                acc[2] += drawn * live.f3
        for h, acc in zip(self.hist, sums, strict=True):
            h[0].append(acc[0])
            h[1].append(acc[1])
            h[2].append(acc[2])

    def readings(self, t: int) -> dict[str, MeterReading | None]:
        """Each group meter's reading at time `t` (None in a dropout)."""
        out: dict[str, MeterReading | None] = {}
        for gid, meter, h in zip(self.ids, self.meters, self.hist, strict=True):
            r = meter.read(t, h)
            out[group_meter_key(gid)] = None if r is None else MeterReading(
                power_w=r.total() * self.voltage / 1000.0, currents=r)
        return out


def group_loads(site: Site, meters: Mapping[str, MeterReading | None],
                evse_ma: Mapping[str, Sequence[float]]) -> dict[str, Phases | None]:
    """Per group with a meter: its own load (its meter's reading less what the EVSEs under
    it draw, `evse_ma`: per EVSE id, on building phases), None while the meter is silent."""
    out: dict[str, Phases | None] = {}
    for g in site.groups:
        if g.meter is None:
            continue
        r = meters.get(group_meter_key(g.id))
        if r is None:
            out[g.id] = None
            continue
        own = [float(r.currents.l1), float(r.currents.l2), float(r.currents.l3)]
        for e in site.evses:
            drawn = evse_ma.get(e.id)
            if drawn is not None and g.id in site.group_chain(e.group):
                for p in range(3):
                    own[p] -= drawn[p]
        out[g.id] = Phases(round(own[0]), round(own[1]), round(own[2]))
    return out
