"""The OCPP 1.6J central system: which charge points may connect, their sessions, and what
the manager's sessions ask of them.

A charge point connects to `ws[s]://HOST:PORT/<path>/<ChargeBox ID>`: the last segment
of the path is its id, anything before it is ignored (`/ocpp/ID`,
`/steve/websocket/CentralSystemService/ID`). With `ocpp_srv_password` set, it must send
HTTP Basic credentials: its id as the user and that password (security profile 1; with
TLS, profile 2); wrong ones are refused with 401, and an address that sent wrong ones
waits before it is heard again (1 s, doubling up to a minute: 429). An id that no
`evse_ocpp` device has is refused with 404, unless `ocpp_srv_accept_unknown` is set:
then it is served and listed (`unknown()`, the API's `get_ocpp_unknown`) so that the
admin can add it. A second connection of the same charge point replaces the first.

The central system is also the OCPP charge points' `SessionListener`: after every cycle
it asks each session for the remote starts and stops the manager's sessions need.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote

from chargebrain.clock import Clock
from chargebrain.devices.ocpp import OcppEvse, OcppHub
from chargebrain.manager.ports import CycleListener
from chargebrain.manager.state import OVERRIDE_DISABLE_CHARGING, DeviceRuntime
from chargebrain.servers.ocpp.adapter import (
    Handshake,
    Limits,
    Listener,
    Refusal,
    Transport,
    serve,
)
from chargebrain.servers.ocpp.messages import Boot
from chargebrain.servers.ocpp.ports import BootBook, Transactions
from chargebrain.servers.ocpp.session import ChargePointSession
from chargebrain.store.db import Store

log = logging.getLogger("chargebrain.ocpp")

BOOTS_KEY = "ocpp_boots"
MAX_UNKNOWN = 100  # charge points listed as unknown at most (the oldest go)
MAX_WAIT_S = 60.0  # the longest an address that sent wrong credentials waits
MAX_ID = 48  # characters of a ChargeBox ID (OCPP 1.6 chargeBoxIdentity)
LOUD_EVERY_S = 60.0  # refusals are logged at INFO (or WARNING) at most this often


@dataclass(frozen=True)
class OcppSettings:
    """The site parameters the central system honours at every handshake."""

    password: str = ""
    accept_unknown: bool = False


@dataclass
class Unknown:
    """A charge point that is not configured, as the admin's list shows it."""

    id: str
    remote: str
    connected: bool
    first_seen: float
    last_seen: float
    vendor: str = ""
    model: str = ""
    serial: str = ""
    firmware: str = ""
    connectors: dict[int, str] | None = None


class StoredBoots:
    """What each charge point said when it last booted, in the settings table."""

    def __init__(self, store: Store) -> None:
        self.store = store
        stored = store.get_setting(BOOTS_KEY, {})
        self._boots: dict[str, Boot] = {}
        if isinstance(stored, dict):
            for cp, doc in stored.items():
                if isinstance(doc, dict):
                    self._boots[str(cp)] = Boot(*(str(doc.get(k, "")) for k in (
                        "vendor", "model", "serial", "firmware")))

    def get(self, charge_box_id: str) -> Boot | None:
        return self._boots.get(charge_box_id)

    def put(self, charge_box_id: str, boot: Boot) -> None:
        if self._boots.get(charge_box_id) == boot:
            return
        self._boots[charge_box_id] = boot
        self.store.set_setting(BOOTS_KEY, {cp: asdict(b) for cp, b in self._boots.items()})


class MemoryBoots:
    """Boots kept in memory only (for a central system without a store)."""

    def __init__(self) -> None:
        self._boots: dict[str, Boot] = {}

    def get(self, charge_box_id: str) -> Boot | None:
        return self._boots.get(charge_box_id)

    def put(self, charge_box_id: str, boot: Boot) -> None:
        self._boots[charge_box_id] = boot


class CentralSystem(CycleListener):
    """The OCPP server, its charge points' sessions, and the hub's listener."""

    def __init__(self, hub: OcppHub, clock: Clock, transactions: Transactions,
                 boots: BootBook, settings: Callable[[], OcppSettings],
                 devices: Mapping[str, DeviceRuntime]) -> None:
        self._hub = hub
        self._clock = clock
        self._transactions = transactions
        self._boots = boots
        self.settings = settings
        self.devices = devices  # the manager's devices (the same mapping, kept current)
        self.sessions: dict[str, ChargePointSession] = {}
        self._unknown: dict[str, Unknown] = {}
        self._wrong: dict[str, tuple[int, float]] = {}  # address → (failures, wait until)
        self._loud_at: dict[str, float] = {}  # kind of refusal → when last logged loudly
        self._listener: Listener | None = None
        self._closing: set[asyncio.Future[None]] = set()  # replaced connections closing
        hub.listener = self

    # --- what sessions see (servers.ocpp.ports.Central) ---------------------------------

    @property
    def hub(self) -> OcppHub:
        return self._hub

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def transactions(self) -> Transactions:
        return self._transactions

    @property
    def boots(self) -> BootBook:
        return self._boots

    # --- listening ----------------------------------------------------------------------

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None,
                    limits: Limits | None = None) -> int:
        """Listen; the port listened on. Raises OSError if it cannot."""
        self._listener = await serve(host, port, self.gate, self.welcome, tls,
                                     limits or Limits())
        return self._listener.port

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    def gate(self, handshake: Handshake) -> str:
        """The charge point an opening handshake is from; Refusal if it may not connect."""
        segments = [s for s in handshake.path.partition("?")[0].split("/") if s]
        cp = unquote(segments[-1]) if segments else ""
        if not cp or len(cp) > MAX_ID or any(ord(c) < 33 for c in cp):
            raise Refusal(404, "the path names no charge point: ws://HOST:PORT/<ChargeBox ID>")
        settings = self.settings()
        if settings.password:
            self._check_credentials(handshake, cp, settings.password)
        if not self._hub.known(cp) and not settings.accept_unknown:
            self._log_refusal("unknown", logging.INFO, "OCPP: unknown charge point %r from "
                              "%s refused", cp, handshake.remote)
            raise Refusal(404, f"unknown charge point {cp!r}")
        return cp

    def _check_credentials(self, handshake: Handshake, cp: str, password: str) -> None:
        now = self._clock.monotonic()
        remote = handshake.remote
        failures, until = self._wrong.get(remote, (0, 0.0))
        if now < until:
            raise Refusal(429, f"too many wrong credentials; try again in {until - now:.0f} s")
        given = handshake.credentials
        if given is None:
            raise Refusal(401, "HTTP Basic credentials are required", challenge=True)
        user, secret = given
        right = hmac.compare_digest(user.encode(), cp.encode()) & hmac.compare_digest(
            secret.encode(), password.encode())
        if right:
            self._wrong.pop(remote, None)
            return
        if len(self._wrong) >= 1024:
            self._wrong.pop(next(iter(self._wrong)))
        self._wrong[remote] = (failures + 1, now + min(MAX_WAIT_S, 2.0 ** failures))
        self._log_refusal("credentials", logging.WARNING, "OCPP: wrong credentials for %r "
                          "from %s", cp, remote)
        raise Refusal(401, "wrong credentials", challenge=True)

    def _log_refusal(self, kind: str, level: int, message: str, *args: object) -> None:
        """Log a refused handshake: at `level` at most once a minute per kind (someone
        trying in a loop must not fill the log), else at DEBUG."""
        now = self._clock.monotonic()
        last = self._loud_at.get(kind)
        if last is None or now - last >= LOUD_EVERY_S or now < last:
            self._loud_at[kind] = now
            log.log(level, message, *args)
        else:
            log.debug(message, *args)

    async def welcome(self, cp: str, transport: Transport) -> None:
        """Serve one connection of charge point `cp` until it closes."""
        session = ChargePointSession(cp, transport, self)
        old = self.sessions.get(cp)
        self.sessions[cp] = session
        if old is not None:
            log.info("OCPP: charge point %r connected again; the older connection is closed",
                     cp)
            old.current = False  # (its end no longer disconnects the connectors)
            closing = asyncio.ensure_future(old.close("replaced by a newer connection"))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        try:
            await session.run()
        finally:
            if self.sessions.get(cp) is session:
                del self.sessions[cp]

    # --- the hub's listener -------------------------------------------------------------

    def connector_added(self, evse: OcppEvse) -> None:
        session = self.sessions.get(evse.charge_box_id)
        if session is not None:
            self._unknown.pop(evse.charge_box_id, None)
            session.connector_added(evse)

    def command_changed(self, evse: OcppEvse) -> None:
        session = self.sessions.get(evse.charge_box_id)
        if session is not None:
            session.command_changed()

    def fresh_reading_wanted(self, evse: OcppEvse) -> None:
        session = self.sessions.get(evse.charge_box_id)
        if session is not None:
            session.fresh_reading_wanted(evse)

    # --- the manager's SessionListener --------------------------------------------------

    def on_cycle(self, now: float) -> None:
        """Remote starts and stops for what the sessions of the manager ask."""
        for session in list(self.sessions.values()):
            wanted: dict[str, tuple[bool, bool, str, bool]] = {}
            for evse in session.connectors.values():
                rt = self.devices.get(evse.dev_id)
                ev = rt.evse if rt is not None and rt.driver is evse else None
                if ev is None:
                    continue
                card = ev.rfid or (rt.config.fixed_rfid if rt is not None else "")
                wanted[evse.dev_id] = (ev.plugged, bool(ev.overrides & OVERRIDE_DISABLE_CHARGING),
                                       card, ev.authorised)
            session.review(wanted)

    # --- charge points that are not configured ------------------------------------------

    def seen(self, charge_box_id: str, remote: str, connected: bool,
             boot: Boot | None = None, connector: int | None = None,
             status: str | None = None) -> None:
        now = self._clock.now()
        entry = self._unknown.get(charge_box_id)
        if entry is None:
            if len(self._unknown) >= MAX_UNKNOWN:
                self._unknown.pop(min(self._unknown.values(), key=lambda u: u.last_seen).id)
            entry = self._unknown[charge_box_id] = Unknown(charge_box_id, remote, connected,
                                                           now, now, connectors={})
        entry.remote, entry.connected, entry.last_seen = remote, connected, now
        if boot is not None:
            entry.vendor, entry.model = boot.vendor, boot.model
            entry.serial, entry.firmware = boot.serial, boot.firmware
        if connector is not None and status is not None and entry.connectors is not None:
            entry.connectors[connector] = status

    def unknown(self) -> list[dict[str, Any]]:
        """The charge points that connected without being configured, newest first."""
        out = []
        for entry in sorted(self._unknown.values(), key=lambda u: -u.last_seen):
            if self._hub.known(entry.id):
                continue
            doc = asdict(entry)
            doc["connectors"] = {str(k): v for k, v in sorted((entry.connectors or {}).items())}
            out.append(doc)
        return out

    async def close_all(self) -> None:
        """Close every charge point's connection (at shutdown)."""
        await asyncio.gather(*(s.close("the central system stops")
                               for s in list(self.sessions.values())), return_exceptions=True)
