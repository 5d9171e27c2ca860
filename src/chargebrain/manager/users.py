"""The user directory: users, their RFIDs/PINs and the EVSEs they may use, kept in SQLite.

A user is identified by a secret, random numeric id. Every RFID/PIN belongs to exactly
one user (compared without regard to case or surrounding spaces). The directory keeps
`ChargingManager.user_evses` equal to the EVSEs named in any user's `dev_ids`, which is
what makes those EVSEs wait for authorisation.

Each change is validated against the whole directory first and written in one SQLite
transaction before memory is touched, so a refused change alters nothing and an
acknowledged one survives a crash. This module must never spell the HTTP API's JSON
answers (api/cmd_users.py does) and never log a user id in full.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chargebrain.devices.registry import Kind
from chargebrain.store.db import Store

if TYPE_CHECKING:
    from chargebrain.manager.runtime import ChargingManager

log = logging.getLogger("chargebrain.users")

MAX_USERS = 1000
MAX_CARDS_PER_USER = 100
USER_ID_DIGITS = 10


class UserError(ValueError):
    """A change the directory refuses; nothing was changed."""


class DuplicateCard(UserError):
    """An RFID/PIN that another user already has."""


def card_key(rfid: str) -> str:
    """The form RFIDs/PINs are compared in (readers differ in case)."""
    return rfid.strip().upper()


def masked(user_id: str) -> str:
    """A user id for log lines: enough to tell users apart, not enough to use it."""
    return f"…{user_id[-3:]}" if len(user_id) > 3 else "…"


@dataclass(frozen=True)
class Card:
    """An RFID card or PIN of a user."""

    id: str
    name: str = ""
    ac_auth: bool = True  # authorises charging
    ac_ovch: bool = False  # toggles "charging disabled" of the user's own session
    used_phases: int = 0  # 0 = don't override


@dataclass(frozen=True)
class User:
    id: str
    name: str = ""
    display: bool = True
    dev_ids: tuple[str, ...] = ()
    rfids: tuple[Card, ...] = ()
    charging_rules: tuple[dict[str, Any], ...] = ()

    def card(self, rfid: str) -> Card | None:
        key = card_key(rfid)
        for c in self.rfids:
            if card_key(c.id) == key:
                return c
        return None


def _stored(user: User) -> dict[str, Any]:
    return {
        "id": user.id, "name": user.name, "display": user.display,
        "dev_ids": list(user.dev_ids),
        "rfids": [{"id": c.id, "name": c.name, "ac_auth": c.ac_auth, "ac_ovch": c.ac_ovch,
                   "used_phases": c.used_phases} for c in user.rfids],
        "charging_rules": list(user.charging_rules),
    }


def _from_stored(doc: dict[str, Any]) -> User:
    return User(
        id=str(doc["id"]), name=str(doc.get("name", "")), display=bool(doc.get("display", True)),
        dev_ids=tuple(str(d) for d in doc.get("dev_ids", [])),
        rfids=tuple(Card(id=str(c["id"]), name=str(c.get("name", "")),
                         ac_auth=bool(c.get("ac_auth", True)),
                         ac_ovch=bool(c.get("ac_ovch", False)),
                         used_phases=int(c.get("used_phases", 0)))
                    for c in doc.get("rfids", [])),
        charging_rules=tuple(dict(r) for r in doc.get("charging_rules", [])),
    )


class UserDirectory:
    """All users, in memory and in the `users` table."""

    def __init__(self, store: Store, manager: ChargingManager) -> None:
        self.store = store
        self.manager = manager
        self._users: dict[str, User] = {}
        self._cards: dict[str, str] = {}  # card_key → user id
        for uid, config in store.query("SELECT id, config FROM users ORDER BY rowid"):
            try:
                user = _from_stored(json.loads(config))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("user %s not loaded: %s", masked(str(uid)), exc)
                continue
            self._users[user.id] = user
        self._publish()

    # --- reading ---------------------------------------------------------------------

    def get(self, user_id: str) -> User | None:
        return self._users.get(user_id)

    def all(self) -> list[User]:
        return list(self._users.values())

    def __len__(self) -> int:
        return len(self._users)

    def find_card(self, rfid: str) -> tuple[User, Card] | None:
        """The user an RFID/PIN belongs to, and the card."""
        user = self._users.get(self._cards.get(card_key(rfid), ""))
        card = user.card(rfid) if user is not None else None
        return (user, card) if user is not None and card is not None else None

    def new_id(self) -> str:
        """A fresh random 10-digit id that no user has."""
        while True:
            candidate = str(10 ** (USER_ID_DIGITS - 1)
                            + secrets.randbelow(9 * 10 ** (USER_ID_DIGITS - 1)))
            if candidate not in self._users:
                return candidate

    # --- changing --------------------------------------------------------------------

    def check(self, user: User) -> None:
        """Raise UserError if `user` cannot be saved as it is."""
        if user.id not in self._users and len(self._users) >= MAX_USERS:
            raise UserError(f"no more than {MAX_USERS} users")
        if len(user.rfids) > MAX_CARDS_PER_USER:
            raise UserError(f"no more than {MAX_CARDS_PER_USER} RFIDs/PINs per user")
        seen: set[str] = set()
        for c in user.rfids:
            key = card_key(c.id)
            if key in seen:
                raise UserError(f"RFID/PIN {c.id!r} is listed twice")
            seen.add(key)
        for key in seen:
            owner = self._cards.get(key)
            if owner is not None and owner != user.id:
                raise DuplicateCard(f"RFID/PIN {key!r} already belongs to another user")
        current = self._users.get(user.id)
        kept = set(current.dev_ids) if current is not None else set()
        for dev_id in user.dev_ids:
            if dev_id in kept:
                continue  # an EVSE deleted since keeps the user editable
            rt = self.manager.devices.get(dev_id)
            if rt is None or rt.dtype.kind is not Kind.EVSE:
                raise UserError(f"dev_ids: {dev_id} is not an EVSE")

    def save(self, user: User) -> bool:
        """Create or replace a user; True if it was created."""
        self.check(user)
        created = user.id not in self._users
        self.store.execute(
            "INSERT INTO users (id, config) VALUES (?, ?) "
            "ON CONFLICT(id) DO UPDATE SET config = excluded.config",
            (user.id, json.dumps(_stored(user))),
        )
        self._users[user.id] = user
        self._publish()
        log.info("user %s (%s) %s", masked(user.id), user.name,
                 "created" if created else "changed")
        return created

    def delete(self, user_id: str) -> bool:
        if user_id not in self._users:
            return False
        self.store.execute("DELETE FROM users WHERE id = ?", (user_id,))
        user = self._users.pop(user_id)
        self._publish()
        log.info("user %s (%s) deleted", masked(user_id), user.name)
        return True

    def _publish(self) -> None:
        self._cards = {card_key(c.id): u.id for u in self._users.values() for c in u.rfids}
        self.manager.inventory.set_user_evses(frozenset(_evses(self._users.values())))
        self.manager.wake()


def _evses(users: Iterable[User]) -> set[str]:
    return {dev_id for user in users for dev_id in user.dev_ids}
