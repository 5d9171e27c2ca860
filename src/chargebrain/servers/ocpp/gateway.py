"""One charge point of the OCPP gateway: chargebrain's EVSEs as the connectors of a charge
point of an outside backend (OCPP 1.6J, the charge point's side).

The link connects to `<url>/<client id>` (HTTP Basic with the client id as the user when
a password is set), sends BootNotification until the backend accepts it, then every
connector's status, and from then on what its queue (outbox.py) holds, in order, one
call at a time; a Heartbeat at the backend's interval. A connection that fails or drops
is opened again after 2 s, doubling up to 5 min (±20 %), and the boot starts over; what
was queued meanwhile is sent afterwards, with its own timestamps. A call the backend
answers with a CALLERROR is given up, a transaction message only after three attempts;
one it does not answer closes the connection (the message is sent again after the next
boot).

The backend's calls are answered here (configuration, triggers, charging profiles) or
handed to the connectors (`Charger`: remote start and stop, the profiles' effect). Calls
the gateway does not take are answered with the CALLERROR NotSupported.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from chargebrain.clock import Clock
from chargebrain.servers.ocpp import cp_messages as CP
from chargebrain.servers.ocpp.adapter import (
    NOT_SUPPORTED,
    OcppFault,
    Payload,
    Peer,
    PeerClosed,
    Transport,
    connect,
)
from chargebrain.servers.ocpp.outbox import STATUS, TRANSACTION, Outbox, Outgoing, Skip
from chargebrain.servers.ocpp.profiles import (
    MAX_PERIODS,
    MAX_PROFILES,
    MAX_STACK_LEVEL,
    ProfileBook,
    ProfileRefused,
    parse,
)

log = logging.getLogger("chargebrain.ocpp.gateway")

FIRST_RETRY_S = 2.0
MAX_RETRY_S = 300.0
SAMPLE_S = 10  # MeterValueSampleInterval until the backend sets another
HEARTBEAT_S = 300  # until the backend's boot answer says otherwise
TX_ATTEMPTS = 3  # a transaction message the backend refuses is sent this often
TX_RETRY_S = 10.0
LOUD_EVERY_S = 60.0
Connect = Callable[[str, str | None, str], Awaitable[Transport]]


class Charger(Protocol):
    """The EVSEs behind the link's connectors (gateway_connectors.py)."""

    def model(self) -> str:
        """The charge point model shown to the backend."""

    def statuses(self, connector: int | None = None) -> list[Outgoing]:
        """Status notifications of every connector (or one) as it is now."""

    def meter_now(self, connector: int | None = None) -> list[Outgoing]:
        """Meter values of every connector (or one) as they are now."""

    def remote_start(self, connector: int | None, id_tag: str,
                     profile: dict[str, object] | None) -> bool:
        """The backend asks to start a transaction; whether it is accepted."""

    def remote_stop(self, transaction_id: int) -> bool:
        """The backend asks to stop a transaction; whether it is accepted."""

    def running_tx(self, connector: int) -> int | None:
        """The backend's id of the transaction running on a connector."""

    def profiles_changed(self) -> None:
        """The backend's charging profiles changed."""


class IdleCharger:
    """A charge point without connectors yet: it offers nothing."""

    def model(self) -> str:
        return ""

    def statuses(self, connector: int | None = None) -> list[Outgoing]:
        return []

    def meter_now(self, connector: int | None = None) -> list[Outgoing]:
        return []

    def remote_start(self, connector: int | None, id_tag: str,
                     profile: dict[str, object] | None) -> bool:
        return False

    def remote_stop(self, transaction_id: int) -> bool:
        return False

    def running_tx(self, connector: int) -> int | None:
        return None

    def profiles_changed(self) -> None:
        return None


@dataclass(frozen=True)
class Identity:
    """What the charge point says of itself at boot."""

    vendor: str = "chargebrain"
    serial: str = ""
    firmware: str = ""


@dataclass
class LinkConfig:
    """The configuration the backend may read and change."""

    sample_s: int = SAMPLE_S  # MeterValueSampleInterval; 0 = no sampled values
    heartbeat_s: int = HEARTBEAT_S
    measurands: tuple[str, ...] = CP.MEASURANDS
    connectors: int = 1


@dataclass
class _State:
    connected: bool = False
    accepted: bool = False
    failures: int = 0
    loud_at: float | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class GatewayLink:
    """One charge point towards one backend."""

    def __init__(self, url: str, client_id: str, password: str, clock: Clock,
                 identity: Identity, charger: Charger | None = None,
                 connector: Connect | None = None, rng: random.Random | None = None) -> None:
        self.url = url
        self.client_id = client_id
        self.password = password
        self.clock = clock
        self.identity = identity
        self.charger: Charger = charger if charger is not None else IdleCharger()
        self.outbox = Outbox()
        self.profiles = ProfileBook()
        self.config = LinkConfig()
        self.state = _State()
        self.peer: Peer | None = None
        self._connect = connector or _open
        self._rng = rng or random.Random()
        self._more = asyncio.Event()
        self._after: list[Callable[[], Awaitable[object]]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"OCPP gateway {self.client_id!r}"

    @property
    def address(self) -> str:
        return f"{self.url.rstrip('/')}/{quote(self.client_id, safe='')}"

    def sample_s(self) -> int:
        """The meter value interval the backend wants (0: none)."""
        return self.config.sample_s

    def put(self, item: Outgoing) -> None:
        """Queue a message for the backend (sent in order once it is there)."""
        self.outbox.put(item)
        self._more.set()

    # --- the connection's life ----------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self.run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        """Connect, serve, and connect again, until cancelled."""
        wait = FIRST_RETRY_S
        while True:
            try:
                transport = await self._connect(self.address, self.password or None,
                                                self.client_id)
            except (OSError, PeerClosed) as exc:
                self._trouble(f"cannot connect to {self.address}: {exc}")
                await self.clock.sleep(wait * self._rng.uniform(0.8, 1.2))
                wait = min(MAX_RETRY_S, wait * 2)
                continue
            wait = FIRST_RETRY_S
            await self._serve(transport)
            await self.clock.sleep(FIRST_RETRY_S * self._rng.uniform(0.8, 1.2))

    def _trouble(self, message: str) -> None:
        """Log a failure loudly at most once a minute (a backend away for hours must not
        fill the log), the rest at DEBUG."""
        st = self.state
        st.failures += 1
        now = self.clock.monotonic()
        loud = st.loud_at is None or now - st.loud_at >= LOUD_EVERY_S or now < st.loud_at
        if loud:
            st.loud_at = now
        log.log(logging.WARNING if loud else logging.DEBUG, "%s: %s", self.name, message)

    async def _serve(self, transport: Transport) -> None:
        peer = Peer(transport, self._on_call, name=self.name, answered=self._answered)
        self.peer = peer
        st = self.state
        st.connected = True
        log.info("%s: connected to %s", self.name, self.url)
        reader = asyncio.ensure_future(peer.run())
        worker = asyncio.ensure_future(self._work(peer))
        try:
            await asyncio.wait({reader, worker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            st.connected = st.accepted = False
            self.peer = None
            for task in (worker, *st.tasks):
                task.cancel()
            await asyncio.gather(worker, *st.tasks, return_exceptions=True)
            if not reader.done():
                await peer.close("the gateway closes the connection")
                await asyncio.gather(reader, return_exceptions=True)
            log.info("%s: disconnected", self.name)

    async def _work(self, peer: Peer) -> None:
        try:
            await self._boot(peer)
            # Every connector's status, unless a status of it is still queued (the last
            # of those is the status now).
            queued = {item.connector for item in self.outbox if item.kind == STATUS}
            for item in self.charger.statuses():
                if item.connector not in queued:
                    self.put(item)
            self._spawn(self._heartbeats(peer))
            await self._send_queued(peer)
        except PeerClosed:
            pass
        except TimeoutError:
            self._trouble("the backend does not answer; connecting again")

    async def _boot(self, peer: Peer) -> None:
        ident = self.identity
        while True:
            answer = await peer.call("BootNotification", CP.boot(
                ident.vendor, self.charger.model(), ident.serial, ident.firmware))
            status = CP.text(answer, "status")
            interval = CP.integer(answer, "interval") or 0
            if status == "Accepted":
                self.config.heartbeat_s = interval if interval > 0 else HEARTBEAT_S
                self.state.accepted = True
                log.info("%s: the backend accepted the boot", self.name)
                return
            log.info("%s: the backend answered the boot %s", self.name, status)
            await self.clock.sleep(float(interval if interval > 0 else 60))

    async def _heartbeats(self, peer: Peer) -> None:
        while True:
            await self.clock.sleep(float(self.config.heartbeat_s))
            await peer.call("Heartbeat", {})

    async def _send_queued(self, peer: Peer) -> None:
        while True:
            item = self.outbox.first()
            if item is None:
                self._more.clear()
                await self._more.wait()
                continue
            try:
                answer = await peer.call(item.action, item.payload())
            except Skip:
                self.outbox.done(item)
                continue
            except OcppFault as fault:
                item.attempts += 1
                if item.kind == TRANSACTION and item.attempts < TX_ATTEMPTS:
                    log.warning("%s: the backend refused %s (%s); sent again in %.0f s",
                                self.name, item.action, fault, TX_RETRY_S)
                    await self.clock.sleep(TX_RETRY_S)
                    continue
                log.warning("%s: the backend refused %s (%s); given up", self.name,
                            item.action, fault)
                self.outbox.done(item)
                continue
            except ValueError as exc:  # our payload breaks the schema: a bug, logged
                log.error("%s: %s", self.name, exc)
                self.outbox.done(item)
                continue
            self.outbox.done(item)
            if item.answered is not None:
                item.answered(answer)

    def _spawn(self, work: Awaitable[object]) -> None:
        async def guarded() -> None:
            try:
                await work
            except (PeerClosed, Skip, asyncio.CancelledError):
                pass
            except (OcppFault, TimeoutError) as exc:
                log.info("%s: %s", self.name, exc or "no answer")
            except Exception:
                log.exception("%s: a call failed", self.name)

        task = asyncio.ensure_future(guarded())
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    # --- the backend's calls --------------------------------------------------------------

    def _answered(self, action: str) -> None:
        after, self._after = self._after, []
        for work in after:
            self._spawn(work())

    async def _on_call(self, action: str, p: Payload) -> Payload:
        handler = _HANDLERS.get(action)
        if handler is None:
            raise OcppFault(NOT_SUPPORTED, f"the charge point does not take {action}")
        return handler(self, p)

    def _known_config(self) -> dict[str, tuple[str, bool]]:
        c = self.config
        return {
            "MeterValueSampleInterval": (str(c.sample_s), False),
            "HeartbeatInterval": (str(c.heartbeat_s), False),
            "MeterValuesSampledData": (",".join(c.measurands), False),
            "NumberOfConnectors": (str(c.connectors), True),
            "SupportedFeatureProfiles": ("Core,RemoteTrigger,SmartCharging", True),
            "ChargeProfileMaxStackLevel": (str(MAX_STACK_LEVEL), True),
            "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),
            "ChargingScheduleMaxPeriods": (str(MAX_PERIODS), True),
            "MaxChargingProfilesInstalled": (str(MAX_PROFILES), True),
            "AuthorizeRemoteTxRequests": ("false", True),
            "StopTransactionOnInvalidId": ("true", True),
        }

    def _on_get_configuration(self, p: Payload) -> Payload:
        return CP.configuration(self._known_config(), p.get("key"))

    def _on_change_configuration(self, p: Payload) -> Payload:
        key, value = CP.text(p, "key"), CP.text(p, "value").strip()
        if key not in self._known_config():
            return {"status": "NotSupported"}
        if key in ("MeterValueSampleInterval", "HeartbeatInterval"):
            if not value.isdigit() or (key == "HeartbeatInterval" and int(value) == 0):
                return {"status": "Rejected"}
            if key == "MeterValueSampleInterval":
                self.config.sample_s = int(value)
            else:
                self.config.heartbeat_s = int(value)
            return {"status": "Accepted"}
        if key == "MeterValuesSampledData":
            wanted = tuple(v.strip() for v in value.split(",") if v.strip())
            if not wanted or any(v not in CP.MEASURANDS for v in wanted):
                return {"status": "Rejected"}
            self.config.measurands = wanted
            return {"status": "Accepted"}
        return {"status": "Rejected"}  # read-only

    def _on_trigger(self, p: Payload) -> Payload:
        what = CP.text(p, "requestedMessage")
        connector = CP.integer(p, "connectorId")
        peer = self.peer
        if peer is None:
            return {"status": "Rejected"}
        if what == "BootNotification":
            ident = self.identity
            self._after.append(lambda: peer.call("BootNotification", CP.boot(
                ident.vendor, self.charger.model(), ident.serial, ident.firmware)))
        elif what == "Heartbeat":
            self._after.append(lambda: peer.call("Heartbeat", {}))
        elif what in ("StatusNotification", "MeterValues"):
            items = (self.charger.statuses(connector) if what == "StatusNotification"
                     else self.charger.meter_now(connector))
            if not items:
                return {"status": "Rejected"}
            self._after.extend(_sender(peer, item) for item in items)
        else:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    def _on_remote_start(self, p: Payload) -> Payload:
        profile = p.get("chargingProfile")
        ok = self.charger.remote_start(CP.integer(p, "connectorId"), CP.text(p, "idTag"),
                                       profile if isinstance(profile, dict) else None)
        return {"status": "Accepted" if ok else "Rejected"}

    def _on_remote_stop(self, p: Payload) -> Payload:
        tid = CP.integer(p, "transactionId")
        ok = tid is not None and self.charger.remote_stop(tid)
        return {"status": "Accepted" if ok else "Rejected"}

    def _on_set_profile(self, p: Payload) -> Payload:
        connector = CP.integer(p, "connectorId") or 0
        raw = p.get("csChargingProfiles")
        if not isinstance(raw, dict) or not 0 <= connector <= self.config.connectors:
            return {"status": "Rejected"}
        try:
            profile = parse(connector, raw)
            self.profiles.install(profile, self.charger.running_tx(connector)
                                  if connector else None)
        except ProfileRefused as exc:
            log.info("%s: charging profile refused: %s", self.name, exc)
            return {"status": "Rejected"}
        log.info("%s: charging profile %d (%s, stack level %d) on connector %d", self.name,
                 profile.id, profile.purpose, profile.stack_level, connector)
        self.charger.profiles_changed()
        return {"status": "Accepted"}

    def _on_clear_profile(self, p: Payload) -> Payload:
        purpose = CP.text(p, "chargingProfilePurpose") or None
        removed = self.profiles.clear(CP.integer(p, "id"), CP.integer(p, "connectorId"),
                                      purpose, CP.integer(p, "stackLevel"))
        if removed:
            log.info("%s: charging profiles cleared", self.name)
            self.charger.profiles_changed()
        return {"status": "Accepted" if removed else "Unknown"}

    def _on_rejected(self, p: Payload) -> Payload:
        return {"status": "Rejected"}

    def _on_data_transfer(self, p: Payload) -> Payload:
        return {"status": "UnknownVendorId"}


_HANDLERS: dict[str, Callable[[GatewayLink, Payload], Payload]] = {
    "GetConfiguration": GatewayLink._on_get_configuration,
    "ChangeConfiguration": GatewayLink._on_change_configuration,
    "TriggerMessage": GatewayLink._on_trigger,
    "RemoteStartTransaction": GatewayLink._on_remote_start,
    "RemoteStopTransaction": GatewayLink._on_remote_stop,
    "SetChargingProfile": GatewayLink._on_set_profile,
    "ClearChargingProfile": GatewayLink._on_clear_profile,
    "ChangeAvailability": GatewayLink._on_rejected,
    "Reset": GatewayLink._on_rejected,
    "ClearCache": GatewayLink._on_rejected,
    "DataTransfer": GatewayLink._on_data_transfer,
}


def _sender(peer: Peer, item: Outgoing) -> Callable[[], Awaitable[object]]:
    """Send `item` now (a triggered message: not queued)."""
    return lambda: peer.call(item.action, item.payload())


async def _open(url: str, password: str | None, user: str) -> Transport:
    return await connect(url, password, user=user)
