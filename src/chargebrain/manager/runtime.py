"""The charging manager's control loop: read every device, decide, write what changed.

Each cycle reads all devices concurrently (a slow device's read carries over to the next
cycle instead of delaying the others), turns readings into immutable inputs for the
balancer in core/, and applies its decisions to the EVSEs whose command changed. The
periodic cycle runs every `cycle_ms`; in between, a pushed reading (HTTP input) that
matters — an EVSE's state changing, a first reading or one after a communication error,
an EVSE drawing clearly more than it was given, a meter showing load rising beyond what
the last decision allowed for — runs a cycle at once, so an overload is acted on without
waiting for the period. Other pushed readings are kept for the next cycle.
`due_cycle` decides when a cycle is due, for `run` and for the simulator alike.
Configuration changes take effect at once (they wake a cycle).

The manager's parts live beside this module, one concern each: the device inventory
(`inventory`), the shape of the site a cycle works on (`topology`), pushed readings and
which of them wake a cycle (`pushes`), reading the devices (`reading`), the balancer's
input (`inputs`), deciding (`decide`) and writing the commands (`apply`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from chargebrain.clock import Clock
from chargebrain.core.balancer import Allocation, BalancerState
from chargebrain.core.formula import DictEvalContext, Formula
from chargebrain.core.hold import DEFAULT_HOLD_S
from chargebrain.core.phases import Phases
from chargebrain.devices.registry import DeviceTypes
from chargebrain.manager.apply import _apply
from chargebrain.manager.config import DeviceConfig, SiteParams
from chargebrain.manager.decide import _Deciding
from chargebrain.manager.inventory import _DeviceInventory
from chargebrain.manager.pushes import _Pushes
from chargebrain.manager.reading import _Reading
from chargebrain.manager.site import SiteSnapshot
from chargebrain.manager.state import DeviceRuntime
from chargebrain.manager.topology import _Topology
from chargebrain.powerbrain.controller import PowerBrain

log = logging.getLogger("chargebrain.manager")


class ConfigStore(Protocol):
    def save_site(self, params: SiteParams) -> None: ...
    def save_device(self, cfg: DeviceConfig) -> None: ...
    def delete_device(self, dev_id: str) -> None: ...
    def save_overdraft(self, value: int) -> None: ...


class SessionListener(Protocol):
    """Told about plug-in, unplug and the end of every cycle (transactions, auth)."""

    def on_plug(self, rt: DeviceRuntime, now: float) -> None: ...
    def on_unplug(self, rt: DeviceRuntime, now: float) -> None: ...
    def on_rfid(self, rt: DeviceRuntime, rfid: str, now: float) -> None: ...
    def on_cycle(self, mgr: ChargingManager, now: float) -> None: ...


class ChargingManager(_DeviceInventory, _Pushes, _Reading, _Deciding):
    """Owns the devices and runs the control loop."""

    def __init__(
        self,
        clock: Clock,
        powerbrain: PowerBrain,
        types: DeviceTypes,
        store: ConfigStore,
        site: SiteParams | None = None,
        overdraft_cur: int = 0,
    ) -> None:
        self.clock = clock
        self.powerbrain = powerbrain
        self.types = types
        self.store = store
        self.site = site or SiteParams()
        self.devices: dict[str, DeviceRuntime] = {}
        self._order: list[str] = []
        self.balancer_state = BalancerState(overdraft_cur=overdraft_cur)
        self.last_allocation: Allocation | None = None
        self.last_site: SiteSnapshot | None = None
        self.cycle_time_ms = 0
        self.cycle_count = 0
        self.max_evses = 1000
        self.auth_count = 0
        self.evaluated_max_total_ma = 0
        self.evaluated_max_evse_ma = 0
        self.listeners: list[SessionListener] = []
        self.cm_values: dict[str, float] = {}
        self.wish_provider: Callable[[ChargingManager, DictEvalContext, float], None] | None = None
        self._wake = asyncio.Event()
        self._urgent = False  # something relevant arrived: a cycle is due now
        self._wakes = 0  # wake() calls so far
        self._wakes_seen = 0  # wake() calls before the start of the last finished cycle
        self._next_periodic: float | None = None  # monotonic time the periodic cycle is due
        # (wake count a cycle must have seen, future) of callers waiting for a cycle.
        self._cycle_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._topo: _Topology | None = None
        self._formula_devices: frozenset[str] = frozenset()
        # EVSEs that some user's dev_ids name (kept current by the user directory).
        self.user_evses: frozenset[str] = frozenset()
        self._pending: dict[str, asyncio.Task[Any]] = {}
        self._lock = asyncio.Lock()
        self._formulas: dict[str, Formula] = {}
        self._last_cycle_mono: float | None = None
        self.ctx = DictEvalContext()
        # Recent non-EVSE load per node (0 = site, else group number), for the peak hold.
        self._load_history: dict[int, list[tuple[float, Phases]]] = {}
        self.load_hold_s = DEFAULT_HOLD_S

    # --- the controller and the overdraft ----------------------------------------------

    @property
    def serial(self) -> str:
        return self.powerbrain.serial

    @property
    def overdraft_cur(self) -> int:
        return self.balancer_state.overdraft_cur

    def reset_overdraft(self) -> None:
        self.balancer_state = replace(self.balancer_state, overdraft_cur=0)
        self.store.save_overdraft(0)

    # --- the loop ----------------------------------------------------------------------

    def wake(self) -> None:
        """Run a cycle now on the latest readings (a relevant push, a changed setting)."""
        self._urgent = True
        self._wakes += 1
        self._wake.set()

    def due_cycle(self) -> bool | None:
        """Whether a cycle is due now: True for the periodic one (every `cycle_ms`; it
        reads every device), False for one on the latest pushed readings (something
        relevant arrived or changed since the last cycle), None for none. The caller
        must run the cycle it is told is due. `run` and the simulator both ask this."""
        mono = self.clock.monotonic()
        nxt = self._next_periodic
        if nxt is None or mono >= nxt:
            period = self.site.cycle_ms / 1000.0
            # Keep the rhythm; after a late cycle, the next one a period later.
            nxt = mono + period if nxt is None or nxt + period <= mono else nxt + period
            self._next_periodic = nxt
            self._urgent = False
            return True
        if self._urgent:
            self._urgent = False
            return False
        return None

    async def wait_cycle(self, timeout: float = 2.0) -> None:
        """Wake the loop and wait until a cycle has run (shared by concurrent callers)."""
        self.wake()
        await self._wait_seen(self._wakes, timeout)

    async def wait_woken(self, timeout: float = 2.0) -> None:
        """Wait for the cycle that something relevant woke (a pushed reading that mattered,
        a changed setting), if it has not run yet; return at once when none is pending."""
        await self._wait_seen(self._wakes, timeout)

    async def _wait_seen(self, wakes: int, timeout: float) -> None:
        """Wait until a cycle that started after the `wakes`th wake() has finished."""
        if self._wakes_seen >= wakes:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._cycle_waiters.append((wakes, fut))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(fut), timeout)

    async def run(self) -> None:
        """The periodic cycle every `cycle_ms`; in between, a cycle at once when woken."""
        while True:
            self._wake.clear()
            due = self.due_cycle()
            if due is None:
                assert self._next_periodic is not None
                wait = self._next_periodic - self.clock.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, wait))
                continue
            try:
                await self.cycle(poll=due)
            except Exception:
                log.exception("control cycle failed")

    async def cycle(self, poll: bool = True) -> Allocation:
        """One control cycle. `poll=False` (a cycle a push woke) takes the pushed readings
        and reads the polled devices again without waiting for slow ones."""
        async with self._lock:
            # The cycle sees everything that woke it so far.
            self._urgent = False
            seen = self._wakes
            started = time.perf_counter()
            if poll:
                await self._read_all(self._topology())
            else:
                await self._read_woken(self._topology())
            alloc = self._decide(self._topology())
            await _apply(alloc, self.devices, self.clock)
            self.cycle_count += 1
            elapsed_ms = round((time.perf_counter() - started) * 1000)
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
                    listener.on_cycle(self, now)
            self._wakes_seen = seen
            if self._cycle_waiters:
                waiting = []
                for wakes, fut in self._cycle_waiters:
                    if wakes > seen:
                        waiting.append((wakes, fut))
                    elif not fut.done():
                        fut.set_result(None)
                self._cycle_waiters = waiting
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
        if not self._topology().synchronous:
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
        for task in self._pending.values():
            task.cancel()
        for rt in self.devices.values():
            if rt.driver is not None:
                try:
                    await rt.driver.close()
                except Exception:
                    log.debug("closing %s failed", rt.dev_id, exc_info=True)
