"""Transactions that an EVSE reports itself: an OCPP charge point's StartTransaction and
StopTransaction, and the cards it asks about (Authorize).

Such an EVSE's rows in the transaction log are opened and closed by its own reports,
with its timestamps and its energy register, also when they arrive late (a charge point
that was offline sends what it kept once it is back). A report that belongs to the
running session (the EVSE shows a car) becomes that session's transaction: the session
manager writes its energy and peak power while it runs, as for every EVSE. Whether a card
may charge is decided as everywhere in chargebrain: at an EVSE without users every card
is accepted (it only labels the transaction); at one with users, a known card of a user
allowed there.

Runs on the event loop between cycles; it never waits for anything but a short SQLite
write, and never decides currents.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chargebrain.clock import Clock
from chargebrain.manager.sessions import SessionManager, Transaction
from chargebrain.manager.state import DeviceRuntime
from chargebrain.manager.users import UserDirectory
from chargebrain.store.db import Store

if TYPE_CHECKING:
    from chargebrain.manager.runtime import ChargingManager

log = logging.getLogger("chargebrain.sessions")

ACCEPTED = "Accepted"
BLOCKED = "Blocked"
INVALID = "Invalid"
#: A report this much older than now (seconds, by its timestamp) was kept while the EVSE
#: was offline: it is recorded, but it is not the session running now.
LATE_S = 120.0
#: A StartTransaction that repeats an open one's start this closely (seconds) and its
#: meter value is the same report sent again (its answer was lost): same transaction.
SAME_START_S = 1.0


class UnknownTransaction(LookupError):
    """A transaction id the EVSE (or charge point) never was given."""


class ReportedTransactions:
    """Authorisation answers and the transactions that EVSEs report themselves."""

    def __init__(self, store: Store, manager: ChargingManager, users: UserDirectory,
                 sessions: SessionManager, clock: Clock) -> None:
        self.store = store
        self.manager = manager
        self.users = users
        self.sessions = sessions
        self.clock = clock

    # --- cards --------------------------------------------------------------------------

    def authorize(self, dev_ids: Sequence[str], id_tag: str) -> str:
        """Whether `id_tag` may charge at any of these EVSEs: "Accepted", "Blocked" (a
        known card that may not charge there) or "Invalid" (an unknown card)."""
        evses = self._evses(dev_ids)
        inventory = self.manager.inventory
        if not evses or any(not inventory.needs_auth(rt) for rt in evses):
            return ACCEPTED
        found = self.users.find_card(id_tag)
        if found is None:
            return INVALID
        user, card = found
        if card.ac_auth and any(self.sessions.allowed(user, rt) for rt in evses):
            return ACCEPTED
        return BLOCKED

    # --- transactions -------------------------------------------------------------------

    def start(self, dev_id: str, id_tag: str, start_wh: float, when: float) -> tuple[int, str]:
        """A transaction the EVSE began at `when` (wall time, never later than now) with
        its register at `start_wh`: its id, and what the card may do."""
        status = self.authorize([dev_id], id_tag)
        now = self.clock.now()
        when = min(when, now)
        for row in self._open(dev_id):
            if abs(row.start_time - when) <= SAME_START_S and row.start_wh == start_wh:
                return row.id, status  # the same report again
        found = self.users.find_card(id_tag)
        user_id, user_name = (found[0].id, found[0].name) if found else ("", "")
        tid = self.store.execute(
            "INSERT INTO transactions (dev_id, user_id, user_name, rfid, start_time, start_wh, "
            "end_wh, max_power_w, open, overrides, ov_cur, updated_time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0, 1, 0, NULL, ?)",
            (dev_id, user_id, user_name, id_tag, when, start_wh, start_wh, now))
        rt = self.manager.devices.get(dev_id)
        ev = rt.evse if rt is not None else None
        late = now - when > LATE_S
        if ev is not None and ev.plugged and not late:
            # The running session's transaction (one it had is closed by its own report,
            # or else by the session manager as abandoned).
            ev.transaction_id = tid
            ev.plug_energy_wh = start_wh
            ev.max_power_w = 0.0
            self.manager.signal.changed()
        log.info("%s: transaction %d started%s (card %s: %s)", dev_id, tid,
                 " while offline" if late else "", id_tag, status)
        return tid, status

    def stop(self, dev_ids: Sequence[str], tid: int, end_wh: float, when: float) -> None:
        """The EVSE ended transaction `tid` at `when` with its register at `end_wh`.

        Raises UnknownTransaction if `tid` is not a transaction of one of `dev_ids`. A
        transaction closed already (the report sent again, or closed by chargebrain after
        its EVSE showed no car) takes the EVSE's end values.
        """
        rows = self.store.query("SELECT dev_id, open, start_time FROM transactions "
                                "WHERE id = ?", (tid,))
        if not rows or str(rows[0][0]) not in dev_ids:
            raise UnknownTransaction(f"transaction {tid} is not one of this charge point's")
        dev_id, was_open, start = str(rows[0][0]), bool(rows[0][1]), float(rows[0][2])
        now = self.clock.now()
        end = max(start, min(when, now))
        rt = self.manager.devices.get(dev_id)
        ev = rt.evse if rt is not None else None
        if ev is not None and ev.transaction_id == tid:
            self.store.execute(
                "UPDATE transactions SET open = 0, end_time = ?, end_wh = ?, max_power_w = ?, "
                "charging_secs = ?, updated_time = ?, overrides = ?, ov_cur = ? WHERE id = ?",
                (end, end_wh, ev.max_power_w, ev.charging_secs, now, ev.overrides, ev.ov_cur,
                 tid))
            ev.transaction_id = None
        else:
            self.store.execute("UPDATE transactions SET open = 0, end_time = ?, end_wh = ?, "
                               "updated_time = ? WHERE id = ?", (end, end_wh, now, tid))
        if was_open:
            log.info("%s: transaction %d stopped", dev_id, tid)

    def running(self, dev_ids: Sequence[str], tid: int) -> bool:
        """Whether `tid` is an open transaction of one of `dev_ids`."""
        rows = self.store.query("SELECT dev_id FROM transactions WHERE id = ? AND open = 1",
                                (tid,))
        return bool(rows) and str(rows[0][0]) in dev_ids

    def issued(self, dev_ids: Sequence[str], tid: int) -> bool:
        """Whether `tid` is a transaction (open or closed) of one of `dev_ids`."""
        rows = self.store.query("SELECT dev_id FROM transactions WHERE id = ?", (tid,))
        return bool(rows) and str(rows[0][0]) in dev_ids

    # --- lookups ------------------------------------------------------------------------

    def _open(self, dev_id: str) -> list[Transaction]:
        return [row for row in self.sessions.open_rows() if row.dev_id == dev_id]

    def _evses(self, dev_ids: Sequence[str]) -> list[DeviceRuntime]:
        devices = self.manager.devices
        return [devices[d] for d in dev_ids if d in devices and devices[d].evse is not None]
