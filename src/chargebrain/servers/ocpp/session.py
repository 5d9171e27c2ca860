"""One connected OCPP 1.6 charge point: what it says, what it is told.

Incoming calls (one at a time, already checked against the schemas): BootNotification,
Heartbeat, StatusNotification, MeterValues, Authorize, StartTransaction,
StopTransaction, DataTransfer and the two firmware/diagnostics notifications. A charge
point that never booted here is asked to (TriggerMessage, unless it boots within
BOOT_WAIT_S of connecting, as most do) and, until it does, every
other call is answered with a SecurityError. What it reports goes into its connectors'
drivers (devices/ocpp.py), which hand it to the manager; cards and transactions go to
the `Transactions` port.

Outgoing calls, each in a task of its own so that nothing waits for the charge point:
after boot (or at a reconnection) the meter values it should send (ChangeConfiguration)
and its connectors' status (TriggerMessage); whenever what a connector should be told
differs from what it accepted last, a TxDefaultProfile with the manager's limit (0 A
until the manager decided) or ClearChargingProfile (the manager released it), retried
every RETRY_S while refused; fresh meter values after a change (TriggerMessage); and
the remote starts and stops the central system asks for (`review`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar

from chargebrain.devices.ocpp import CLEAR, OcppEvse, Profile
from chargebrain.servers.ocpp import messages as M
from chargebrain.servers.ocpp.adapter import (
    NOT_SUPPORTED,
    PROPERTY_CONSTRAINT_VIOLATION,
    SECURITY_ERROR,
    OcppFault,
    Payload,
    Peer,
    PeerClosed,
    Transport,
)
from chargebrain.servers.ocpp.measurands import measure
from chargebrain.servers.ocpp.ports import Central

log = logging.getLogger("chargebrain.ocpp")

HEARTBEAT_S = 60  # the interval a charge point is given at boot
SAMPLE_S = 10  # the meter value interval asked for
#: Measurands asked for, from the most to the least; the first list accepted counts.
SAMPLED_DATA = (
    ("Current.Import", "Power.Active.Import", "Energy.Active.Import.Register"),
    ("Current.Import", "Energy.Active.Import.Register"),
    ("Power.Active.Import", "Energy.Active.Import.Register"),
    ("Energy.Active.Import.Register",),
)
RETRY_S = 30.0  # a refused profile is sent again this often
BOOT_WAIT_S = 5.0  # a charge point that never booted here is asked to this late
FRESH_AFTER_S = 5.0  # meter values asked for this long after a changed limit
HISTORIC_S = 120.0  # meter values older than this (by their timestamp) are history
REMOTE_TAG = "chargebrain"  # the card of a remote start when the session has none
_CAR_THERE = ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing")


class ChargePointSession:
    """The central system's side of one charge point's connection."""

    def __init__(self, charge_box_id: str, transport: Transport, central: Central) -> None:
        self.id = charge_box_id
        self.remote = transport.remote
        self.central = central
        self.clock = central.clock
        self.peer = Peer(transport, self._on_call, name=f"OCPP {charge_box_id}",
                         answered=self._answered)
        self.boot = central.boots.get(charge_box_id)
        self._profiles_due = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._retry: asyncio.Task[None] | None = None
        self._remote: dict[int, str] = {}  # connector → the last remote start or stop asked
        self._unconfigured: set[int] = set()
        self._refused: dict[int, tuple[Profile, float]] = {}  # connector → (what, retry at)
        self.current = True  # False once a newer connection of the same charge point came

    # --- the connection's life ----------------------------------------------------------

    @property
    def booted(self) -> bool:
        return self.boot is not None

    @property
    def connectors(self) -> dict[int, OcppEvse]:
        return self.central.hub.connectors(self.id)

    def _dev_ids(self) -> list[str]:
        return [evse.dev_id for evse in self.connectors.values()]

    async def run(self) -> None:
        """Serve the charge point until its connection closes."""
        log.info("OCPP: charge point %r connected from %s", self.id, self.remote)
        self._note_seen(connected=True)
        for evse in self.connectors.values():
            evse.set_connected(True, self.boot.text if self.boot else "")
        self._spawn(self._send_profiles(), "profiles")
        if self.booted:
            self._spawn(self._setup(), "setup")
        else:
            self._spawn(self._ask_for_boot(), "boot")
        try:
            await self.peer.run()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self.current:
                for evse in self.connectors.values():
                    evse.set_connected(False)
                self._note_seen(connected=False)
            log.info("OCPP: charge point %r disconnected", self.id)

    async def _ask_for_boot(self) -> None:
        """A charge point that never booted here and does not boot of itself soon after
        connecting (it only reconnected) is asked to."""
        await self.clock.sleep(BOOT_WAIT_S)
        if not self.booted:
            await self._call("TriggerMessage", M.trigger("BootNotification"))

    async def close(self, reason: str) -> None:
        self.current = False
        await self.peer.close(reason)

    def _spawn(self, work: Awaitable[object], name: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except (PeerClosed, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("OCPP %s: %s failed", self.id, name)

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, action: str, payload: Payload) -> Payload | None:
        """A call whose failure is only logged (None)."""
        try:
            return await self.peer.call(action, payload)
        except (OcppFault, TimeoutError) as exc:
            log.info("OCPP %s: %s failed: %s", self.id, action, exc or "no answer")
            return None

    def _answered(self, action: str) -> None:
        if action == "BootNotification":
            self._spawn(self._setup(), "setup")

    async def _setup(self) -> None:
        """After boot or a reconnection: the meter values wanted, the connectors' status,
        the current limits."""
        answer = await self._call("ChangeConfiguration", M.change_configuration(
            "MeterValueSampleInterval", str(SAMPLE_S)))
        if answer is not None and M.answer_status(answer) in ("Accepted", "RebootRequired"):
            for evse in self.connectors.values():
                evse.state.sample_s = float(SAMPLE_S)
        for measurands in SAMPLED_DATA:
            answer = await self._call("ChangeConfiguration", M.change_configuration(
                "MeterValuesSampledData", M.joined(measurands)))
            if answer is not None and M.answer_status(answer) in ("Accepted", "RebootRequired"):
                break
        for connector in sorted(self.connectors):
            await self._call("TriggerMessage", M.trigger("StatusNotification", connector))
        self._profiles_due.set()

    # --- what the manager wants ---------------------------------------------------------

    def connector_added(self, evse: OcppEvse) -> None:
        evse.set_connected(True, self.boot.text if self.boot else "")
        if self.booted:
            self._spawn(self._call("TriggerMessage", M.trigger("StatusNotification",
                                                                evse.connector)), "status")
        self._profiles_due.set()

    def command_changed(self) -> None:
        self._profiles_due.set()

    def fresh_reading_wanted(self, evse: OcppEvse) -> None:
        self._spawn(self._call("TriggerMessage", M.trigger("MeterValues", evse.connector)),
                    "meter values")

    async def _send_profiles(self) -> None:
        while True:
            await self._profiles_due.wait()
            self._profiles_due.clear()
            if not self.booted:
                continue
            now = self.clock.monotonic()
            for evse in list(self.connectors.values()):
                want = evse.desired()
                refused = self._refused.get(evse.connector)
                if want == evse.confirmed or (
                        refused is not None and refused[0] == want and now < refused[1]):
                    continue  # accepted, or refused lately (it is retried in time)
                await self._send_profile(evse, want)

    async def _send_profile(self, evse: OcppEvse, want: Profile) -> None:
        connector = evse.connector
        try:
            if want == CLEAR:
                answer = await self.peer.call("ClearChargingProfile", M.clear_profile(connector))
                ok = M.answer_status(answer) in ("Accepted", "Unknown")
            else:
                assert isinstance(want, tuple)
                answer = await self.peer.call("SetChargingProfile",
                                              M.set_profile(connector, want[0], want[1]))
                ok = M.answer_status(answer) == "Accepted"
            why = M.answer_status(answer)
        except OcppFault as fault:
            ok, why = False, fault.code
        except TimeoutError:
            ok, why = False, "no answer"
        except ValueError as exc:  # our payload broke the schema: a bug, logged
            log.error("OCPP %s: %s", self.id, exc)
            ok, why = False, "invalid profile"
        if not ok:
            log.warning("OCPP %s: connector %d did not accept %s: %s", self.id, connector,
                        "clearing its limit" if want == CLEAR else f"{want[0]} A", why)
            evse.refused(why)
            self._refused[connector] = (want, self.clock.monotonic() + RETRY_S)
            self._retry_later()
            return
        self._refused.pop(connector, None)
        previous = evse.confirmed
        evse.accepted(want)
        log.debug("OCPP %s: connector %d accepted %s", self.id, connector, want)
        if previous is not None and evse.state.status in _CAR_THERE:
            self._spawn(self._fresh_after_change(evse), "fresh meter values")

    def _retry_later(self) -> None:
        if self._retry is not None and not self._retry.done():
            return

        due = self.clock.monotonic() + RETRY_S  # from now, not from when the task starts

        async def retry() -> None:
            await self.clock.sleep(max(0.0, due - self.clock.monotonic()))
            self._profiles_due.set()

        self._retry = asyncio.ensure_future(retry())
        self._tasks.add(self._retry)
        self._retry.add_done_callback(self._tasks.discard)

    async def _fresh_after_change(self, evse: OcppEvse) -> None:
        changed = self.clock.monotonic()
        await self.clock.sleep(FRESH_AFTER_S)
        sample = evse.state.sample_at
        if evse.state.sample_s > FRESH_AFTER_S and (sample is None or sample <= changed):
            await self._call("TriggerMessage", M.trigger("MeterValues", evse.connector))

    def review(self, sessions: Mapping[str, tuple[bool, bool, str, bool]]) -> None:
        """Ask for remote starts and stops. `sessions`: per dev_id of this charge point's
        connectors, (car plugged in, charging disabled by override, the session's card,
        the session is authorised)."""
        for connector, evse in self.connectors.items():
            found = sessions.get(evse.dev_id)
            st = evse.state
            if found is None or st.status is None:
                continue
            plugged, disabled, card, authorised = found
            tx = st.transaction_id
            mark = self._remote.get(connector, "")
            if disabled and tx is not None:
                if mark != f"stop:{tx}":
                    self._remote[connector] = f"stop:{tx}"
                    log.info("OCPP %s: connector %d: charging disabled, stopping transaction "
                             "%d", self.id, connector, tx)
                    self._spawn(self._call("RemoteStopTransaction", M.remote_stop(tx)), "stop")
            elif (not disabled and tx is None and plugged and mark != "start"
                  and st.status in ("Preparing", "Finishing", "SuspendedEVSE")
                  and (mark.startswith("stop:")
                       or (authorised and card and not evse.presented(card)))):
                self._remote[connector] = "start"
                tag = card or REMOTE_TAG
                log.info("OCPP %s: connector %d: starting a transaction remotely", self.id,
                         connector)
                self._spawn(self._call("RemoteStartTransaction",
                                       M.remote_start(connector, tag)), "start")

    # --- what the charge point says -----------------------------------------------------

    async def _on_call(self, action: str, payload: Payload) -> Payload:
        handler = self._handlers.get(action)
        if handler is None:
            raise OcppFault(NOT_SUPPORTED, f"a central system does not take {action}")
        if action != "BootNotification" and not self.booted:
            raise OcppFault(SECURITY_ERROR, "BootNotification first")
        return handler(self, payload)

    def _on_boot(self, p: Payload) -> Payload:
        boot = M.boot(p)
        self.boot = boot
        self.central.boots.put(self.id, boot)
        log.info("OCPP: charge point %r booted: %s", self.id, boot.text)
        self._note_seen(connected=True)
        for evse in self.connectors.values():
            evse.set_connected(True, boot.text)
        return M.boot_answer(self.clock.now(), HEARTBEAT_S)

    def _on_heartbeat(self, p: Payload) -> Payload:
        return M.heartbeat_answer(self.clock.now())

    def _on_status(self, p: Payload) -> Payload:
        report = M.status(p)
        if report.connector == 0:
            if report.status in ("Faulted", "Unavailable"):
                log.info("OCPP %s: the charge point is %s (%s)", self.id, report.status,
                         report.error_code)
            return {}
        evse = self._connector(report.connector, report.status)
        if evse is None:
            return {}
        st = evse.state
        if report.status != st.status:
            st.status_at = self.clock.monotonic()
        st.status, st.error_code = report.status, report.error_code
        if report.status == "Available":
            self._remote.pop(report.connector, None)
            st.transaction_id = None
        evse.publish()
        return {}

    def _on_meters(self, p: Payload) -> Payload:
        report = M.meters(p)
        evse = self._connector(report.connector)
        if evse is None and report.connector == 0 and len(self.connectors) == 1:
            evse = next(iter(self.connectors.values()))  # the whole charge point's meter
        tid = report.transaction_id
        if tid and not self.central.transactions.issued(self._dev_ids(), tid):
            raise OcppFault(PROPERTY_CONSTRAINT_VIOLATION, f"transaction {tid} is unknown")
        if evse is not None:
            for value in sorted(report.values, key=lambda v: v.timestamp):
                self._take_meters(evse, value)
            evse.publish()
        return {}

    def _take_meters(self, evse: OcppEvse, value: M.MeterValue) -> None:
        st = evse.state
        found = measure(value.samples, evse.offered_ma(), st.phase_mask)
        historic = value.timestamp < self.clock.now() - HISTORIC_S
        if found.energy_wh is not None and (
                not historic or st.energy_wh is None or found.energy_wh > st.energy_wh):
            st.energy_wh = found.energy_wh
        if historic or (found.currents is None and found.power_w is None):
            return
        if found.currents is not None:
            st.currents = found.currents
        st.power_w = found.power_w or 0.0
        st.has_meter = True
        st.phase_mask = found.phase_mask or st.phase_mask
        st.sample_at = self.clock.monotonic()

    def _on_authorize(self, p: Payload) -> Payload:
        tag = str(p.get("idTag", ""))
        status = self.central.transactions.authorize(self._dev_ids(), tag)
        connectors = list(self.connectors.values())
        waiting = [e for e in connectors if e.state.status == "Preparing"]
        target = connectors if len(connectors) == 1 else waiting if len(waiting) == 1 else []
        for evse in target:
            evse.hand_card(tag)
        return {"idTagInfo": M.id_tag_info(status)}

    def _on_start(self, p: Payload) -> Payload:
        report = M.start(p)
        evse = self._connector(report.connector)
        if evse is None:
            # Not configured: it may not charge (no transaction is recorded).
            return {"idTagInfo": M.id_tag_info("Invalid"), "transactionId": 0}
        tid, status = self.central.transactions.start(
            evse.dev_id, report.id_tag, report.meter_start_wh, report.timestamp)
        st = evse.state
        if report.timestamp >= self.clock.now() - HISTORIC_S:
            st.transaction_id = tid
            if self._remote.get(report.connector) == "start":
                del self._remote[report.connector]
            st.energy_wh = report.meter_start_wh
            evse.hand_card(report.id_tag)
            evse.publish()
        return {"idTagInfo": M.id_tag_info(status), "transactionId": tid}

    def _on_stop(self, p: Payload) -> Payload:
        report = M.stop(p)
        if report.transaction_id == 0:
            return {}  # the answer to a start on a connector that is not configured
        try:
            self.central.transactions.stop(self._dev_ids(), report.transaction_id,
                                           report.meter_stop_wh, report.timestamp)
        except LookupError as exc:
            raise OcppFault(PROPERTY_CONSTRAINT_VIOLATION, str(exc)) from None
        for evse in self.connectors.values():
            st = evse.state
            if st.transaction_id == report.transaction_id:
                st.transaction_id = None
                if report.timestamp >= self.clock.now() - HISTORIC_S:
                    st.energy_wh = report.meter_stop_wh
                evse.publish()
        if not report.id_tag:
            return {}
        status = self.central.transactions.authorize(self._dev_ids(), report.id_tag)
        return {"idTagInfo": M.id_tag_info(status)}

    def _on_data_transfer(self, p: Payload) -> Payload:
        return {"status": "UnknownVendorId"}

    def _on_notification(self, p: Payload) -> Payload:
        return {}

    def _connector(self, connector: int, status: str | None = None) -> OcppEvse | None:
        evse = self.connectors.get(connector)
        if evse is None and connector:
            if connector not in self._unconfigured:
                self._unconfigured.add(connector)
                log.info("OCPP %s: connector %d is not configured as an EVSE", self.id,
                         connector)
            self._note_seen(connected=True, connector=connector, status=status)
        return evse

    def _note_seen(self, connected: bool, connector: int | None = None,
                   status: str | None = None) -> None:
        if not self.central.hub.known(self.id):
            self.central.seen(self.id, self.remote, connected, self.boot, connector, status)

    _handlers: ClassVar[dict[str, Callable[[ChargePointSession, Payload], Payload]]] = {
        "BootNotification": _on_boot,
        "Heartbeat": _on_heartbeat,
        "StatusNotification": _on_status,
        "MeterValues": _on_meters,
        "Authorize": _on_authorize,
        "StartTransaction": _on_start,
        "StopTransaction": _on_stop,
        "DataTransfer": _on_data_transfer,
        "DiagnosticsStatusNotification": _on_notification,
        "FirmwareStatusNotification": _on_notification,
    }

