"""User commands: get_new_user_id, get_users, get_user, set_user, del_user.

The user object has the documented shape: id, name, display, dev_ids, rfids
[{id, name, ac_auth, ac_ovch, used_phases}], charging_rules. A user may read and change
their own object with their user id instead of the admin password, except `dev_ids`
(which EVSEs they may use): that stays with the admin.

Every input is validated in full before anything is written (the rule formulas are
compiled in the worker thread first, api/offload.py); a refused request changes nothing.
This module must never show one user's data to another, nor tell a caller without the
admin password whose an RFID/PIN is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chargebrain.api import auth, formula_texts
from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.offload import prepare_request_formulas
from chargebrain.api.params import clean, parse_bool, parse_int, refuse_unknown
from chargebrain.api.throttle import Secret
from chargebrain.core.formula import prepared
from chargebrain.core.formula.cache import Prepared
from chargebrain.core.rules import validate_rules
from chargebrain.manager.users import (
    MAX_CARDS_PER_USER,
    Card,
    DuplicateCard,
    User,
    UserDirectory,
    UserError,
    card_key,
)

MAX_NAME = 100
MAX_RFID = 64
MAX_DEV_IDS = 1000
_ID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-")


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "display": user.display,
        "dev_ids": list(user.dev_ids),
        "rfids": [{"id": c.id, "name": c.name, "ac_auth": c.ac_auth, "ac_ovch": c.ac_ovch,
                   "used_phases": c.used_phases} for c in user.rfids],
        "charging_rules": list(user.charging_rules),
    }


# The keys a user object and a card may carry: those user_json shows (all of them can be
# set). Anything else sent to set_user is refused, naming it.
_SAMPLE = user_json(User(id="0", rfids=(Card(id="0"),)))
USER_KEYS = frozenset(_SAMPLE)
CARD_KEYS = frozenset(_SAMPLE["rfids"][0])


def _users(req: Request) -> UserDirectory:
    return req.app.users


def parse_user_id(value: Any, name: str = "id") -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ApiError(400, f"{name}: a user id (string) is required")
    text = clean(str(value))
    if not text or len(text) > 64 or not set(text) <= _ID_CHARS:
        raise ApiError(400, f"{name}: {text[:70]!r} is not a valid user id")
    return text


def _text(value: Any, name: str, limit: int = MAX_NAME) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{name}: a string is required")
    if len(value) > limit:
        raise ApiError(400, f"{name}: longer than {limit} characters")
    if any(ord(ch) < 32 for ch in value):
        raise ApiError(400, f"{name}: control characters are not allowed")
    return value


def _rfid_text(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ApiError(400, f"{name}: an RFID/PIN (string) is required")
    text = str(value).strip()
    if not text:
        raise ApiError(400, f"{name}: an RFID/PIN cannot be empty")
    if len(text) > MAX_RFID:
        raise ApiError(400, f"{name}: longer than {MAX_RFID} characters")
    if any(ord(ch) <= 32 or ord(ch) == 127 for ch in text):
        raise ApiError(400, f"{name}: spaces and control characters are not allowed")
    return text


def _card(value: Any, index: int) -> Card:
    where = f"rfids[{index}]"
    if not isinstance(value, Mapping):
        raise ApiError(400, f"{where}: an object is required")
    refuse_unknown(value, CARD_KEYS, f"in {where}")
    if "id" not in value:
        raise ApiError(400, f"{where}.id is required")
    used = parse_int(value.get("used_phases", 0), f"{where}.used_phases")
    if not 0 <= used <= 7:
        raise ApiError(400, f"{where}.used_phases must be 0..7")
    return Card(
        id=_rfid_text(value["id"], f"{where}.id"),
        name=_text(value.get("name", ""), f"{where}.name"),
        ac_auth=parse_bool(value.get("ac_auth", True), f"{where}.ac_auth"),
        ac_ovch=parse_bool(value.get("ac_ovch", False), f"{where}.ac_ovch"),
        used_phases=used,
    )


def _cards(value: Any) -> tuple[Card, ...]:
    if not isinstance(value, list):
        raise ApiError(400, "rfids: a list of objects is required")
    if len(value) > MAX_CARDS_PER_USER:
        raise ApiError(400, f"rfids: no more than {MAX_CARDS_PER_USER} entries")
    return tuple(_card(v, i) for i, v in enumerate(value))


def _dev_ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ApiError(400, "dev_ids: a list of EVSE ids is required")
    if len(value) > MAX_DEV_IDS:
        raise ApiError(400, f"dev_ids: no more than {MAX_DEV_IDS} entries")
    out: list[str] = []
    for v in value:
        if not isinstance(v, str) or not v.strip():
            raise ApiError(400, f"dev_ids: {v!r} is not a device id")
        dev_id = v.strip().upper()
        if dev_id not in out:
            out.append(dev_id)
    return tuple(out)


def _rules(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ApiError(400, "charging_rules: a list of rule objects is required")
    problems = validate_rules(value)
    if problems:
        raise ApiError(400, f"charging_rules: {'; '.join(problems)}")
    return tuple(dict(r) for r in value)


def parse_user(doc: Mapping[str, Any], base: User) -> User:
    """`base` with the fields present in `doc` (an unknown field is a 400)."""
    refuse_unknown(doc, USER_KEYS, "in the user object")
    name = _text(doc["name"], "name") if "name" in doc else base.name
    display = parse_bool(doc["display"], "display") if "display" in doc else base.display
    dev_ids = _dev_ids(doc["dev_ids"]) if "dev_ids" in doc else base.dev_ids
    rfids = _cards(doc["rfids"]) if "rfids" in doc else base.rfids
    rules = _rules(doc["charging_rules"]) if "charging_rules" in doc else base.charging_rules
    return User(id=base.id, name=name, display=display, dev_ids=dev_ids, rfids=rfids,
                charging_rules=rules)


def _id_param(req: Request) -> str | None:
    for key in ("id", "user_id"):
        if key in req.params:
            return parse_user_id(req.params[key], key)
    return None


async def own_user(req: Request, user_id: str | None) -> User | None:
    """The user whose id the caller gave (a wrong id uses the caller's budget of wrong
    guesses; with none left: the 429 ApiError, the id unchecked)."""
    if user_id is None:
        return None
    async with auth.guarded(req.app, req.caller.remote, Secret.USER_ID) as attempt:
        user = _users(req).get(user_id)
        attempt.failed = user is None
    return user


@command("get_new_user_id", Permission.ADMIN, "A new unique user id (JSON string)")
async def get_new_user_id(req: Request) -> Any:
    return _users(req).new_id()


@command("get_users", Permission.ADMIN, "All users")
async def get_users(req: Request) -> Any:
    return [user_json(u) for u in _users(req).all()]


@command("get_user", Permission.USER, "One user (admin, or the user with their own id)")
async def get_user(req: Request) -> Any:
    user_id = _id_param(req)
    if req.caller.is_admin:
        if user_id is None:
            raise ApiError(400, "id is required")
        user = _users(req).get(user_id)
        if user is None:
            raise ApiError(404, "no such user")
        return user_json(user)
    user = await own_user(req, user_id)
    if user is None:
        return auth.challenge("get_user needs the admin password or a valid user id")
    return user_json(user)


@command("set_user", Permission.USER,
         "Create (admin) or change a user; a user may change their own object except dev_ids")
async def set_user(req: Request) -> Any:
    body = req.body
    if req.caller.is_admin:
        if not isinstance(body, Mapping):
            raise ApiError(400, "a JSON user object is required in the request body")
        users = _users(req)
        user_id = parse_user_id(body["id"]) if body.get("id") not in (None, "") else None
        compiled = await _compile_rules(req, body)
        base = users.get(user_id) if user_id else None
        if base is None:
            base = User(id=user_id or users.new_id())
        with prepared(compiled):
            user = parse_user(body, base)
        return _save(req, user)
    given = body.get("id") if isinstance(body, Mapping) else None
    user_id = parse_user_id(given) if given not in (None, "") else None
    known = await own_user(req, user_id)
    if known is None or not isinstance(body, Mapping):
        return auth.challenge("set_user needs the admin password or a valid user id")
    compiled = await _compile_rules(req, body)
    current = _users(req).get(known.id)  # as it is after the wait
    if current is None:
        return auth.challenge("set_user needs the admin password or a valid user id")
    if "dev_ids" in body and set(_dev_ids(body["dev_ids"])) != set(current.dev_ids):
        raise ApiError(403, "only the admin can change which EVSEs a user may use (dev_ids)")
    with prepared(compiled):
        user = parse_user(body, current)
    changed = User(id=current.id, name=user.name, display=user.display,
                   dev_ids=current.dev_ids, rfids=user.rfids,
                   charging_rules=user.charging_rules)
    new_cards = {card_key(c.id) for c in changed.rfids} - {
        card_key(c.id) for c in current.rfids}
    if not new_cards:
        return _save(req, changed)
    # Whether an RFID/PIN is taken tells something about other users: a user adding cards
    # guesses within their budget of wrong guesses, as with enter_rfid.
    async with auth.guarded(req.app, req.caller.remote, Secret.CARD) as attempt:
        try:
            _users(req).save(changed)
        except DuplicateCard as exc:
            attempt.failed = True
            raise ApiError(400, str(exc)) from None
        except UserError as exc:
            raise ApiError(400, str(exc)) from None
    return user_json(changed)


async def _compile_rules(req: Request, body: Mapping[str, Any]) -> Prepared:
    """The user's rule formulas, compiled in the worker thread (only once the caller is
    known: an unknown caller gets no compiling done)."""
    return await prepare_request_formulas(req.app.worker, lambda: formula_texts.user_body(body))


def _save(req: Request, user: User) -> dict[str, Any]:
    try:
        _users(req).save(user)
    except UserError as exc:
        raise ApiError(400, str(exc)) from None
    return user_json(user)


@command("del_user", Permission.ADMIN, "Delete a user")
async def del_user(req: Request) -> Any:
    user_id = _id_param(req)
    if user_id is None:
        raise ApiError(400, "id is required")
    if not _users(req).delete(user_id):
        raise ApiError(404, "no such user")
    return "ok"

