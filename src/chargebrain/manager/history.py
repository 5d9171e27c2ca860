"""Recording the site's and every device's power and current for the history charts.

`HistoryRecorder` is told the end of every cycle (it is one of the manager's session
listeners). Every 10 s of the clock it takes one sample of each series from what the
cycle left behind — no device is read for it — and keeps it in memory; it also keeps
the running means of the 1-minute and 15-minute steps and adds a row for each step that
closes. `flush()` hands what piled up to the history file in one batch on a thread of
its own, and `maintain()` drops what is past its age or over the size limit; `run()`
does both periodically. So the cycle pays for a loop over the devices every 10 s and
never for SQLite.

Series: `grid`, `pv`, `house`, `evse` and `storage` (the site's figures, power only),
and every device by its id (power and current per phase; a device in communication
error is not sampled, which leaves a gap).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chargebrain.clock import Clock
from chargebrain.core.phases import Phases
from chargebrain.manager.config import ROLE_STORAGE_ALL, ROLE_STORAGE_HOME
from chargebrain.manager.ports import CycleListener
from chargebrain.manager.runtime import ChargingManager
from chargebrain.manager.state import DeviceRuntime
from chargebrain.store.history import TIERS, HistoryStore, Row

log = logging.getLogger("chargebrain.history")

SITE_SERIES = ("grid", "pv", "house", "evse", "storage")
SAMPLE_S = TIERS[0][0]
FLUSH_S = 60.0
MAINTAIN_S = 600.0
VOLTAGE = 230.0

Sample = tuple[str, float, float | None, float | None, float | None]


# The running mean of one series over one step is a list, for speed:
# [start, count, power sum, l1 sum, l2 sum, l3 sum, has currents].


def _mean_row(tier: int, name: str, m: list[Any]) -> Row:
    n = m[1]
    if not m[6]:
        return (tier, name, m[0], m[2] / n, None, None, None)
    return (tier, name, m[0], m[2] / n, m[3] / n, m[4] / n, m[5] / n)


def _phases(p: Phases) -> tuple[float, float, float]:
    return float(p.l1), float(p.l2), float(p.l3)


def device_sample(rt: DeviceRuntime) -> Sample | None:
    """The power and phase currents of one device now (None: nothing to record)."""
    if rt.status.com_err or not rt.settings.device_enabled:
        return None
    ev = rt.evse
    if ev is not None:
        reading = ev.reading
        if reading is None:
            return None
        return (rt.dev_id, float(reading.power_w), *_phases(reading.currents))
    meter = rt.meter
    if meter is not None:
        return (rt.dev_id, float(meter.power_w), *_phases(meter.currents))
    group = rt.group_state
    if group is not None:
        return (rt.dev_id, group.total() * VOLTAGE / 1000.0, *_phases(group))
    return None


@dataclass
class HistoryRecorder(CycleListener):
    """Samples every SAMPLE_S seconds at the end of a cycle; writes in batches."""

    manager: ChargingManager
    store: HistoryStore
    clock: Clock
    max_bytes: Callable[[], int]
    pending: list[Row] = field(default_factory=list)
    _next: float = 0.0
    _means: list[dict[str, list[Any]]] = field(
        default_factory=lambda: [{} for _ in TIERS[1:]])
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- the session listener's part: only the end of a cycle matters ------------------

    def on_cycle(self, now: float) -> None:
        if now >= self._next:
            self.sample(now)

    # --- sampling ----------------------------------------------------------------------

    def samples(self) -> list[Sample]:
        """Every series' values now."""
        mgr = self.manager
        out: list[Sample] = []
        site = mgr.decider.last_site
        storage = 0.0
        for rt in mgr.inventory.devices.values():
            sample = device_sample(rt)
            if sample is None:
                continue
            out.append(sample)
            if rt.meter is not None and rt.settings.role in (ROLE_STORAGE_HOME,
                                                             ROLE_STORAGE_ALL):
                storage += sample[1]
        if site is not None:
            for name, power in zip(SITE_SERIES, (site.grid_w, site.produced_w,
                                                 site.consumed_w, site.evse_power_w, storage),
                                   strict=True):
                out.append((name, float(power), None, None, None))
        return out

    def sample(self, now: float) -> None:
        """Record one sample of every series at the step `now` falls in."""
        t = int(now) // SAMPLE_S * SAMPLE_S
        self._next = t + SAMPLE_S
        pending = self.pending
        steps = [(index, t // TIERS[index][0] * TIERS[index][0], means)
                 for index, means in enumerate(self._means, start=1)]
        for name, power, l1, l2, l3 in self.samples():
            pending.append((0, name, t, power, l1, l2, l3))
            for index, start, means in steps:
                m = means.get(name)
                if m is None or m[0] != start:
                    if m is not None:
                        pending.append(_mean_row(index, name, m))
                    m = means[name] = [start, 0, 0.0, 0.0, 0.0, 0.0, False]
                m[1] += 1
                m[2] += power
                if l1 is not None and l2 is not None and l3 is not None:
                    m[3] += l1
                    m[4] += l2
                    m[5] += l3
                    m[6] = True

    def close_steps(self) -> None:
        """Write the steps still open as they are (at stop)."""
        for index, means in enumerate(self._means, start=1):
            self.pending.extend(_mean_row(index, name, m) for name, m in means.items())
            means.clear()

    # --- writing -------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write what piled up, in one transaction on a thread; the rows written."""
        async with self._lock:
            rows, self.pending = self.pending, []
            if not rows:
                return 0
            return await asyncio.to_thread(self.store.write, rows)

    async def maintain(self) -> int:
        """Drop rows past their age or over the size limit (on a thread)."""
        async with self._lock:
            return await asyncio.to_thread(self.store.thin, self.clock.now(),
                                           self.max_bytes())

    async def run(self) -> None:
        """Flush every FLUSH_S seconds, maintain every MAINTAIN_S seconds."""
        since_maintain = MAINTAIN_S
        while True:
            await self.clock.sleep(FLUSH_S)
            try:
                await self.flush()
                since_maintain += FLUSH_S
                if since_maintain >= MAINTAIN_S:
                    since_maintain = 0.0
                    await self.maintain()
            except Exception:
                log.exception("writing the history failed")

    async def close(self) -> None:
        """Write everything, the open steps too."""
        self.close_steps()
        await self.flush()
