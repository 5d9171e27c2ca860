"""The user object and its cards as set_user takes them, declared once.

`UserBody` is the object get_user shows and set_user takes (id, name, display, dev_ids,
rfids, charging_rules), `CardShape` one of its `rfids`. Defaults are
manager/users.User's and Card's. Keys that are none of these are refused, naming them,
before any value is looked at; of several bad values the one checked first is reported,
in the order the fields are declared (a card's `used_phases` before its `id`, as the API
always checked them).

`user_id` reads a body's `id` alone (set_user looks the user up before anything else),
`parse_user_id` an id given as a query parameter; `user_changes` gives the user with the
fields a body carries.

This module must never look users up or store them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, model_validator

from chargebrain.api.errors import ApiError
from chargebrain.api.lenient import Body, Lenient, check, message, named, ui
from chargebrain.api.params import Refused, clean, integer
from chargebrain.api.shapes.fields import flag, rule_list
from chargebrain.manager.users import MAX_CARDS_PER_USER, Card, User

MAX_NAME = 100
MAX_RFID = 64
MAX_DEV_IDS = 1000
MAX_USER_ID = 64
_ID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-")
_C = Card(id="")
_U = User(id="")


def _refuse_unknown(data: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise named(f"unknown key{plural} {', '.join(map(repr, unknown))} {where}")


def _name(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused("a string is required")
    if len(value) > MAX_NAME:
        raise Refused(f"longer than {MAX_NAME} characters")
    if any(ord(ch) < 32 for ch in value):
        raise Refused("control characters are not allowed")
    return value


def _rfid(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Refused("an RFID/PIN (string) is required")
    text = str(value).strip()
    if not text:
        raise Refused("an RFID/PIN cannot be empty")
    if len(text) > MAX_RFID:
        raise Refused(f"longer than {MAX_RFID} characters")
    if any(ord(ch) <= 32 or ord(ch) == 127 for ch in text):
        raise Refused("spaces and control characters are not allowed")
    return text


def _card_phases(value: Any) -> int:
    used = integer(value)
    if not 0 <= used <= 7:
        raise named("", " must be 0..7")
    return used


_NAME = Lenient(_name, type="string", maxLength=MAX_NAME)


class CardShape(Body):
    """An RFID card or PIN of a user."""

    used_phases: Annotated[int, Lenient(_card_phases, type="integer", minimum=0, maximum=7),
                           ui(advanced=True)] = _C.used_phases
    """The phases a car of this card charges on (a bit mask: 1 = L1, 2 = L2, 4 = L3);
    `0`: the EVSE's setting."""
    id: Annotated[str, Lenient(_rfid, type="string", minLength=1, maxLength=MAX_RFID), ui()]
    """The card's RFID or the PIN (no spaces); unique among all users."""
    name: Annotated[str, _NAME, ui()] = _C.name
    """A name for the card."""
    ac_auth: Annotated[bool, flag(), ui(advanced=True)] = _C.ac_auth
    """The card authorises charging."""
    ac_ovch: Annotated[bool, flag(), ui(advanced=True)] = _C.ac_ovch
    """Presented during the user's own session, the card switches charging off and on
    again."""

    @model_validator(mode="before")
    @classmethod
    def _known_and_id(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise message(cls.not_object)
        _refuse_unknown(data, cls._known_keys, "in ")
        if "id" not in data:
            raise named("", ".id is required")
        return data

    def card(self) -> Card:
        return Card(id=self.id, name=self.name, ac_auth=self.ac_auth, ac_ovch=self.ac_ovch,
                    used_phases=self.used_phases)



def _cards(value: Any) -> Any:
    if not isinstance(value, list):
        raise Refused("a list of objects is required")
    if len(value) > MAX_CARDS_PER_USER:
        raise Refused(f"no more than {MAX_CARDS_PER_USER} entries")
    return value


def _dev_ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Refused("a list of EVSE ids is required")
    if len(value) > MAX_DEV_IDS:
        raise Refused(f"no more than {MAX_DEV_IDS} entries")
    out: list[str] = []
    for v in value:
        if not isinstance(v, str) or not v.strip():
            raise Refused(f"{v!r} is not a device id")
        dev_id = v.strip().upper()
        if dev_id not in out:
            out.append(dev_id)
    return tuple(out)


def _user_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Refused("a user id (string) is required")
    text = clean(str(value))
    if not text or len(text) > MAX_USER_ID or not set(text) <= _ID_CHARS:
        raise Refused(f"{text[:70]!r} is not a valid user id")
    return text


def _body_id(value: Any) -> str | None:
    return None if value is None or value == "" else _user_id(value)  # None: a new user


class UserBody(Body):
    """A user: who may charge where, with which cards, under which rules."""

    id: Annotated[str | None, Lenient(_body_id, type="string", pattern="^[0-9A-Za-z_-]{1,64}$"),
                  ui(default=False)] = None
    """The user's id (1 to 64 letters, digits, `_` or `-`); with it the user reads and
    changes their own object without the admin password. Missing or empty: a new user,
    with a new id."""
    name: Annotated[str, _NAME, ui()] = _U.name
    """The user's name."""
    display: Annotated[bool, flag(), ui()] = _U.display
    """Others may see the name as the user of an EVSE's session (get_dev_info)."""
    dev_ids: Annotated[tuple[str, ...], Lenient(_dev_ids, type="array",
                                                 items={"type": "string"},
                                                 maxItems=MAX_DEV_IDS), ui()] = _U.dev_ids
    """The EVSEs the user may charge at (set by the admin only)."""
    rfids: Annotated[tuple[CardShape, ...], BeforeValidator(_cards), ui()] = ()
    """The user's cards and PINs."""
    charging_rules: Annotated[tuple[dict[str, Any], ...], rule_list(), ui(advanced=True)] = (
        _U.charging_rules)
    """The user's charging rules, classic form (see rules.md)."""

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            _refuse_unknown(data, cls._known_keys, "in the user object")
        return data


USER_KEYS = frozenset(UserBody.model_fields)
CARD_KEYS = frozenset(CardShape.model_fields)


def parse_user_id(value: Any, name: str = "id") -> str:
    """A user id given as a query parameter `name`, or ApiError 400 naming it."""
    try:
        return _user_id(value)
    except Refused as exc:
        raise ApiError(400, f"{name}: {exc}") from None


def user_id(value: Any) -> str | None:
    """The `id` of a set_user body (None: a new user), or ApiError 400."""
    return check(UserBody, {"id": value}).id


def dev_ids(value: Any) -> tuple[str, ...]:
    """The `dev_ids` of a set_user body, or ApiError 400."""
    return check(UserBody, {"dev_ids": value}).dev_ids


def user_changes(doc: Mapping[str, Any], base: User) -> User:
    """`base` with the fields `doc` carries (not its id), or ApiError 400."""
    shape = check(UserBody, doc)
    given = shape.model_fields_set
    return User(
        id=base.id,
        name=shape.name if "name" in given else base.name,
        display=shape.display if "display" in given else base.display,
        dev_ids=shape.dev_ids if "dev_ids" in given else base.dev_ids,
        rfids=tuple(c.card() for c in shape.rfids) if "rfids" in given else base.rfids,
        charging_rules=shape.charging_rules if "charging_rules" in given
        else base.charging_rules)
