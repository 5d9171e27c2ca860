"""Keeping full garbage collections short in the long-running process.

A full (generation 2) collection walks every object the collector tracks and holds the
event loop meanwhile: with a thousand devices and charge point connections that is
150-250 ms, long enough to be most of an overload reaction's budget. What survives a
full collection lives long (configuration, device runtimes, connections), so
`HeapKeeper` moves it out of the collector's way (`gc.freeze()`): once at start, and
again just after each full collection the interpreter runs by itself, so that the next
one only walks what was made since. Frozen objects are still freed when nothing refers
to them any more; only a reference cycle among them (a closed connection, a removed
device) would wait, so every `tidy_s` (an hour) everything is unfrozen, collected once
and frozen again.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

TIDY_S = 3600.0


class HeapKeeper:
    """Freezes what survives full collections; tidies the frozen heap every `tidy_s`."""

    def __init__(self, tidy_s: float = TIDY_S) -> None:
        self.tidy_s = tidy_s
        self.tidied = 0  # how many times the frozen heap was collected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False

    def start(self) -> None:
        """Freeze what exists now and keep doing so after full collections."""
        self._loop = asyncio.get_running_loop()
        gc.freeze()
        gc.callbacks.append(self._collected)
        self._timer = self._loop.call_later(self.tidy_s, self.tidy)

    def stop(self) -> None:
        """Stop, and give everything frozen back to the collector."""
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None
        gc.unfreeze()

    def tidy(self) -> None:
        """Collect the frozen heap once (cycles among frozen objects), freeze again."""
        self._busy = True
        try:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        finally:
            self._busy = False
        self.tidied += 1
        if self._loop is not None:
            self._timer = self._loop.call_later(self.tidy_s, self.tidy)

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        # Called by the interpreter around every collection, in the thread that caused it:
        # the freeze runs on the event loop, after the collection has finished.
        if phase == "stop" and info.get("generation") == 2 and not self._busy:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(gc.freeze)
