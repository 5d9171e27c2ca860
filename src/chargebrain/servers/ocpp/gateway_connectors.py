"""The EVSEs behind one charge point of the OCPP gateway, as its backend sees them.

After every control cycle (`observe`) each connector is compared with its EVSE and what
changed is queued for the backend:

* **Status** from the EVSE's state: no car `Available`; a car and no transaction
  `Preparing` (`Finishing` after a transaction that ended while it stayed); a
  transaction and the car drawing `Charging`, the car offered current but not drawing
  `SuspendedEV`, offered nothing `SuspendedEVSE`; an EVSE error `Faulted`, an EVSE that
  does not answer `Faulted` (`OtherError`, "no communication"), a disabled one
  `Unavailable`.
* **Transactions**: one begins when the session may charge (plugged in, and authorised
  where the EVSE needs it) with the session's card as its idTag (else the EVSE's
  `fixed_rfid`, else `chargebrain`), the energy register as its meter start; it ends at
  unplug (`EVDisconnected`), when the backend stops it (`Remote`) or when the backend
  does not accept its idTag (`DeAuthorized`, charging disabled as with flag C).
* **Meter values** while a transaction runs, every `MeterValueSampleInterval`: the
  currents per phase, the power and the energy register, as the EVSE last read them.
* **The backend's limit**: the profiles' limit for the connector is handed to the
  manager (`EvseRuntime.backend_ma`), which gives the EVSE the lower of it and its own.

The backend's RemoteStartTransaction clears flag C of the session (`override_device`'s
`c`) and its idTag starts the next transaction (within a minute, also when the car comes
after it); RemoteStopTransaction sets flag C (charging disabled until unplug) and ends
the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from chargebrain.clock import Clock
from chargebrain.core.model import EvseState
from chargebrain.manager.state import OVERRIDE_DISABLE_CHARGING, DeviceRuntime
from chargebrain.servers.ocpp import cp_messages as CP
from chargebrain.servers.ocpp.adapter import OcppFault, Payload
from chargebrain.servers.ocpp.outbox import METER, STATUS, TRANSACTION, Outgoing, Skip
from chargebrain.servers.ocpp.profiles import ProfileBook, ProfileRefused, parse

log = logging.getLogger("chargebrain.ocpp.gateway")

DEFAULT_TAG = "chargebrain"  # the idTag of a session without a card
REMOTE_WAIT_S = 60.0  # a remote start waits this long for the car


class Overrides(Protocol):
    """Flag C of a session (manager.sessions.SessionManager)."""

    def change_overrides(self, rt: DeviceRuntime, set_bits: int = 0,
                         clear_bits: int = 0) -> None: ...


@dataclass
class _Tx:
    connector: int
    id_tag: str
    meter_start_wh: float
    started: float  # wall time
    tid: int | None = None  # the backend's id, once it answered
    stopped: bool = False


@dataclass
class _Watch:
    """One connector: what the backend was last told of it."""

    connector: int
    dev_id: str
    status: tuple[str, str] | None = None  # (status, error code) last queued
    tx: _Tx | None = None
    finished: bool = False  # a transaction ended while the car stayed
    remote_tag: str = ""
    remote_until: float = 0.0  # monotonic
    remote_profile: dict[str, object] | None = None
    next_sample: float | None = None  # monotonic


class GatewayConnectors:
    """The connectors of one gateway charge point (the link's `Charger`)."""

    def __init__(self, dev_ids: list[str], devices: Mapping[str, DeviceRuntime],
                 overrides: Overrides, wake: Callable[[], None], clock: Clock,
                 put: Callable[[Outgoing], None], profiles: ProfileBook,
                 sample_s: Callable[[], int]) -> None:
        self.devices = devices
        self.overrides = overrides
        self.wake = wake
        self.clock = clock
        self.put = put
        self.profiles = profiles
        self.sample_s = sample_s
        self.watches = [_Watch(n, dev) for n, dev in enumerate(dev_ids, start=1)]

    def _rt(self, w: _Watch) -> DeviceRuntime | None:
        rt = self.devices.get(w.dev_id)
        return rt if rt is not None and rt.evse is not None else None

    # --- after every cycle ------------------------------------------------------------

    def observe(self) -> None:
        """Queue what changed since the last look, and hand the manager the backend's
        limits."""
        now, mono = self.clock.now(), self.clock.monotonic()
        for w in self.watches:
            rt = self._rt(w)
            if rt is None:
                continue
            ev = rt.evse
            assert ev is not None
            tx = w.tx
            if tx is not None and not ev.plugged:
                self._stop(w, rt, now, "EVDisconnected")
                tx = None
            if not ev.plugged:
                w.finished = False
                if w.remote_until and mono > w.remote_until:
                    w.remote_tag, w.remote_until, w.remote_profile = "", 0.0, None
            elif tx is None and not w.finished and (ev.authorised or not ev.needs_auth):
                self._start(w, rt, now, mono)
            self._status(w, rt, now)
            if w.tx is not None:
                self._sample(w, rt, now, mono)
        self._limits(now)

    def _limits(self, now: float) -> None:
        """Hand the manager each connector's limit from the backend's profiles."""
        changed = False
        for w in self.watches:
            rt = self._rt(w)
            if rt is None or rt.evse is None:
                continue
            limit = self.profiles.limit_ma(w.connector, now,
                                           w.tx.started if w.tx is not None else None)
            if limit != rt.evse.backend_ma:
                rt.evse.backend_ma = limit
                changed = True
        if changed:
            self.wake()

    def release(self) -> None:
        """The gateway goes away: the backend's limits no longer count."""
        for w in self.watches:
            rt = self._rt(w)
            if rt is not None and rt.evse is not None and rt.evse.backend_ma is not None:
                rt.evse.backend_ma = None
                self.wake()

    def status_of(self, w: _Watch, rt: DeviceRuntime) -> tuple[str, str, str]:
        """(status, error code, info) of a connector now."""
        ev = rt.evse
        assert ev is not None
        if not rt.config.device_enabled:
            return "Unavailable", "NoError", ""
        if rt.status.com_err:
            return "Faulted", "OtherError", "no communication"
        r = ev.reading
        if r is None:
            return "Unavailable", "NoError", ""
        if r.state is EvseState.ERROR:
            return "Faulted", "OtherError", rt.status.last_error
        if not r.state.plugged:
            return "Available", "NoError", ""
        if w.tx is None:
            return ("Finishing" if w.finished else "Preparing"), "NoError", ""
        if r.state.charging:
            return "Charging", "NoError", ""
        d = ev.decision
        offered = d is not None and d.charging_enabled and d.current_ma > 0
        return ("SuspendedEV" if offered else "SuspendedEVSE"), "NoError", ""

    def _status(self, w: _Watch, rt: DeviceRuntime, now: float) -> None:
        status, code, info = self.status_of(w, rt)
        if w.status != (status, code):
            w.status = (status, code)
            self.put(_status_item(CP.status(w.connector, status, now, code, info), now))

    # --- transactions -----------------------------------------------------------------

    def _start(self, w: _Watch, rt: DeviceRuntime, now: float, mono: float) -> None:
        ev = rt.evse
        assert ev is not None
        if w.status is None or w.status[0] != "Preparing":
            w.status = ("Preparing", "NoError")
            self.put(_status_item(CP.status(w.connector, "Preparing", now), now))
        remote = w.remote_tag if w.remote_until and mono <= w.remote_until else ""
        tag = remote or ev.rfid or rt.config.fixed_rfid or DEFAULT_TAG
        tx = w.tx = _Tx(w.connector, tag, ev.total_energy_wh, now)
        if w.remote_profile is not None:
            try:
                self.profiles.install(parse(w.connector, w.remote_profile), 0)
            except (ProfileRefused, OcppFault) as exc:
                log.info("%s: the remote start's charging profile is refused: %s",
                         w.dev_id, exc)
        w.remote_tag, w.remote_until, w.remote_profile = "", 0.0, None
        w.next_sample = None
        log.info("%s: OCPP gateway transaction begins (idTag %s)", w.dev_id, tag)
        payload = CP.start_transaction(w.connector, tag, tx.meter_start_wh, now)

        def answered(answer: Payload) -> None:
            tid = CP.integer(answer, "transactionId")
            tx.tid = tid
            info = answer.get("idTagInfo")
            status = CP.text(info, "status") if isinstance(info, dict) else ""
            if status not in ("Accepted", "ConcurrentTx") and not tx.stopped:
                log.warning("%s: the backend does not accept idTag %s (%s): charging is "
                            "disabled", w.dev_id, tx.id_tag, status)
                target = self._rt(w)
                if target is not None:
                    self.overrides.change_overrides(target, set_bits=OVERRIDE_DISABLE_CHARGING)
                    self._stop(w, target, self.clock.now(), "DeAuthorized")
                    w.finished = True

        self.put(Outgoing("StartTransaction", TRANSACTION, w.connector, now, lambda: payload,
                          answered))

    def _stop(self, w: _Watch, rt: DeviceRuntime, now: float, reason: str) -> None:
        tx = w.tx
        if tx is None or tx.stopped:
            return
        ev = rt.evse
        assert ev is not None
        tx.stopped = True
        w.tx = None
        self.profiles.transaction_ended(w.connector)
        meter = max(ev.total_energy_wh, tx.meter_start_wh)
        log.info("%s: OCPP gateway transaction ends (%s)", w.dev_id, reason)

        def payload() -> Payload:
            if tx.tid is None:
                raise Skip  # the backend never took its start
            return CP.stop_transaction(tx.tid, meter, now, reason)

        self.put(Outgoing("StopTransaction", TRANSACTION, w.connector, now, payload))

    # --- meter values -----------------------------------------------------------------

    def _sample(self, w: _Watch, rt: DeviceRuntime, now: float, mono: float) -> None:
        every = self.sample_s()
        if every <= 0:
            w.next_sample = None
            return
        if w.next_sample is None:
            w.next_sample = mono + every
            return
        if mono < w.next_sample:
            return
        w.next_sample = max(w.next_sample + every, mono + every / 2)
        self.put(self._meters(w, rt, now))

    def _meters(self, w: _Watch, rt: DeviceRuntime, now: float) -> Outgoing:
        ev = rt.evse
        assert ev is not None
        r = ev.reading
        c = r.currents if r is not None and not rt.status.com_err else None
        values = CP.sampled((c.l1 / 1000, c.l2 / 1000, c.l3 / 1000) if c else (0.0, 0.0, 0.0),
                            r.power_w if r is not None and c else 0.0, ev.total_energy_wh)
        tx = w.tx

        def payload() -> Payload:
            return CP.meter_values(w.connector, now, values,
                                   tx.tid if tx is not None else None)

        return Outgoing("MeterValues", METER, w.connector, now, payload)

    # --- the link's Charger -----------------------------------------------------------

    def model(self) -> str:
        for w in self.watches:
            rt = self._rt(w)
            if rt is not None:
                return rt.model or rt.dtype.name
        return ""

    def _chosen(self, connector: int | None) -> list[_Watch]:
        return [w for w in self.watches if connector is None or w.connector == connector]

    def statuses(self, connector: int | None = None) -> list[Outgoing]:
        now = self.clock.now()
        out: list[Outgoing] = []
        if connector in (None, 0):
            out.append(_status_item(CP.status(0, "Available", now), now))
        for w in self._chosen(connector):
            rt = self._rt(w)
            if rt is None:
                continue
            status, code, info = self.status_of(w, rt)
            w.status = (status, code)
            out.append(_status_item(CP.status(w.connector, status, now, code, info), now))
        return out

    def meter_now(self, connector: int | None = None) -> list[Outgoing]:
        now = self.clock.now()
        return [self._meters(w, rt, now) for w in self._chosen(connector or None)
                if (rt := self._rt(w)) is not None]

    def remote_start(self, connector: int | None, id_tag: str,
                     profile: dict[str, object] | None) -> bool:
        if connector is None:
            waiting = [w for w in self.watches if w.tx is None and (rt := self._rt(w))
                       and rt.evse is not None and rt.evse.plugged]
            chosen = waiting[:1] or (self.watches if len(self.watches) == 1 else [])
        else:
            chosen = self._chosen(connector) if connector > 0 else []
        if not chosen:
            return False
        w = chosen[0]
        rt = self._rt(w)
        if rt is None or w.tx is not None or rt.status.com_err or not rt.config.device_enabled:
            return False
        ev = rt.evse
        assert ev is not None
        log.info("%s: the OCPP backend starts a transaction remotely (idTag %s)", w.dev_id,
                 id_tag)
        w.remote_tag, w.remote_until = id_tag, self.clock.monotonic() + REMOTE_WAIT_S
        w.remote_profile = profile
        w.finished = False
        if ev.overrides & OVERRIDE_DISABLE_CHARGING:
            self.overrides.change_overrides(rt, clear_bits=OVERRIDE_DISABLE_CHARGING)
        self.wake()
        return True

    def remote_stop(self, transaction_id: int) -> bool:
        for w in self.watches:
            tx = w.tx
            rt = self._rt(w)
            if tx is None or tx.tid != transaction_id or rt is None:
                continue
            log.info("%s: the OCPP backend stops transaction %d", w.dev_id, transaction_id)
            self.overrides.change_overrides(rt, set_bits=OVERRIDE_DISABLE_CHARGING)
            self._stop(w, rt, self.clock.now(), "Remote")
            w.finished = True
            self.wake()
            return True
        return False

    def running_tx(self, connector: int) -> int | None:
        for w in self._chosen(connector):
            if w.tx is not None:
                return w.tx.tid
        return None

    def profiles_changed(self) -> None:
        self._limits(self.clock.now())


def _status_item(payload: Payload, at: float) -> Outgoing:
    connector = payload["connectorId"]
    return Outgoing("StatusNotification", STATUS, connector if isinstance(connector, int)
                    else 0, at, lambda: payload)
