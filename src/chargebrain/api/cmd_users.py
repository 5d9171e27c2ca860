"""User commands: get_new_user_id, get_users, get_user, set_user, del_user.

The user object has the documented shape: id, name, display, dev_ids, rfids
[{id, name, ac_auth, ac_ovch, used_phases}], charging_rules. A user may read and change
their own object with their user id instead of the admin password, except `dev_ids`
(which EVSEs they may use): that stays with the admin.

Every input is validated in full before anything is written, as api/shapes/users.py
declares it (the rule formulas are compiled in the worker thread first, api/offload.py);
a refused request changes nothing.
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
from chargebrain.api.params import clean
from chargebrain.api.shapes.users import dev_ids, parse_user_id, user_changes
from chargebrain.api.shapes.users import user_id as user_id_of
from chargebrain.api.throttle import Secret
from chargebrain.core.formula import prepared
from chargebrain.core.formula.cache import Prepared
from chargebrain.manager.users import (
    DuplicateCard,
    User,
    UserDirectory,
    UserError,
    card_key,
)


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


def _users(req: Request) -> UserDirectory:
    return req.app.users


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


@command("get_user", Permission.USER,
         "One user (admin, or the user with their own id or one of their RFIDs/PINs)")
async def get_user(req: Request) -> Any:
    user_id = _id_param(req)
    if req.caller.is_admin:
        if user_id is None:
            raise ApiError(400, "id is required")
        user = _users(req).get(user_id)
        if user is None:
            raise ApiError(404, "no such user")
        return user_json(user)
    if user_id is None and "rfid" in req.params:
        user = await card_user(req, req.params["rfid"])
    else:
        user = await own_user(req, user_id)
    if user is None:
        return auth.challenge("get_user needs the admin password, a valid user id or "
                              "RFID/PIN")
    return user_json(user)


async def card_user(req: Request, text: str) -> User | None:
    """The user one of whose RFIDs/PINs the caller gave (the web UI's log-in with a PIN);
    a wrong one uses the caller's budget of wrong guesses, as at enter_rfid."""
    rfid = clean(text)
    if not rfid or len(rfid) > 64:
        return None
    async with auth.guarded(req.app, req.caller.remote, Secret.CARD) as attempt:
        found = _users(req).find_card(rfid)
        attempt.failed = found is None
    return None if found is None else found[0]


@command("set_user", Permission.USER,
         "Create (admin) or change a user; a user may change their own object except dev_ids")
async def set_user(req: Request) -> Any:
    body = req.body
    if req.caller.is_admin:
        if not isinstance(body, Mapping):
            raise ApiError(400, "a JSON user object is required in the request body")
        users = _users(req)
        user_id = user_id_of(body.get("id"))
        compiled = await _compile_rules(req, body)
        base = users.get(user_id) if user_id else None
        if base is None:
            base = User(id=user_id or users.new_id())
        with prepared(compiled):
            user = user_changes(body, base)
        return _save(req, user)
    user_id = user_id_of(body.get("id")) if isinstance(body, Mapping) else None
    known = await own_user(req, user_id)
    if known is None or not isinstance(body, Mapping):
        return auth.challenge("set_user needs the admin password or a valid user id")
    compiled = await _compile_rules(req, body)
    current = _users(req).get(known.id)  # as it is after the wait
    if current is None:
        return auth.challenge("set_user needs the admin password or a valid user id")
    if "dev_ids" in body and set(dev_ids(body["dev_ids"])) != set(current.dev_ids):
        raise ApiError(403, "only the admin can change which EVSEs a user may use (dev_ids)")
    with prepared(compiled):
        user = user_changes(body, current)
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

