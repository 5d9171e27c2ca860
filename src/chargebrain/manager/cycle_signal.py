"""The control loop's wake-up signal: what woke it since the last cycle, and who waits.

A changed setting or a pushed reading that matters calls `wake()`; the loop runs a cycle
at once; one that needs no cycle calls `changed()`. Callers that must see the outcome of
their change wait until a cycle that started after their wake-up has finished. Shared by
the manager's parts (which wake the loop) and the loop itself (which runs the cycles); it
knows nothing of either.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class CycleSignal:
    """Wake-ups of the control loop and the cycles that have seen them."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.urgent = False  # something relevant arrived: a cycle is due now
        self.wakes = 0  # wake() calls so far
        self.seen = 0  # wake() calls before the start of the last finished cycle
        # changed() calls so far: what the API shows changed outside a cycle without
        # needing one (a read that outlasted its cycle, a set soft meter, ...).
        self.changes = 0
        # (wake count a cycle must have seen, future) of callers waiting for a cycle.
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # Told at every wake() (the loop's overload guard), before the loop runs.
        self.on_wake: Callable[[], None] | None = None

    def wake(self) -> None:
        """Run a cycle now on the latest readings (a relevant push, a changed setting)."""
        self.urgent = True
        self.wakes += 1
        self.event.set()
        if self.on_wake is not None:
            self.on_wake()

    def changed(self) -> None:
        """Something a device or the site shows changed outside a cycle, and no cycle is
        needed for it (answers made before are stale: `ChargingManager.shown_version`)."""
        self.changes += 1

    async def wait_seen(self, wakes: int, timeout: float) -> None:
        """Wait until a cycle that started after the `wakes`th wake() has finished."""
        if self.seen >= wakes:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((wakes, fut))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(fut), timeout)

    def cycle_done(self, seen: int) -> None:
        """A cycle that saw the first `seen` wake-ups has finished: release its waiters."""
        self.seen = seen
        if self._waiters:
            waiting = []
            for wakes, fut in self._waiters:
                if wakes > seen:
                    waiting.append((wakes, fut))
                elif not fut.done():
                    fut.set_result(None)
            self._waiters = waiting
