"""An OCPP 1.6 backend (central system) built with the `ocpp` library's own ChargePoint
class on a `websockets` server, schema validation on both ways: what chargebrain's
gateway connects to in the tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result


@dataclass
class Seen:
    """Every call the backend received, in order: (charge point id, action, payload)."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def of(self, action: str, cp_id: str | None = None) -> list[dict[str, Any]]:
        return [p for c, a, p in self.calls if a == action and cp_id in (None, c)]

    def actions(self, cp_id: str | None = None, skip: tuple[str, ...] = ("Heartbeat",)
                ) -> list[str]:
        return [a for c, a, _p in self.calls if cp_id in (None, c) and a not in skip]

    def statuses(self, connector: int = 1) -> list[str]:
        return [p["status"] for p in self.of("StatusNotification")
                if p["connector_id"] == connector]


class BackendCP(ChargePoint):  # type: ignore[misc]
    """The backend's side of one charge point's connection."""

    def __init__(self, cp_id: str, connection: Any, backend: Backend) -> None:
        super().__init__(cp_id, connection, response_timeout=5)
        self.backend = backend

    def _note(self, action: str, kw: dict[str, Any]) -> None:
        self.backend.seen.calls.append((self.id, action, kw))
        self.backend.changed.set()

    @on("BootNotification")
    def on_boot(self, **kw: Any) -> Any:
        self._note("BootNotification", kw)
        return call_result.BootNotification(current_time=_now(), interval=300,
                                            status=self.backend.boot_status)

    @on("Heartbeat")
    def on_heartbeat(self, **kw: Any) -> Any:
        self._note("Heartbeat", kw)
        return call_result.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, **kw: Any) -> Any:
        self._note("StatusNotification", kw)
        return call_result.StatusNotification()

    @on("MeterValues")
    def on_meters(self, **kw: Any) -> Any:
        self._note("MeterValues", kw)
        return call_result.MeterValues()

    @on("StartTransaction")
    def on_start(self, **kw: Any) -> Any:
        self._note("StartTransaction", kw)
        return call_result.StartTransaction(
            transaction_id=next(self.backend.tids),
            id_tag_info={"status": self.backend.tag_status.get(kw["id_tag"], "Accepted")})

    @on("StopTransaction")
    def on_stop(self, **kw: Any) -> Any:
        self._note("StopTransaction", kw)
        return call_result.StopTransaction()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Backend:
    """The backend: a websockets server on a free port; `url` is what a charge point is
    given (its id is appended)."""

    def __init__(self) -> None:
        self.seen = Seen()
        self.changed = asyncio.Event()
        self.cps: dict[str, BackendCP] = {}
        self.credentials: dict[str, tuple[str, str] | None] = {}
        self.boot_status = "Accepted"
        self.tag_status: dict[str, str] = {}  # idTag → status the backend answers
        self.tids = itertools.count(1001)
        self.port = 0
        self._server: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def start(self, port: int = 0) -> None:
        self._server = await websockets.serve(self._serve, "127.0.0.1", port,
                                              subprotocols=["ocpp1.6"])
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Go away: the server closes with every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cps.clear()

    async def _serve(self, ws: Any) -> None:
        cp_id = ws.request.path.rstrip("/").rpartition("/")[2]
        header = ws.request.headers.get("Authorization")
        self.credentials[cp_id] = None
        if header and header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            self.credentials[cp_id] = (user, password)
        cp = BackendCP(cp_id, ws, self)
        self.cps[cp_id] = cp
        with contextlib.suppress(websockets.ConnectionClosed):
            await cp.start()

    async def wait(self, predicate: Any, timeout: float = 5.0) -> None:
        """Until `predicate()` holds for what the backend has seen."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)

    async def connected(self, cp_id: str, timeout: float = 5.0) -> BackendCP:
        await self.wait(lambda: cp_id in self.cps, timeout)
        return self.cps[cp_id]


@contextlib.asynccontextmanager
async def running_backend(port: int = 0) -> AsyncIterator[Backend]:
    backend = Backend()
    await backend.start(port)
    try:
        yield backend
    finally:
        await backend.stop()
