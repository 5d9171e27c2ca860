"""The overload guard: a lower limit at once, before a cycle waits for polled devices.

A cycle of a site with devices polled over I/O (other controllers, Modbus meters) reads
them again before it decides (manager.reading: a pushed grid sample must not meet an
older reading of the same current), which takes as long as the slowest of them. The
guard acts in that time, on the readings at hand: for each node with a limit (the site,
a group) whose grid meters' readings are newer than those the last decision was made on,
when a phase of that measured current is above the node's limit as the last decision
evaluated it, the excess plus the site's `reserve_current` is taken off the EVSEs under
the node that draw on that phase, in proportion to what each draws above its minimum
current, never below it. Only those EVSEs are written, through the Writer.

The guard only ever lowers, and only on a physical overload measured at a meter; it
keeps no state of the balancer, no pause timer and no session. The full cycle (read,
decide, write) follows as always and writes its own decision; a limit the guard wrote
while a cycle was reading stays the EVSE's ceiling until a decision that saw the
overloading sample (`Writer.lower`).
"""

from __future__ import annotations

import logging

from chargebrain.clock import Clock
from chargebrain.core.model import MeterReading, implausible
from chargebrain.core.phases import Phases
from chargebrain.devices.ajax import AjaxMeter
from chargebrain.devices.errors import DeviceError
from chargebrain.devices.powerbrain import LocalMeter
from chargebrain.manager.apply import Writer
from chargebrain.manager.decide import Decider
from chargebrain.manager.reading import meter_corrected
from chargebrain.manager.settings import SiteSettings
from chargebrain.manager.state import DeviceRuntime
from chargebrain.manager.topology import Topology
from chargebrain.manager.wakeup import DRAWING_MA

log = logging.getLogger("chargebrain.manager")

STEP_MA = 100  # a lowered limit is rounded down to this step (what wallboxes take)


def _sample(rt: DeviceRuntime, mono: float) -> tuple[MeterReading, float] | None:
    """A grid meter's latest reading (corrected) and when it was taken, without taking it
    into the device's state; None when there is none, it is stale or implausible."""
    driver = rt.driver
    if rt.status.com_err:
        return None
    try:
        if isinstance(driver, AjaxMeter):
            if driver.pushed_at is None:
                return None
            reading, taken = driver.latest(mono), driver.pushed_at
        elif isinstance(driver, LocalMeter):
            reading, taken = driver.read_now(), mono
        elif rt.meter is not None and rt.taken_at is not None:
            return (rt.meter, rt.taken_at)  # a polled meter: its reading in force
        else:
            return None
    except DeviceError:
        return None
    corrected = meter_corrected(rt.config, reading)
    if implausible(corrected) is not None:
        return None
    return corrected, taken


def measured(meters: list[DeviceRuntime], since: float, mono: float) -> Phases | None:
    """The current the grid meters of a node measure together, when every one of them has
    a reading and one of those is newer than `since`; else None."""
    total: Phases | None = None
    newer = False
    for rt in meters:
        sample = _sample(rt, mono)
        if sample is None:
            return None
        reading, taken = sample
        newer = newer or taken > since
        total = reading.currents if total is None else total + reading.currents
    return total if newer else None


def _basis(rt: DeviceRuntime, held_ma: int) -> tuple[int, tuple[bool, bool, bool]] | None:
    """What an EVSE draws that its limit can take away (at most the limit it holds), and
    the building phases it draws on; None when it draws on none."""
    ev = rt.evse
    assert ev is not None
    r, d = ev.reading, ev.decision
    if r is None or d is None:
        return None
    if r.has_meter:
        c = ev.building_currents
        on = (c.l1 >= DRAWING_MA, c.l2 >= DRAWING_MA, c.l3 >= DRAWING_MA)
        draw = max(v for v, o in zip(c, on, strict=True) if o) if any(on) else 0
    else:
        # Without a meter: a charging car is taken to draw its limit where it is counted.
        load = d.load
        on = (load.l1 > 0, load.l2 > 0, load.l3 > 0) if r.state.charging else (
            False, False, False)
        draw = held_ma
    if not any(on):
        return None
    return min(draw, held_ma), on


class OverloadGuard:
    """Lowers EVSEs at once where a fresh grid reading shows a node above its limit."""

    def __init__(self, clock: Clock, settings: SiteSettings, decider: Decider,
                 writer: Writer) -> None:
        self.clock = clock
        self.settings = settings
        self.decider = decider
        self.writer = writer
        self.actions = 0  # times the guard found an overload and lowered an EVSE
        self.lowered = 0  # EVSE limits it lowered so far

    def limit_of(self, node: int) -> int | None:
        """A node's limit per phase as the last decision evaluated it (None: none)."""
        if node == 0:
            return self.decider.evaluated_max_total_ma
        return self.decider.group_limits.get(node)

    def act(self, topo: Topology, since: float | None, until: int) -> int:
        """Lower the EVSEs under every node whose grid meters, read after `since` (the
        last time a cycle took the pushed readings; None: never), show a phase above its
        limit. `until`: the number of the cycle whose decision sees those readings (see
        `Writer.lower`). Returns the number of EVSEs lowered."""
        return self.lower(self.plan(topo, since), until)

    def plan(self, topo: Topology, since: float | None) -> dict[str, tuple[DeviceRuntime, int]]:
        """What `act` would lower: each EVSE and the limit it must come down to, by id."""
        if since is None or self.decider.last_allocation is None or not topo.grid:
            return {}
        mono = self.clock.monotonic()
        reserve = self.settings.params.reserve_current
        cuts: dict[str, tuple[DeviceRuntime, int]] = {}  # id -> EVSE, its new limit
        for node, meters in topo.grid.items():
            limit = self.limit_of(node)
            if limit is None:
                continue
            current = measured(meters, since, mono)
            if current is None:
                continue
            excess = [c - limit + reserve if c > limit else 0 for c in current]
            if any(excess):
                self._share(topo, node, excess, cuts)
        return cuts

    def lower(self, cuts: dict[str, tuple[DeviceRuntime, int]], until: int) -> int:
        """Write the limits of `plan` (see `act`); returns how many."""
        if not cuts:
            return 0
        self.actions += 1
        self.lowered += len(cuts)
        log.info("overload measured: %d EVSE limit(s) lowered at once, before the decision",
                 len(cuts))
        writer = self.writer
        for rt, target in cuts.values():
            writer.lower(rt, target, until)
        return len(cuts)

    def _share(self, topo: Topology, node: int, excess: list[int],
               cuts: dict[str, tuple[DeviceRuntime, int]]) -> None:
        """Take `excess` (per building phase) off the EVSEs under `node` that draw on that
        phase, in proportion to what each draws above its minimum; note in `cuts` the
        lowest limit each must come down to."""
        held_of = self.writer.holding_ma
        under: list[tuple[DeviceRuntime, int, int, tuple[bool, bool, bool]]] = []
        for rt, _, grid_nodes in topo.evse_nodes:
            if node not in grid_nodes or rt.status.com_err or rt.driver is None:
                continue
            ev = rt.evse
            assert ev is not None
            d = ev.decision
            if d is None or not d.write or not d.controlled:
                continue
            held = held_of(rt)
            low = rt.config.min_charging_cur
            if held is None or held <= low:
                continue
            basis = _basis(rt, held)
            if basis is None or basis[0] <= low:
                continue
            under.append((rt, held, basis[0], basis[1]))
        for p, need in enumerate(excess):
            if need <= 0:
                continue
            on = [(rt, held, draw) for rt, held, draw, phases in under if phases[p]]
            room = sum(draw - rt.config.min_charging_cur for rt, _, draw in on)
            if room <= 0:
                continue
            for rt, held, draw in on:
                low = rt.config.min_charging_cur
                cut = -(-need * (draw - low) // room)  # its share, rounded up
                target = max(low, (draw - cut) // STEP_MA * STEP_MA)
                noted = cuts.get(rt.dev_id)
                if target < (held if noted is None else noted[1]):
                    cuts[rt.dev_id] = (rt, target)
