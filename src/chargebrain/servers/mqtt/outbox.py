"""What waits to be published: bounded, never waiting for the broker.

Two kinds of message: *state* (retained topics: the latest payload of a topic replaces
one still waiting, so an outage leaves one message per topic, not a backlog) and
*events* (log lines, transactions, API answers: kept in order, at most `limit`; when
full the oldest is dropped and counted). Putting never blocks and costs O(1), so the
control cycle and the log can hand messages over whatever the broker does. The log
handler puts from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

EVENT_LIMIT = 1000
MAX_LOG_LINE = 2000
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Outgoing:
    """One message to publish."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0
    correlation: bytes | None = None  # MQTT 5: echoed from a request
    status: int | None = None  # MQTT 5 user property of an API answer


class Outbox:
    """Messages waiting for the connection (see the module's docstring)."""

    def __init__(self, limit: int = EVENT_LIMIT) -> None:
        self._state: OrderedDict[str, Outgoing] = OrderedDict()
        self._events: deque[Outgoing] = deque(maxlen=limit)
        self._ready = asyncio.Event()
        self.dropped = 0  # events dropped because the box was full

    def __len__(self) -> int:
        return len(self._state) + len(self._events)

    def put_state(self, message: Outgoing) -> None:
        self._state.pop(message.topic, None)
        self._state[message.topic] = message
        self._ready.set()

    def put_event(self, message: Outgoing) -> None:
        events = self._events
        if events.maxlen is not None and len(events) >= events.maxlen:
            self.dropped += 1
        events.append(message)
        self._ready.set()

    def put_back(self, message: Outgoing) -> None:
        """A message that could not be sent goes first next time (unless newer state
        for its topic is waiting)."""
        if message.retain:
            if message.topic not in self._state:
                self._state[message.topic] = message
                self._state.move_to_end(message.topic, last=False)
        elif self._events.maxlen is None or len(self._events) < self._events.maxlen:
            self._events.appendleft(message)
        else:
            self.dropped += 1
        self._ready.set()

    def clear_state(self) -> None:
        """Forget waiting state (it is built afresh after a reconnect)."""
        self._state.clear()

    async def next(self) -> Outgoing:
        """The next message: events first (they are in order), then state."""
        while True:
            if self._events:
                return self._events.popleft()
            if self._state:
                return self._state.popitem(last=False)[1]
            self._ready.clear()
            await self._ready.wait()


class LogHandler(logging.Handler):
    """Hands every log record at INFO and above to `put` as one text line, from any
    thread (records of other threads reach the event loop by call_soon_threadsafe)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, topic: str, outbox: Outbox) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(_FORMAT))
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self.topic = topic
        self._outbox = outbox
        self.enabled = True  # False: records are dropped at once (no broker configured)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.enabled:
            return
        try:
            line = self.format(record)[:MAX_LOG_LINE]
        except Exception:  # a bad log call must not break the caller
            self.handleError(record)
            return
        message = Outgoing(self.topic, line.encode("utf-8", "replace"))
        if threading.get_ident() == self._loop_thread:
            self._outbox.put_event(message)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the line is lost
            self._loop.call_soon_threadsafe(self._outbox.put_event, message)
