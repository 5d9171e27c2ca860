"""Diagnostic logging: everything the "chargebrain" loggers say, at DEBUG, for a while.

`set_diag_logging&enable=1` starts a recording that stops by itself after DURATION_S
(measured on the app's clock) or when disabled; the lines stay available for download
until the next recording starts. The recording is kept in memory and bounded in lines
and characters (the oldest lines go first).

This module must never leave the logger at DEBUG after a recording ends, never let the
console or other handlers receive more than before, and never grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime

from chargebrain.clock import Clock

DURATION_S = 300.0
MAX_LINES = 20_000
MAX_CHARS = 4_000_000
MAX_LINE = 4_000
LOGGER = "chargebrain"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Buffer(logging.Handler):
    def __init__(self, owner: DiagLog) -> None:
        super().__init__(logging.DEBUG)
        self.owner = owner
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if not self.owner.enabled:
            return
        try:
            line = self.format(record)
        except Exception:  # a bad log call must not break the caller
            self.handleError(record)
            return
        self.owner.add(line[:MAX_LINE])


class DiagLog:
    """A time-limited DEBUG recording of the chargebrain loggers."""

    def __init__(self, clock: Clock, logger: str = LOGGER, duration: float = DURATION_S,
                 max_lines: int = MAX_LINES, max_chars: int = MAX_CHARS) -> None:
        self.clock = clock
        self.logger = logging.getLogger(logger)
        self.duration = duration
        self.max_lines = max_lines
        self.max_chars = max_chars
        self._lines: deque[str] = deque()
        self._chars = 0
        self._until: float | None = None  # monotonic end of the running recording
        self._handler: _Buffer | None = None
        self._previous_level = logging.NOTSET
        self._previous_handler_levels: dict[logging.Handler, int] = {}
        self._watch: asyncio.Task[None] | None = None
        self.started_at: float | None = None  # wall time
        self.stopped_at: float | None = None

    @property
    def enabled(self) -> bool:
        return self._until is not None and self.clock.monotonic() < self._until

    def remaining(self) -> float:
        if self._until is None:
            return 0.0
        return max(0.0, self._until - self.clock.monotonic())

    def start(self) -> None:
        """Start (or restart) a recording of DURATION_S seconds with an empty buffer."""
        self.stop()
        self._lines.clear()
        self._chars = 0
        self._until = self.clock.monotonic() + self.duration
        self.started_at = self.clock.now()
        self.stopped_at = None
        self._quiet_other_handlers()
        self._previous_level = self.logger.level
        self._handler = _Buffer(self)
        self.logger.addHandler(self._handler)
        self.logger.setLevel(logging.DEBUG)
        self.add(f"{_stamp(self.started_at)} diagnostic logging started for "
                 f"{self.duration:.0f} s")
        with contextlib.suppress(RuntimeError):
            self._watch = asyncio.get_running_loop().create_task(self._expire())

    def stop(self) -> None:
        """End the recording (the lines stay for download)."""
        if self._handler is None:
            return
        self.logger.removeHandler(self._handler)
        self.logger.setLevel(self._previous_level)
        for handler, level in self._previous_handler_levels.items():
            handler.setLevel(level)
        self._previous_handler_levels.clear()
        self._handler = None
        self._until = None
        self.stopped_at = self.clock.now()
        self.add(f"{_stamp(self.stopped_at)} diagnostic logging stopped")
        watch, self._watch = self._watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()

    def add(self, line: str) -> None:
        self._lines.append(line)
        self._chars += len(line) + 1
        while self._lines and (len(self._lines) > self.max_lines
                               or self._chars > self.max_chars):
            self._chars -= len(self._lines.popleft()) + 1

    def text(self) -> str:
        return "\n".join(self._lines) + ("\n" if self._lines else "")

    def _quiet_other_handlers(self) -> None:
        """Handlers that took everything up to now keep taking what they took before."""
        effective = self.logger.getEffectiveLevel()
        self._previous_handler_levels.clear()
        for handler in _handlers_above(self.logger):
            if handler.level < effective:
                self._previous_handler_levels[handler] = handler.level
                handler.setLevel(effective)

    async def _expire(self) -> None:
        while self._until is not None:
            left = self._until - self.clock.monotonic()
            if left <= 0:
                self.stop()
                return
            await self.clock.sleep(left)


def _handlers_above(logger: logging.Logger) -> list[logging.Handler]:
    out: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        out.extend(current.handlers)
        if not current.propagate:
            break
        current = current.parent
    return out


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
