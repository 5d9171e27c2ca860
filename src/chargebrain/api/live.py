"""Live updates for the web UI: `GET /events`, a stream of server-sent events.

After every control cycle (at most twice a second) each open stream gets the
get_dev_info answer as the caller may see it (`event: devinfo`); with `?log=1` (admin
only, as get_diag_log) also every new log line (`event: log`, from `LogTail`, the last
1000 lines of the `chargebrain` loggers, the first ones the buffer still holds at
connect included). A comment line every 15 s keeps idle proxies from closing the
stream. The answer is the same JSON get_dev_info gives, so a client needs one parser;
a browser reads it with `fetch` (which, unlike `EventSource`, sends the Authorization
header of the admin).

At most MAX_STREAMS streams are open at once (429 beyond). `LiveFeed.close()` ends
every stream, so that the server stops without waiting for them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from chargebrain.api import auth, views
from chargebrain.api.answers import challenge, error_response, json_response
from chargebrain.api.errors import ApiError
from chargebrain.manager.ports import CycleListener

if TYPE_CHECKING:
    from chargebrain.api.services import Services

MAX_STREAMS = 50
MIN_INTERVAL_S = 0.5
KEEPALIVE_S = 15.0
LOG_LINES = 1000


class LogTail(logging.Handler):
    """The last LOG_LINES log records of chargebrain, numbered, for live streams."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(
            maxlen=LOG_LINES)
        self.seq = 0
        self.on_line: list[asyncio.Event] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        self.seq += 1
        self.lines.append((self.seq, {"t": round(record.created, 3), "level": record.levelname,
                                      "logger": record.name, "msg": message[:2000]}))
        for event in self.on_line:
            event.set()

    def since(self, seq: int) -> list[tuple[int, dict[str, Any]]]:
        return [(n, line) for n, line in self.lines if n > seq]


@dataclass
class LiveFeed(CycleListener):
    """Told the end of every cycle (a session listener); wakes the open streams."""

    version: int = 0
    closed: bool = False
    streams: int = 0
    _waiters: set[asyncio.Event] = field(default_factory=set)
    _cache: dict[bool, tuple[int, str]] = field(default_factory=dict)

    def on_cycle(self, now: float) -> None:
        self.version += 1
        for event in self._waiters:
            event.set()

    def close(self) -> None:
        """End every stream (the server stops)."""
        self.closed = True
        for event in self._waiters:
            event.set()

    def dev_info(self, app: Services, admin: bool) -> str:
        """get_dev_info as JSON text for the admin or anyone else, made once per cycle."""
        cached = self._cache.get(admin)
        if cached is not None and cached[0] == self.version:
            return cached[1]

        def user_label(user_id: str) -> str:
            user = app.users.get(user_id)
            return user.name if user is not None and user.display else ""

        viewer = views.Viewer(admin=admin, user_label=user_label)
        text = json.dumps(views.dev_info_json(app.manager, app.clock.now(),
                                              app.clock.monotonic(), viewer),
                          separators=(",", ":"), allow_nan=False)
        self._cache[admin] = (self.version, text)
        return text


def _event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


async def handle_events(app: Services, feed: LiveFeed, tail: LogTail,
                        request: web.Request) -> web.StreamResponse:
    """`GET /events[?log=1]`: the stream described above."""
    try:
        caller = await auth.identify(app, request)
    except ApiError as exc:
        return json_response(exc.body, status=exc.status, headers=exc.headers)
    want_log = request.query.get("log", "0") not in ("", "0")
    if want_log and not caller.is_admin:
        await auth.penalise(app, caller)
        return challenge("the log needs the admin password")
    if feed.closed:
        return error_response("the server is stopping", 503)
    if feed.streams >= MAX_STREAMS:
        return error_response(f"too many live streams (at most {MAX_STREAMS})", 429)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})
    wake = asyncio.Event()
    feed.streams += 1
    feed._waiters.add(wake)
    if want_log:
        tail.on_line.append(wake)
    try:
        await response.prepare(request)
        await _stream(app, feed, tail, response, wake, caller.is_admin, want_log)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        feed.streams -= 1
        feed._waiters.discard(wake)
        if want_log:
            tail.on_line.remove(wake)
    return response


async def _stream(app: Services, feed: LiveFeed, tail: LogTail, response: web.StreamResponse,
                  wake: asyncio.Event, admin: bool, want_log: bool) -> None:
    loop = asyncio.get_running_loop()
    sent_version = -1
    log_seq = 0
    await response.write(b"retry: 2000\n\n")
    while not feed.closed:
        chunks: list[bytes] = []
        if feed.version != sent_version:
            sent_version = feed.version
            chunks.append(_event("devinfo", feed.dev_info(app, admin)))
        if want_log:
            for seq, line in tail.since(log_seq):
                log_seq = seq
                chunks.append(_event("log", json.dumps(line, separators=(",", ":"))))
        if chunks:
            await response.write(b"".join(chunks))
        wake.clear()
        started = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=KEEPALIVE_S)
        if not wake.is_set() and not feed.closed:
            await response.write(b": keep-alive\n\n")
            continue
        # Several cycles in a burst are one update.
        rest = MIN_INTERVAL_S - (loop.time() - started)
        if rest > 0 and not feed.closed:
            await asyncio.sleep(rest)
