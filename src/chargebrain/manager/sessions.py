"""Charging sessions: authorisation by RFID/PIN, overrides, the soft meter, transactions.

A session runs from plug-in to unplug. An EVSE that has users assigned (its `users`
setting, or users whose `dev_ids` name it) charges only once a card or PIN of a user
allowed there has been presented: through `enter_rfid`, the EVSE's own card reader or a
pushed `rfid` (both arrive as `on_rfid`), a card presented up to a minute before the
plug-in, or the EVSE's `fixed_rfid`. Authorisation and overrides hold until unplug.

Every session is a row in `transactions`: written at plug-in, when it is authorised or
overridden, every FLUSH_S seconds while it runs (energy, peak power, charging time) and
at unplug. An EVSE that reports its own transactions (an OCPP charge point) opens and
closes its rows itself (manager/reported.py); the rest is the same. After a crash the
open row of an EVSE that is still plugged in is continued; any other open row is closed
with its last written values (end = its last update).

Runs inside the control cycle: this module must never block on anything but a short
SQLite write, never raise out of a listener hook, and never decide currents (the
balancer does, from the EvseRuntime fields set here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chargebrain.clock import Clock
from chargebrain.manager.state import (
    OVERRIDE_DISABLE_CHARGING,
    DeviceRuntime,
    EvseRuntime,
)
from chargebrain.manager.users import Card, User, UserDirectory, masked
from chargebrain.store.db import Store

if TYPE_CHECKING:
    from chargebrain.manager.runtime import ChargingManager

log = logging.getLogger("chargebrain.sessions")

PENDING_AUTH_S = 60.0  # a card presented before plug-in counts for this long
FLUSH_S = 60.0  # running transactions are written this often
ORPHAN_GRACE_S = 120.0  # after a restart, how long an EVSE may take to report its car
SOFT_METER_KEY = "soft_meters"

ALL_OVERRIDES = 7


class Refused(Exception):
    """A card/PIN that does not authorise what was asked; nothing was changed.

    `kind`: "unknown" (no such RFID/PIN), "forbidden" (not allowed there), "busy"
    (another user's session), "absent" (no EVSE waiting).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Outcome:
    """What presenting a card did."""

    dev_id: str
    user: User
    authorised: bool
    pending: bool = False
    toggled: bool = False


@dataclass(frozen=True)
class _Pending:
    user_id: str
    rfid: str
    until: float  # monotonic


@dataclass(frozen=True)
class Transaction:
    id: int
    dev_id: str
    user_id: str
    user_name: str
    rfid: str
    start_time: float
    end_time: float | None
    start_wh: float
    end_wh: float | None
    max_power_w: float
    open: bool
    overrides: int
    ov_cur: int | None
    charging_secs: float
    updated_time: float | None

    @property
    def energy_wh(self) -> float:
        return max(0.0, (self.end_wh if self.end_wh is not None else self.start_wh)
                   - self.start_wh)


_COLUMNS = ("id, dev_id, user_id, user_name, rfid, start_time, end_time, start_wh, end_wh, "
            "max_power_w, open, overrides, ov_cur, charging_secs, updated_time")


def _row(values: tuple[Any, ...]) -> Transaction:
    (tid, dev_id, user_id, user_name, rfid, start, end, start_wh, end_wh, peak, is_open,
     overrides, ov_cur, secs, updated) = values
    return Transaction(
        id=int(tid), dev_id=str(dev_id), user_id=str(user_id), user_name=str(user_name),
        rfid=str(rfid), start_time=float(start),
        end_time=float(end) if end is not None else None, start_wh=float(start_wh),
        end_wh=float(end_wh) if end_wh is not None else None, max_power_w=float(peak),
        open=bool(is_open), overrides=int(overrides),
        ov_cur=int(ov_cur) if ov_cur is not None else None, charging_secs=float(secs),
        updated_time=float(updated) if updated is not None else None)


def _plugged_at(rt: DeviceRuntime) -> float:
    return (rt.evse.plugged_at if rt.evse is not None else None) or 0.0


def _has_meter(ev: EvseRuntime) -> bool:
    """Whether the EVSE's energy comes from its own counter (else from the soft meter)."""
    r = ev.reading
    return r is not None and r.has_meter and r.energy_known


class SessionManager:
    """The charging manager's SessionListener for authorisation and transactions."""

    def __init__(self, store: Store, manager: ChargingManager, users: UserDirectory,
                 clock: Clock) -> None:
        self.store = store
        self.manager = manager
        self.users = users
        self.clock = clock
        self._pending: dict[str, _Pending] = {}
        self._orphans: dict[str, int] = {}
        self._started = clock.monotonic()
        self._last_flush = clock.now()

    # --- start-up and shut-down -------------------------------------------------------

    def restore(self) -> None:
        """After the devices are loaded: soft meters and the transactions left open."""
        self._started = self.clock.monotonic()
        stored = self.store.get_setting(SOFT_METER_KEY, {})
        if isinstance(stored, dict):
            for dev_id, wh in stored.items():
                ev = self._evse(dev_id)
                if ev is not None and isinstance(wh, int | float) and wh >= 0:
                    ev.soft_meter_wh = float(wh)
        for row in self.open_rows():
            if row.dev_id in self._orphans:
                self._close_stale(row)
            else:
                self._orphans[row.dev_id] = row.id
        if self._orphans:
            log.info("%d transaction(s) open from before the restart", len(self._orphans))

    def flush(self) -> None:
        """Write the running transactions and the soft meters now."""
        self._last_flush = self.clock.now()
        now = self._last_flush
        owned: dict[int, EvseRuntime] = {}
        soft: dict[str, float] = {}
        for rt in self.manager.devices.values():
            ev = rt.evse
            if ev is None:
                continue
            if ev.transaction_id is not None:
                owned[ev.transaction_id] = ev
            if ev.soft_meter_wh > 0:
                soft[rt.dev_id] = round(ev.soft_meter_wh, 3)
        stale = [row for row in self.open_rows()
                 if row.id not in owned and row.dev_id not in self._orphans
                 and self._abandoned(row)]
        with self.store.transaction() as db:
            for tid, ev in owned.items():
                db.execute(
                    "UPDATE transactions SET end_wh = ?, max_power_w = ?, charging_secs = ?, "
                    "updated_time = ?, overrides = ?, ov_cur = ? WHERE id = ? AND open = 1",
                    (ev.total_energy_wh, ev.max_power_w, ev.charging_secs, now,
                     ev.overrides, ev.ov_cur, tid))
        self.store.set_setting(SOFT_METER_KEY, soft)
        for row in stale:
            self._close_stale(row)

    # --- SessionListener --------------------------------------------------------------

    def on_plug(self, rt: DeviceRuntime, now: float) -> None:
        ev = rt.evse
        if ev is None:
            return
        try:
            self._begin(rt, ev, now)
        except Exception:  # the control cycle must go on
            log.exception("%s: recording the plug-in failed", rt.dev_id)
        if ev.authorised:
            return
        pending = self._pending.pop(rt.dev_id, None)
        if pending is not None and pending.until >= self.clock.monotonic():
            self._apply_card(rt, pending.rfid, "card presented before plug-in")
        elif rt.config.fixed_rfid and self.manager.inventory.needs_auth(rt):
            self._apply_card(rt, rt.config.fixed_rfid, "fixed RFID")

    def on_unplug(self, rt: DeviceRuntime, now: float) -> None:
        ev = rt.evse
        self._pending.pop(rt.dev_id, None)
        if ev is None or ev.transaction_id is None or rt.dtype.own_transactions:
            return  # (an EVSE's own report closes its transaction; else `flush` does)
        try:
            self.store.execute(
                "UPDATE transactions SET open = 0, end_time = ?, end_wh = ?, max_power_w = ?, "
                "charging_secs = ?, updated_time = ?, overrides = ?, ov_cur = ? WHERE id = ?",
                (now, ev.total_energy_wh, ev.max_power_w, ev.charging_secs, now, ev.overrides,
                 ev.ov_cur, ev.transaction_id))
        except Exception:  # the control cycle must go on
            log.exception("%s: closing transaction %s failed", rt.dev_id, ev.transaction_id)

    def on_rfid(self, rt: DeviceRuntime, rfid: str, now: float) -> None:
        if not self.manager.inventory.needs_auth(rt) and self.users.find_card(rfid) is None:
            # Anyone charges here; a card no user has (a wallbox's own tag in free
            # charging) changes nothing and is no refusal worth a warning.
            log.debug("%s: card reader: %s is no user's card", rt.dev_id, masked(rfid))
            return
        self._apply_card(rt, rfid, "card reader")

    def on_cycle(self, now: float) -> None:
        mgr = self.manager
        for rt in mgr.devices.values():
            ev = rt.evse
            if ev is None:
                continue
            needs = mgr.inventory.needs_auth(rt)
            if needs is ev.needs_auth:
                continue
            ev.needs_auth = needs
            if needs and ev.plugged and not ev.authorised:
                # Users were assigned to an EVSE whose car charges without a card: from
                # now on it waits for one, as a car plugged in now would.
                log.info("%s (%s): users are assigned now; the car waits for "
                         "authorisation", rt.dev_id, rt.config.name)
                if rt.config.fixed_rfid:
                    self._apply_card(rt, rt.config.fixed_rfid, "fixed RFID")
        if self._pending:
            mono = self.clock.monotonic()
            for dev_id in [d for d, p in self._pending.items() if p.until < mono]:
                del self._pending[dev_id]
        try:
            if self._orphans:
                self._settle_orphans()
            if now - self._last_flush >= FLUSH_S or now < self._last_flush:
                self.flush()
        except Exception:  # the control cycle must go on
            log.exception("writing transactions failed")

    # --- cards ------------------------------------------------------------------------

    def allowed(self, user: User, rt: DeviceRuntime) -> bool:
        """May `user` charge at this EVSE? (At an EVSE without users, everyone may.)"""
        if not self.manager.inventory.needs_auth(rt):
            return True
        return user.id in rt.config.users or rt.dev_id in user.dev_ids

    def present(self, rfid: str, dev_id: str | None = None) -> Outcome:
        """A card or PIN is presented, at one EVSE or wherever a car waits for it.

        Raises Refused (and changes nothing) when it does not authorise anything.
        """
        found = self.users.find_card(rfid)
        if found is None:
            raise Refused("unknown", "unknown RFID/PIN")
        user, card = found
        if dev_id is not None:
            rt = self.manager.devices[dev_id]
            return self._present_at(rt, user, card)
        waiting = [rt for rt in self._evses()
                   if rt.evse is not None and rt.evse.plugged and rt.evse.needs_auth
                   and not rt.evse.authorised]
        allowed = [rt for rt in waiting if self.allowed(user, rt)]
        if allowed:
            return self._present_at(max(allowed, key=_plugged_at), user, card)
        if waiting:
            names = ", ".join(rt.dev_id for rt in waiting)
            raise Refused("forbidden", f"this RFID/PIN may not charge at {names}")
        own = [rt for rt in self._evses()
               if rt.evse is not None and rt.evse.plugged and rt.evse.user_id == user.id]
        if own and card.ac_ovch:
            return self._present_at(max(own, key=_plugged_at), user, card)
        raise Refused("absent", "no EVSE is waiting for authorisation")

    def _present_at(self, rt: DeviceRuntime, user: User, card: Card) -> Outcome:
        ev = rt.evse
        assert ev is not None
        if not self.allowed(user, rt):
            raise Refused("forbidden", f"this RFID/PIN may not charge at {rt.dev_id}")
        if ev.plugged and ev.authorised and ev.user_id:
            if ev.user_id != user.id:
                raise Refused("busy", f"{rt.dev_id} is in use by another user")
            if card.ac_ovch:
                self.change_overrides(rt, toggle=OVERRIDE_DISABLE_CHARGING)
                return Outcome(rt.dev_id, user, authorised=True, toggled=True)
            return Outcome(rt.dev_id, user, authorised=True)
        if not card.ac_auth:
            raise Refused("forbidden", "this RFID/PIN does not authorise charging")
        if not ev.plugged:
            self._pending[rt.dev_id] = _Pending(user.id, card.id,
                                                self.clock.monotonic() + PENDING_AUTH_S)
            log.info("%s (%s): %s presented before plug-in", rt.dev_id, rt.config.name,
                     user.name or masked(user.id))
            return Outcome(rt.dev_id, user, authorised=False, pending=True)
        self._authorise(rt, ev, user, card)
        return Outcome(rt.dev_id, user, authorised=True)

    def _apply_card(self, rt: DeviceRuntime, rfid: str, source: str) -> None:
        """A card event without anyone to answer: the outcome is logged."""
        try:
            outcome = self.present(rfid, rt.dev_id)
        except Refused as exc:
            log.warning("%s (%s): %s refused: %s", rt.dev_id, rt.config.name, source,
                        exc.message)
            return
        except Exception:  # the control cycle must go on
            log.exception("%s: handling a card failed", rt.dev_id)
            return
        log.debug("%s: %s accepted (authorised=%s)", rt.dev_id, source, outcome.authorised)

    def _authorise(self, rt: DeviceRuntime, ev: EvseRuntime, user: User, card: Card) -> None:
        ev.authorised = True
        ev.user_id = user.id
        ev.rfid = card.id
        self.manager.auth_count += 1
        log.info("%s (%s): charging authorised for %s", rt.dev_id, rt.config.name,
                 user.name or masked(user.id))
        if ev.transaction_id is not None:
            self.store.execute(
                "UPDATE transactions SET user_id = ?, user_name = ?, rfid = ? WHERE id = ?",
                (user.id, user.name, card.id, ev.transaction_id))
        self.manager.wake()

    def session_user(self, rt: DeviceRuntime, rfid: str) -> User | None:
        """The user of the EVSE's current session, if `rfid` is one of that user's cards."""
        ev = rt.evse
        found = self.users.find_card(rfid)
        if ev is None or found is None or not ev.plugged or not ev.user_id:
            return None
        user, _ = found
        return user if user.id == ev.user_id else None

    # --- overrides and the soft meter ---------------------------------------------------

    def change_overrides(self, rt: DeviceRuntime, set_bits: int = 0, clear_bits: int = 0,
                         toggle: int = 0, ov_cur: int | None = None,
                         clear_current: bool = False) -> None:
        """Change the override flags (bits as in get_dev_info) and the current limit."""
        ev = rt.evse
        assert ev is not None
        flags = (ev.overrides | set_bits) & ~clear_bits & ALL_OVERRIDES
        ev.overrides = flags ^ toggle
        if clear_current:
            ev.ov_cur = None
        elif ov_cur is not None:
            ev.ov_cur = ov_cur
        log.info("%s (%s): overrides %d, current limit %s", rt.dev_id, rt.config.name,
                 ev.overrides, "none" if ev.ov_cur is None else f"{ev.ov_cur} mA")
        if ev.transaction_id is not None:
            self.store.execute("UPDATE transactions SET overrides = ?, ov_cur = ? WHERE id = ?",
                               (ev.overrides, ev.ov_cur, ev.transaction_id))
        self.manager.wake()

    def soft_meter(self, rt: DeviceRuntime, value_wh: float | None) -> float:
        """The soft meter reading before the call; sets it when `value_wh` is given."""
        ev = rt.evse
        assert ev is not None
        old = ev.soft_meter_wh
        if value_wh is None:
            return old
        if not _has_meter(ev):
            delta = value_wh - ev.total_energy_wh
            ev.total_energy_wh = value_wh
            if ev.plugged:
                # Keep the energy of the running transaction as it was.
                ev.plug_energy_wh += delta
                if ev.transaction_id is not None:
                    self.store.execute(
                        "UPDATE transactions SET start_wh = start_wh + ?, end_wh = ? "
                        "WHERE id = ?", (delta, value_wh, ev.transaction_id))
        ev.soft_meter_wh = value_wh
        self.manager.signal.changed()
        log.info("%s (%s): soft meter set from %.0f to %.0f Wh", rt.dev_id, rt.config.name,
                 old, value_wh)
        self.flush()
        return old

    # --- the transaction log ------------------------------------------------------------

    def transactions(self, user_id: str | None = None) -> list[Transaction]:
        if user_id is None:
            rows = self.store.query(f"SELECT {_COLUMNS} FROM transactions ORDER BY id")
        else:
            rows = self.store.query(
                f"SELECT {_COLUMNS} FROM transactions WHERE user_id = ? ORDER BY id",
                (user_id,))
        return [_row(r) for r in rows]

    def open_rows(self) -> list[Transaction]:
        """The transactions still open, oldest first."""
        return [_row(r) for r in self.store.query(
            f"SELECT {_COLUMNS} FROM transactions WHERE open = 1 ORDER BY id")]

    def _begin(self, rt: DeviceRuntime, ev: EvseRuntime, now: float) -> None:
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM transactions WHERE open = 1 AND dev_id = ? "
            "ORDER BY id DESC LIMIT 1", (rt.dev_id,))
        self._orphans.pop(rt.dev_id, None)
        if rows:
            self._continue(rt, ev, _row(rows[0]))
            return
        if rt.dtype.own_transactions:
            return  # its transaction begins when the EVSE reports it
        ev.transaction_id = self.store.execute(
            "INSERT INTO transactions (dev_id, start_time, start_wh, end_wh, max_power_w, "
            "open, overrides, ov_cur, updated_time) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)",
            (rt.dev_id, now, ev.plug_energy_wh, ev.total_energy_wh, ev.max_power_w,
             ev.overrides, ev.ov_cur, now))

    def _continue(self, rt: DeviceRuntime, ev: EvseRuntime, row: Transaction) -> None:
        """The car is still plugged in after a restart: carry on with its transaction."""
        ev.transaction_id = row.id
        ev.plugged_at = row.start_time
        ev.plug_energy_wh = row.start_wh
        ev.max_power_w = max(ev.max_power_w, row.max_power_w)
        ev.charging_secs = max(ev.charging_secs, row.charging_secs)
        ev.overrides |= row.overrides
        if ev.ov_cur is None:
            ev.ov_cur = row.ov_cur
        user = self.users.get(row.user_id) if row.user_id else None
        if user is not None:
            ev.authorised = True
            ev.user_id = user.id
            ev.rfid = row.rfid
        log.info("%s (%s): continuing transaction %d", rt.dev_id, rt.config.name, row.id)

    def _settle_orphans(self) -> None:
        """Close transactions left open by a crash once their EVSE shows no car."""
        waited = self.clock.monotonic() - self._started
        for dev_id, tid in list(self._orphans.items()):
            rt = self.manager.devices.get(dev_id)
            ev = rt.evse if rt is not None else None
            if ev is not None and ev.transaction_id == tid:
                del self._orphans[dev_id]
                continue
            reported_empty = ev is not None and ev.reading is not None and not ev.plugged
            if ev is None or reported_empty or waited > ORPHAN_GRACE_S:
                del self._orphans[dev_id]
                rows = self.store.query(f"SELECT {_COLUMNS} FROM transactions WHERE id = ?",
                                        (tid,))
                if rows:
                    self._close_stale(_row(rows[0]))

    def _abandoned(self, row: Transaction) -> bool:
        """An open row no EVSE will continue (deleted EVSE, no car, another session)."""
        ev = self._evse(row.dev_id)
        if ev is None:
            return True
        if ev.reading is not None and not ev.plugged:
            return True
        return ev.transaction_id is not None and ev.transaction_id != row.id

    def _close_stale(self, row: Transaction) -> None:
        end = row.updated_time if row.updated_time is not None else row.start_time
        self.store.execute(
            "UPDATE transactions SET open = 0, end_time = ?, end_wh = ? WHERE id = ? AND open = 1",
            (end, row.end_wh if row.end_wh is not None else row.start_wh, row.id))
        log.info("%s: transaction %d closed with its last known values", row.dev_id, row.id)

    # --- lookups ------------------------------------------------------------------------

    def _evses(self) -> list[DeviceRuntime]:
        return [rt for rt in self.manager.inventory.devices_in_order() if rt.evse is not None]

    def _evse(self, dev_id: str) -> EvseRuntime | None:
        rt = self.manager.devices.get(dev_id)
        return rt.evse if rt is not None else None
