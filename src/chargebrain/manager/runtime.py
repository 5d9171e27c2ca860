"""The charging manager's control loop: read every device, decide, write what changed.

Each cycle the readers read all devices concurrently (a slow device's read carries over
to the next cycle instead of delaying the others), the decider turns the readings into
the balancer's input and allocates, and the writer applies the decisions to the EVSEs
whose command changed. The periodic cycle runs every `cycle_ms`; in between, a pushed
reading that matters (see manager.pushes) or a changed setting wakes a cycle at once.
`due_cycle` decides when a cycle is due, for `run` and for the simulator alike.

The loop owns no devices and decides nothing itself: its parts are collaborators with
narrow interfaces, wired by `manager.assembly.build_manager`:

* `inventory` (manager.inventory): the devices, their settings and drivers;
* `settings` (manager.settings): the site parameters in force;
* `pushes` (manager.pushes): pushed readings, and which of them wake the loop;
* `readers` (manager.reading): reading the devices each cycle;
* `decider` (manager.decide): from the readings to the allocation;
* `writer` (manager.apply): writing the decisions to the EVSEs;
* `guard` (manager.guard): a lower limit at once, before a cycle waits for polled
  devices, where a fresh grid reading shows an overload;
* `signal` (manager.cycle_signal): who woke the loop and who waits for a cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from chargebrain.clock import Clock
from chargebrain.core.balancer import Allocation
from chargebrain.manager.apply import Writer
from chargebrain.manager.config import SiteParams
from chargebrain.manager.cycle_signal import CycleSignal
from chargebrain.manager.decide import Decider
from chargebrain.manager.guard import OverloadGuard
from chargebrain.manager.inventory import DeviceInventory
from chargebrain.manager.ports import SessionListener
from chargebrain.manager.pushes import Pushes
from chargebrain.manager.reading import Readers
from chargebrain.manager.settings import SiteSettings
from chargebrain.manager.state import DeviceRuntime
from chargebrain.manager.topology import Topology

log = logging.getLogger("chargebrain.manager")

#: How long a cycle waits for the overload guard's writes before it reads the devices.
LOWERING_WAIT_S = 0.2
#: How long it waits for the reads of the EVSEs the guard lowers, before the writes.
FIRST_READ_WAIT_S = 0.05


class ChargingManager:
    """Runs the control loop over its collaborators."""

    def __init__(self, clock: Clock, signal: CycleSignal, inventory: DeviceInventory,
                 settings: SiteSettings, pushes: Pushes, readers: Readers,
                 decider: Decider, writer: Writer,
                 listeners: list[SessionListener]) -> None:
        self.clock = clock
        self.signal = signal
        self.inventory = inventory
        self.settings = settings
        self.pushes = pushes
        self.readers = readers
        self.decider = decider
        self.writer = writer
        self.listeners = listeners
        self.cycle_time_ms = 0
        self.cycle_duration_s = 0.0  # how long the last cycle took (its own work)
        self.cycle_count = 0
        self.max_evses = 1000
        self.auth_count = 0  # authorisations so far (the session manager counts them)
        self._next_periodic: float | None = None  # monotonic time the periodic cycle is due
        self._lock = asyncio.Lock()
        self._last_cycle_mono: float | None = None
        self.guard = OverloadGuard(clock, settings, decider, writer)
        self._takes = 0  # cycles that took the pushed readings so far
        self._taken_at: float | None = None  # when the last of them did (monotonic)
        self._reading: Topology | None = None  # set while a cycle waits for I/O (guarded)
        signal.on_wake = self._woken

    # --- what the parts hold, for the API and the session layer -------------------------

    @property
    def devices(self) -> dict[str, DeviceRuntime]:
        return self.inventory.devices

    @property
    def site(self) -> SiteParams:
        return self.settings.params

    @property
    def serial(self) -> str:
        return self.inventory.powerbrain.serial

    def shown_version(self) -> tuple[object, ...] | None:
        """A value that stays equal while nothing the API shows of the site and its devices
        changes, except the clock (None while a cycle runs: a cycle changes them bit by
        bit). Devices and the site change in a cycle (counted), by a change that wakes the
        loop (every setting, device, user and session change), or by one that calls
        `signal.changed()`; the parts that a change outside those replaces are compared."""
        if self._lock.locked():
            return None
        decider, signal = self.decider, self.signal
        return (self.cycle_count, signal.wakes, signal.changes, self.auth_count,
                self.max_evses, self.settings.params, decider.balancer_state,
                decider.last_site, self.inventory.powerbrain.phase_switching)

    def reset_device(self, dev_id: str) -> None:
        """Recreate a device with the same settings: a fresh driver and runtime state,
        and nothing the balancer remembered of it (ConfigError if there is none)."""
        self.inventory.reset_device(dev_id)
        self.decider.forget(dev_id)

    # --- the loop ----------------------------------------------------------------------

    def wake(self) -> None:
        """Run a cycle now on the latest readings (a relevant push, a changed setting)."""
        self.signal.wake()

    def due_cycle(self) -> bool | None:
        """Whether a cycle is due now: True for the periodic one (every `cycle_ms`; it
        reads every device), False for one on the latest pushed readings (something
        relevant arrived or changed since the last cycle), None for none. The caller
        must run the cycle it is told is due. `run` and the simulator both ask this."""
        mono = self.clock.monotonic()
        nxt = self._next_periodic
        signal = self.signal
        if nxt is None or mono >= nxt:
            period = self.settings.params.cycle_ms / 1000.0
            # Keep the rhythm; after a late cycle, the next one a period later.
            nxt = mono + period if nxt is None or nxt + period <= mono else nxt + period
            self._next_periodic = nxt
            signal.urgent = False
            return True
        if signal.urgent:
            signal.urgent = False
            return False
        return None

    async def wait_cycle(self, timeout: float = 2.0) -> None:
        """Wake the loop and wait until a cycle has run (shared by concurrent callers)."""
        self.signal.wake()
        await self.signal.wait_seen(self.signal.wakes, timeout)

    async def wait_woken(self, timeout: float = 2.0) -> None:
        """Wait for the cycle that something relevant woke (a pushed reading that mattered,
        a changed setting), if it has not run yet; return at once when none is pending."""
        await self.signal.wait_seen(self.signal.wakes, timeout)

    async def run(self) -> None:
        """The periodic cycle every `cycle_ms`; in between, a cycle at once when woken."""
        event = self.signal.event
        while True:
            event.clear()
            due = self.due_cycle()
            if due is None:
                assert self._next_periodic is not None
                wait = self._next_periodic - self.clock.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=max(0.0, wait))
                continue
            try:
                await self.cycle(poll=due)
            except Exception:
                log.exception("control cycle failed")

    @property
    def waits_for_io(self) -> bool:
        """Whether a cycle of a site with devices polled over I/O waits for their reads or
        its writes (meanwhile the overload guard acts at every wake-up)."""
        return self._reading is not None

    def _woken(self) -> None:
        """Something woke the loop: while a cycle waits for polled devices or its writes,
        the guard acts on the readings at hand now (that cycle decided, or decides, on
        older pushed readings).
        Called within the caller's request: a fault of the guard is logged, not raised."""
        topo = self._reading
        if topo is not None:
            try:
                self.guard.act(topo, self._taken_at, self._takes + 1)
            except Exception:
                log.exception("overload guard failed")

    async def _guard_first(self, topo: Topology) -> frozenset[str]:
        """The overload guard at the start of a cycle (whose decision sees the readings it
        acts on). The EVSEs it lowers that are polled over I/O are read first, so that
        their readings are from the moment of the pushed sample, not from after the
        guard's write (the decision subtracts them from that sample; a read slower than
        FIRST_READ_WAIT_S carries over); then its writes go, before the other reads crowd
        the loop (one slower than LOWERING_WAIT_S goes on).
        Returns the ids of the EVSEs read already."""
        cuts = self.guard.plan(topo, self._taken_at)
        if not cuts:
            return frozenset()
        polled = [rt for rt in topo.remote if rt.dev_id in cuts]
        if polled:
            await self.readers.read_first(polled, FIRST_READ_WAIT_S)
        self.guard.lower(cuts, self._takes + 1)
        await self.writer.lowering(LOWERING_WAIT_S)
        return frozenset(rt.dev_id for rt in polled)

    async def cycle(self, poll: bool = True) -> Allocation:
        """One control cycle. `poll=False` (a cycle a push woke) takes the pushed readings
        and reads the polled devices again without waiting for slow ones. Where devices
        are polled over I/O, the overload guard acts first, and again on every wake-up
        while the cycle waits for their reads or its writes."""
        async with self._lock:
            signal = self.signal
            # The cycle sees everything that woke it so far.
            signal.urgent = False
            seen = signal.wakes
            started = time.perf_counter()
            topo = self.inventory.topology()
            guarded = bool(topo.remote)
            done: frozenset[str] = frozenset()
            try:
                if guarded:
                    self._reading = topo
                    done = await self._guard_first(topo)
                # The pushed readings are taken now, before the next wait.
                self._takes += 1
                self._taken_at = self.clock.monotonic()
                if poll:
                    await self.readers.read_all(topo, done)
                else:
                    await self.readers.read_woken(topo, done)
                self._reading = None  # (not within the decision: it may wake the loop)
                alloc = self.decider.decide(self.inventory.topology())
                self._reading = topo if guarded else None
                await self.writer.apply(alloc, self._takes)
            finally:
                self._reading = None
            self.cycle_count += 1
            self.cycle_duration_s = time.perf_counter() - started
            elapsed_ms = round(self.cycle_duration_s * 1000)
            mono = self.clock.monotonic()
            if poll:
                if self._last_cycle_mono is not None:
                    self.cycle_time_ms = round((mono - self._last_cycle_mono) * 1000) or elapsed_ms
                else:
                    self.cycle_time_ms = elapsed_ms
                self._last_cycle_mono = mono
            listeners = self.listeners
            if listeners:
                now = self.clock.now()
                for listener in listeners:
                    listener.on_cycle(now)
            signal.cycle_done(seen)
            return alloc

    def cycle_now(self, poll: bool = True) -> Allocation:
        """`cycle(poll)` run to its end at once, without an event loop.

        For a manager whose every device is an HTTP-input device: nothing in its cycle
        waits for I/O, so the coroutine finishes in one step (the simulator runs the
        application's cycle this way). Raises RuntimeError when a device would need
        I/O or a cycle is running.
        """
        if self._lock.locked():
            raise RuntimeError("a cycle is running")
        if not self.inventory.topology().synchronous:
            raise RuntimeError("some devices are read or written over I/O")
        coro = self.cycle(poll)
        try:
            coro.send(None)
        except StopIteration as done:
            result: Allocation = done.value
            return result
        coro.close()
        raise RuntimeError("the cycle had to wait")

    async def close(self) -> None:
        self.readers.cancel()
        for rt in self.devices.values():
            if rt.driver is not None:
                try:
                    await rt.driver.close()
                except Exception:
                    log.debug("closing %s failed", rt.dev_id, exc_info=True)

