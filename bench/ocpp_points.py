"""The charge points of the OCPP benchmark, as its client process plays them.

`Box` is an OCPP 1.6J charge point with connector 1 on a WebSocket of its own, through
the project's OCPP adapter (every message checked against the OCPP schemas, as a
wallbox's OCPP library does); `Pusher` is an HTTP-input EVSE pushing set_ajax_evse on a
keep-alive connection. Both carry a car that draws what it was last given (the limit of
the last charging profile, the current of the last push answer), and both note every
change of that in `changed`, so that a probe can wait for a new limit.

chargebrain is imported inside functions, so that a client process starts quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.common import HOST, http_answer

if TYPE_CHECKING:
    from chargebrain.servers.ocpp.adapter import Payload, Peer

MAX_A = 16.0  # what a car draws at most on each phase (and the EVSEs' maximum)
MIN_A = 6.0
VOLTAGE = 230.0


def draw_a(given_a: float) -> float:
    """What a car draws on each phase when given `given_a` (before any: its minimum)."""
    return min(given_a, MAX_A) if given_a >= MIN_A else 0.0


@dataclass
class Counts:
    sent: int = 0  # reports (MeterValues, set_ajax_evse) answered
    errors: int = 0
    profiles: int = 0  # SetChargingProfile accepted


class Box:
    """One OCPP charge point with connector 1: charging (a transaction, a car drawing),
    or with `charging=False` available without a car."""

    def __init__(self, url: str, cp_id: str, counts: Counts, charging: bool = True) -> None:
        self.url = f"{url}/{cp_id}"
        self.cp_id = cp_id
        self.counts = counts
        self.charging = charging
        self.peer: Peer | None = None
        self.tx: int | None = None
        self.energy_wh = 0.0
        self.given_a = MIN_A  # the limit of the last charging profile
        self.changed = asyncio.Event()  # set when a profile arrives
        self.report_on_profile = False  # send MeterValues at once after each profile
        self.tasks: set[asyncio.Task[Any]] = set()
        self._triggered: list[str] = []

    @property
    def status_now(self) -> str:
        return "Charging" if self.charging else "Available"

    async def open(self) -> None:
        from chargebrain.servers.ocpp import cp_messages as CP
        from chargebrain.servers.ocpp.adapter import Peer, connect

        self.peer = Peer(await connect(self.url), self._on_call, name=self.cp_id,
                         answered=self._answered)
        self._spawn(self.peer.run())
        await self.peer.call("BootNotification", CP.boot("bench", "Box", self.cp_id, "1"))
        if not self.charging:
            await self._status("Available")
            return
        await self._status("Preparing")
        started = await self.peer.call("StartTransaction", CP.start_transaction(
            1, "BENCH", self.energy_wh, time.time()))
        self.tx = CP.integer(started, "transactionId")
        await self._status("Charging")

    async def _status(self, status: str) -> None:
        from chargebrain.servers.ocpp import cp_messages as CP

        assert self.peer is not None
        await self.peer.call("StatusNotification", CP.status(1, status, time.time()))

    def draw(self) -> float:
        return draw_a(self.given_a) if self.charging else 0.0

    async def report(self, period: float) -> None:
        from chargebrain.servers.ocpp import cp_messages as CP

        assert self.peer is not None
        amps = self.draw()
        self.energy_wh += 3 * amps * VOLTAGE * period / 3600
        try:
            await self.peer.call("MeterValues", CP.meter_values(
                1, time.time(), CP.sampled([amps] * 3, 3 * amps * VOLTAGE, self.energy_wh),
                self.tx))
            self.counts.sent += 1
        except Exception:  # counted; the round fails on errors
            self.counts.errors += 1

    async def _on_call(self, action: str, payload: Payload) -> Payload:
        from chargebrain.servers.ocpp.adapter import NOT_SUPPORTED, OcppFault

        if action == "SetChargingProfile":
            self.counts.profiles += 1
            with contextlib.suppress(LookupError, TypeError, ValueError):
                profile: Any = payload["csChargingProfiles"]
                schedule = profile["chargingSchedule"]
                self.given_a = float(schedule["chargingSchedulePeriod"][0]["limit"])
            self.changed.set()
            if self.report_on_profile:
                self._triggered.append("MeterValues")
            return {"status": "Accepted"}
        if action in ("ChangeConfiguration", "ClearChargingProfile"):
            return {"status": "Accepted"}
        if action == "TriggerMessage":
            self._triggered.append(str(payload.get("requestedMessage")))
            return {"status": "Accepted"}
        raise OcppFault(NOT_SUPPORTED, action)

    def _answered(self, action: str) -> None:
        for what in self._triggered:
            if what == "StatusNotification":
                self._spawn(self._status(self.status_now))
            elif what == "MeterValues":
                self._spawn(self.report(0.0))
        self._triggered.clear()

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        # Its own messages in flight first: one still sending when the connection closes
        # would fail and count as a failed report of the round.
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.peer is not None:
            await self.peer.close("done")


class Pusher:
    """One HTTP-input EVSE pushing set_ajax_evse on a keep-alive connection."""

    def __init__(self, port: int, dev_id: str, counts: Counts) -> None:
        self.port = port
        self.dev_id = dev_id
        self.counts = counts
        self.energy_wh = 0.0
        self.given_a = MIN_A  # the charging current of the last answer
        self.changed = asyncio.Event()  # set when an answer gives another current
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        await self.report(0.0)

    def draw(self) -> float:
        return draw_a(self.given_a)

    async def report(self, period: float) -> None:
        assert self.reader is not None and self.writer is not None
        amps = self.draw()
        self.energy_wh += 3 * amps * VOLTAGE * period / 3600
        ma = round(amps * 1000)
        path = (f"/cnf?cmd=set_ajax_evse&dev_id={self.dev_id}&state=3"
                f"&current={ma},{ma},{ma}&power_w={3 * amps * VOLTAGE:.0f}"
                f"&total_energy={self.energy_wh:.0f}")
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head, body = await http_answer(self.reader)
        if head.startswith(b"HTTP/1.1 200"):
            self.counts.sent += 1
            given = int(json.loads(body).get("charging_current", 0)) / 1000
            if given != self.given_a:
                self.given_a = given
                self.changed.set()
        else:
            self.counts.errors += 1

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
