"""Time as an injected dependency: the real clock for production, a virtual one for tests.

Nothing in core/ reads the time itself; the shell passes `now` in.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall time; virtual for simulations)."""

    def monotonic(self) -> float:
        """Seconds, never going backwards; used for timers and durations."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock."""


class RealClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VirtualClock:
    """A clock that only moves when told to: `advance()` wakes sleepers in time order."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = start
        self._start = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._t - self._start

    def set(self, t: float) -> None:
        self._t = t

    def advance(self, seconds: float) -> None:
        """Move time forward; sleepers whose time has come are woken (in order)."""
        target = self._t + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, fut = heapq.heappop(self._sleepers)
            self._t = max(self._t, when)
            if not fut.done():
                fut.set_result(None)
        self._t = target

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._t + max(0.0, seconds), next(self._seq), fut))
        await fut
