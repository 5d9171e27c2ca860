"""A simulated OCPP 1.6J wallbox with one connector, talking to chargebrain's central
system over a real socket (the adapter's `connect`), as a real one does.

It boots, reports its connector's status a little late (`status_delay_s` after a change)
and meter values every sample interval (the central system's MeterValueSampleInterval,
or `sample_s` until it sets one): the currents, power and energy of the car behind it,
as the plant says (`sense`). It starts a transaction when a car is plugged in (free
charging: its own idTag) or when the central system starts one remotely, stops it at
unplug or remotely. It follows the charging profiles it is sent: what it offers the car
(`offer_ma`) moves to a new limit over `ramp_s`, and below 6 A it offers nothing. It
keeps transaction messages while it is not connected and sends them when it is back; now
and then (`drop_every_s`, on average) it drops its connection for `drop_for_s`.

Time is the injected clock's. `step()` does what is due at the clock's time and waits
for the answers (the simulator calls it once per step); `run()` does it every `tick_s`
on its own (the demo, the benchmarks). The wallbox never decides what the car draws.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chargebrain.clock import Clock
from chargebrain.servers.ocpp import cp_messages as CP
from chargebrain.servers.ocpp.adapter import NOT_SUPPORTED, OcppFault, Payload, Peer, PeerClosed
from chargebrain.servers.ocpp.adapter import connect as ocpp_connect
from chargebrain.servers.ocpp.profiles import ProfileBook, ProfileRefused, parse

log = logging.getLogger("chargebrain.sim.ocpp")

IEC_MIN_MA = 6000
VOLTAGE = 230.0
RETRY_S = 5.0  # a failed connection is tried again this late


@dataclass(frozen=True)
class Behaviour:
    """How the simulated wallbox behaves."""

    max_ma: int = 16_000  # what it offers without a profile (its own maximum)
    sample_s: float = 10.0  # meter values, until the central system sets its interval
    status_delay_s: float = 1.0  # a change of status is reported this late
    ramp_s: float = 1.5  # the offer follows a new limit over this time
    drop_every_s: float | None = None  # mean time between dropped connections; None: never
    drop_for_s: float = 20.0  # how long a dropped connection stays down
    id_tag: str = "SIM-FREE"  # the idTag of the transactions it starts itself
    tick_s: float = 1.0  # `run()` steps this often


class SimWallbox:
    """One simulated OCPP wallbox (connector 1)."""

    def __init__(self, url: str, cp_id: str, clock: Clock, behaviour: Behaviour = Behaviour(),
                 password: str | None = None, seed: int = 0, model: str = "Sim-OCPP",
                 tls: ssl.SSLContext | None = None) -> None:
        self.url = f"{url.rstrip('/')}/{cp_id}"
        self.cp_id = cp_id
        self.clock = clock
        self.b = behaviour
        self.password = password
        self.tls = tls
        self.model = model
        self.rng = random.Random(seed)
        self.peer: Peer | None = None
        self.booted = False
        self.tasks: set[asyncio.Task[None]] = set()  # calls on their way
        self._reader: asyncio.Task[None] | None = None
        self._after: list[Callable[[], Awaitable[object]]] | None = None
        self.profiles = ProfileBook()
        self.sample_s = behaviour.sample_s
        self.sent_status = ""
        self._status_since: tuple[str, float] = ("", 0.0)
        self._next_sample: float | None = None
        self._kept: list[tuple[str, Callable[[], Payload], bool]] = []  # offline tx messages
        self._down_until = 0.0  # monotonic: a dropped connection stays down until then
        self._last_step: float | None = None
        # the plant: the car behind the connector
        self.plugged = False
        self.drawing = False
        self.currents_ma = (0, 0, 0)
        self.energy_wh = 0.0
        # the connector
        self.tx_id: int | None = None
        self.tx_started: float | None = None
        self._tx_pending = False  # a start is on its way (or kept)
        self.remote_stopped = False
        self._remote_tag = ""
        self._offer = (0.0, 0.0, 0.0)  # (from mA, to mA, since monotonic)
        self.connects = 0
        self.offline = False  # set from outside: the box is cut off (no connection)

    # --- the plant's side -------------------------------------------------------------

    def sense(self, plugged: bool, drawing: bool, currents_ma: tuple[int, int, int],
              energy_wh: float) -> None:
        """What the car behind the connector does now, and the energy meter."""
        self.plugged, self.drawing = plugged, drawing
        self.currents_ma, self.energy_wh = currents_ma, energy_wh

    def offer_ma(self) -> int:
        """What the pilot offers the car now (mA; 0: no charging)."""
        start, target, since = self._offer
        ramp = self.b.ramp_s
        done = 1.0 if ramp <= 0 else min(1.0, (self.clock.monotonic() - since) / ramp)
        value = start + (target - start) * done
        return int(value) if value >= IEC_MIN_MA else 0

    def _target_ma(self) -> int:
        if not self.plugged or self.remote_stopped or (self.tx_id is None
                                                       and not self._tx_pending):
            return 0
        limit = self.profiles.limit_ma(1, self.clock.now(), self.tx_started)
        target = self.b.max_ma if limit is None else min(self.b.max_ma, limit)
        return target if target >= IEC_MIN_MA else 0

    def _follow(self) -> None:
        target = float(self._target_ma())
        if target != self._offer[1]:
            self._offer = (float(self.offer_ma()), target, self.clock.monotonic())

    def status(self) -> str:
        if not self.plugged:
            return "Available"
        if self.tx_id is None and not self._tx_pending:
            return "Finishing" if self.remote_stopped else "Preparing"
        if self.offer_ma() < IEC_MIN_MA:
            return "SuspendedEVSE"
        return "Charging" if self.drawing else "SuspendedEV"

    # --- the box's life ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.peer is not None and not self.peer.closed

    async def run(self) -> None:
        """Step every `tick_s` until cancelled."""
        try:
            while True:
                await self.step()
                await self.clock.sleep(self.b.tick_s)
        finally:
            await self.close()

    async def close(self) -> None:
        await self._disconnect("the wallbox stops")
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def step(self) -> None:
        """Do what is due now: connect, drop the connection now and then, report a changed
        status, sample the meter, start and stop transactions; wait for the answers."""
        mono = self.clock.monotonic()
        dt = 0.0 if self._last_step is None else max(0.0, mono - self._last_step)
        self._last_step = mono
        if self.offline:
            if self.peer is not None:
                await self._disconnect()
            return
        if self.connected and self.b.drop_every_s and self.rng.random() < (
                dt / self.b.drop_every_s):
            log.info("%s: drops its connection for %.0f s", self.cp_id, self.b.drop_for_s)
            self._down_until = mono + self.b.drop_for_s
            await self._disconnect()
        if not self.connected and mono >= self._down_until:
            await self._connect()
        await self._transactions()
        self._follow()
        if self.connected and self.booted:
            await self._report(mono)

    async def _connect(self) -> None:
        try:
            transport = await ocpp_connect(self.url, self.password, user=self.cp_id,
                                           tls=self.tls)
        except (OSError, PeerClosed) as exc:
            log.debug("%s: cannot connect: %s", self.cp_id, exc)
            self._down_until = self.clock.monotonic() + RETRY_S
            return
        self.connects += 1
        peer = self.peer = Peer(transport, self._on_call, name=f"sim {self.cp_id}",
                                answered=self._answered)
        self._reader = asyncio.ensure_future(peer.run())
        self.booted = False
        try:
            answer = await peer.call("BootNotification", CP.boot(
                "chargebrain-sim", self.model, f"SIM-{self.cp_id}", "1.0"))
        except (OcppFault, TimeoutError, PeerClosed) as exc:
            log.debug("%s: boot failed: %s", self.cp_id, exc)
            await self._disconnect()
            return
        self.booted = CP.text(answer, "status") == "Accepted"
        self.sent_status = ""
        for action, payload, is_start in self._kept:
            await self._send_kept(action, payload, is_start)
        self._kept.clear()

    async def _disconnect(self, reason: str = "dropped") -> None:
        peer, self.peer = self.peer, None
        reader, self._reader = self._reader, None
        self.booted = False
        if peer is not None:
            await peer.close(reason)
        if reader is not None:
            await asyncio.gather(reader, return_exceptions=True)

    async def _report(self, mono: float) -> None:
        now_status = self.status()
        if now_status != self._status_since[0]:
            self._status_since = (now_status, mono)
        if now_status != self.sent_status and mono - self._status_since[1] >= (
                self.b.status_delay_s):
            await self._send_status(now_status)
        if self.tx_id is not None and self.sample_s > 0:
            if self._next_sample is None:
                self._next_sample = mono + self.sample_s
            elif mono >= self._next_sample:
                self._next_sample = max(self._next_sample + self.sample_s, mono)
                await self._call("MeterValues", self._meters())

    async def _send_status(self, status: str) -> None:
        self.sent_status = status
        await self._call("StatusNotification", CP.status(1, status, self.clock.now()))

    def _meters(self) -> Payload:
        amps = [c / 1000 for c in self.currents_ma]
        power = sum(amps) * VOLTAGE
        return CP.meter_values(1, self.clock.now(), CP.sampled(amps, power, self.energy_wh),
                               self.tx_id)

    async def _call(self, action: str, payload: Payload) -> Payload | None:
        peer = self.peer
        if peer is None:
            return None
        try:
            return await peer.call(action, payload)
        except (OcppFault, TimeoutError, PeerClosed) as exc:
            log.debug("%s: %s failed: %s", self.cp_id, action, exc)
            return None

    # --- transactions -----------------------------------------------------------------

    async def _transactions(self) -> None:
        if not self.plugged:
            self.remote_stopped = False
            if self.tx_id is not None:
                await self._stop("EVDisconnected")
            return
        if self.tx_id is None and not self._tx_pending and not self.remote_stopped:
            tag, self._remote_tag = self._remote_tag or self.b.id_tag, ""
            self._tx_pending = True
            self.tx_started = self.clock.now()
            payload = CP.start_transaction(1, tag, self.energy_wh, self.clock.now())
            await self._send_kept("StartTransaction", lambda: payload, True)

    async def _stop(self, reason: str) -> None:
        tid, self.tx_id = self.tx_id, None
        self.tx_started = None
        self._next_sample = None
        self.profiles.transaction_ended(1)
        if tid is None:
            return
        payload = CP.stop_transaction(tid, self.energy_wh, self.clock.now(), reason)
        await self._send_kept("StopTransaction", lambda: payload, False)

    async def _send_kept(self, action: str, payload: Callable[[], Payload],
                         is_start: bool) -> None:
        """Send a transaction message now, or keep it until the box is connected."""
        if not (self.connected and self.booted):
            self._kept.append((action, payload, is_start))
            return
        answer = await self._call(action, payload())
        if is_start:
            self._tx_pending = False
            tid = CP.integer(answer, "transactionId") if answer is not None else None
            self.tx_id = tid if tid else None

    # --- the central system's calls ---------------------------------------------------

    def _spawn(self, work: Awaitable[object]) -> None:
        async def guarded() -> None:
            with contextlib.suppress(PeerClosed, OcppFault, TimeoutError,
                                     asyncio.CancelledError):
                await work

        task = asyncio.ensure_future(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _answered(self, action: str) -> None:
        after, self._after = self._after or [], None
        for work in after:
            self._spawn(work())

    def _later(self, work: Callable[[], Awaitable[object]]) -> None:
        if self._after is None:
            self._after = []
        self._after.append(work)

    async def _on_call(self, action: str, p: Payload) -> Payload:
        if action == "ChangeConfiguration":
            key, value = CP.text(p, "key"), CP.text(p, "value")
            if key == "MeterValueSampleInterval" and value.isdigit():
                self.sample_s = float(value)
                self._next_sample = None
            return {"status": "Accepted"}
        if action == "TriggerMessage":
            what = CP.text(p, "requestedMessage")
            if what == "StatusNotification":
                self._later(lambda: self._send_status(self.status()))
            elif what == "MeterValues":
                self._later(lambda: self._call("MeterValues", self._meters()))
            elif what == "BootNotification":
                self._later(lambda: self._call("BootNotification", CP.boot(
                    "chargebrain-sim", self.model, f"SIM-{self.cp_id}", "1.0")))
            else:
                return {"status": "NotImplemented"}
            return {"status": "Accepted"}
        if action == "SetChargingProfile":
            raw = p.get("csChargingProfiles")
            try:
                if not isinstance(raw, dict):
                    raise ProfileRefused("no profile")
                self.profiles.install(parse(CP.integer(p, "connectorId") or 0, raw),
                                      self.tx_id)
            except ProfileRefused:
                return {"status": "Rejected"}
            self._follow()
            return {"status": "Accepted"}
        if action == "ClearChargingProfile":
            removed = self.profiles.clear(CP.integer(p, "id"), CP.integer(p, "connectorId"))
            self._follow()
            return {"status": "Accepted" if removed else "Unknown"}
        if action == "RemoteStartTransaction":
            if self.tx_id is not None or self._tx_pending:
                return {"status": "Rejected"}
            self._remote_tag, self.remote_stopped = CP.text(p, "idTag"), False
            return {"status": "Accepted"}
        if action == "RemoteStopTransaction":
            if self.tx_id is None or CP.integer(p, "transactionId") != self.tx_id:
                return {"status": "Rejected"}
            self.remote_stopped = True
            self._later(lambda: self._stop("Remote"))
            return {"status": "Accepted"}
        if action in ("ChangeAvailability", "ClearCache"):
            return {"status": "Accepted"}
        if action == "DataTransfer":
            return {"status": "UnknownVendorId"}
        raise OcppFault(NOT_SUPPORTED, f"the simulated wallbox does not take {action}")
