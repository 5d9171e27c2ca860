"""Session commands: enter_rfid, override_device, soft_meter and the transaction CSV.

enter_rfid is public (wallbox terminals and Home Assistant call it without credentials);
override_device takes the admin password or, for what the user may do, an RFID/PIN of
the user of the running session; get_transactions gives the admin every transaction and
a user, by their user id, their own. Every RFID/PIN and user id is checked within the
caller's budget of wrong guesses (see api/throttle.py): a wrong one uses budget, and
with none left it is not checked at all (429).

Every parameter is checked before anything changes. This module must never show a
caller without the admin password another user's transactions.
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, datetime
from typing import Any, overload

from aiohttp import web

from chargebrain.api import auth
from chargebrain.api.cmd_users import own_user
from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.params import clean, parse_number
from chargebrain.api.shapes.users import parse_user_id
from chargebrain.api.throttle import Secret
from chargebrain.manager.sessions import Outcome, Refused, SessionManager, Transaction
from chargebrain.manager.state import (
    OVERRIDE_DISABLE_CHARGING,
    OVERRIDE_NO_EVSE_RULES,
    OVERRIDE_NO_USER_RULES,
    DeviceRuntime,
)

log = logging.getLogger("chargebrain.sessions")

MAX_RFID = 64
MAX_OVERRIDE_MA = 1_000_000
FLAG_BITS = {"C": OVERRIDE_DISABLE_CHARGING, "E": OVERRIDE_NO_EVSE_RULES,
             "U": OVERRIDE_NO_USER_RULES}
ADMIN_ONLY_FLAGS = frozenset("Ee")
REFUSED_STATUS = {"unknown": 403, "forbidden": 403, "busy": 409, "absent": 409}
CSV_COLUMNS = ("id", "dev_id", "user_id", "user_name", "rfid", "start", "end", "duration_s",
               "start_wh", "end_wh", "energy_wh", "max_power_w")


def _sessions(req: Request) -> SessionManager:
    return req.app.sessions


@overload
def evse_param(req: Request) -> DeviceRuntime: ...
@overload
def evse_param(req: Request, required: bool) -> DeviceRuntime | None: ...


def evse_param(req: Request, required: bool = True) -> DeviceRuntime | None:
    """The EVSE the request's `dev_id` names: 400 without one (None if not `required`),
    404 for an unknown device, 400 for a device that is not an EVSE."""
    dev_id = clean(req.params.get("dev_id", "")).upper()
    if not dev_id:
        if required:
            raise ApiError(400, "dev_id is required")
        return None
    rt = req.app.manager.devices.get(dev_id)
    if rt is None:
        raise ApiError(404, f"no device {dev_id}")
    if rt.evse is None:
        raise ApiError(400, f"{dev_id} is not an EVSE")
    return rt


def _rfid(req: Request, required: bool) -> str | None:
    if "rfid" not in req.params:
        if required:
            raise ApiError(400, "rfid is required")
        return None
    text = clean(req.params["rfid"])
    if not text:
        if required:
            raise ApiError(400, "rfid is required")
        return None
    if len(text) > MAX_RFID or any(ord(ch) <= 32 or ord(ch) == 127 for ch in text):
        raise ApiError(400, "rfid: not a valid RFID/PIN")
    return text


def _outcome_json(outcome: Outcome, rt: DeviceRuntime) -> dict[str, Any]:
    ev = rt.evse
    out: dict[str, Any] = {
        "dev_id": outcome.dev_id,
        "user": outcome.user.name,
        "authorised": outcome.authorised,
        "overrides": ev.overrides if ev is not None else 0,
    }
    if outcome.pending:
        out["pending"] = True
    return out


@command("enter_rfid", Permission.PUBLIC,
         "Present an RFID/PIN, at dev_id or at the EVSE waiting for authorisation")
async def enter_rfid(req: Request) -> Any:
    rfid = _rfid(req, required=True)
    assert rfid is not None
    rt = evse_param(req, required=False)
    sessions = _sessions(req)
    async with auth.guarded(req.app, req.caller.remote, Secret.CARD) as attempt:
        try:
            outcome = sessions.present(rfid, rt.dev_id if rt is not None else None)
        except Refused as exc:
            attempt.failed = exc.kind == "unknown"
            log.warning("enter_rfid from %s at %s refused: %s", req.caller.remote or "?",
                        rt.dev_id if rt is not None else "any EVSE", exc.message)
            raise ApiError(REFUSED_STATUS[exc.kind], exc.message) from None
    return _outcome_json(outcome, req.app.manager.devices[outcome.dev_id])


def _flags(text: str) -> tuple[int, int]:
    """(bits to set, bits to clear) from e.g. "Cu"."""
    set_bits = clear_bits = 0
    for ch in text:
        bit = FLAG_BITS.get(ch.upper())
        if bit is None:
            raise ApiError(400, f"flags: {ch!r} is not one of C c E e U u")
        if ch.isupper():
            set_bits |= bit
            clear_bits &= ~bit
        else:
            clear_bits |= bit
            set_bits &= ~bit
    return set_bits, clear_bits


def _mamps(req: Request, rt: DeviceRuntime) -> tuple[int | None, bool]:
    """(limit in mA, clear the limit) from `mamps`; 0 or -1 removes the limit."""
    if "mamps" not in req.params or not clean(req.params["mamps"]):
        return None, False
    value = parse_number(req.params["mamps"], "mamps")
    if value in (0, -1):
        return None, True
    minimum = rt.config.min_charging_cur
    if value < 0:
        raise ApiError(400, "mamps cannot be negative (0 removes the limit)")
    if value < minimum:
        raise ApiError(400, f"mamps must be 0 (no limit) or at least {minimum}, "
                       f"the minimum charging current of {rt.dev_id}")
    if value > MAX_OVERRIDE_MA:
        raise ApiError(400, f"mamps cannot be more than {MAX_OVERRIDE_MA}")
    return round(value), False


@command("override_device", Permission.USER,
         "Override an EVSE until unplug: flags C/c E/e U/u, mamps (admin or the session's RFID)")
async def override_device(req: Request) -> Any:
    sessions = _sessions(req)
    rfid = None if req.caller.is_admin else _rfid(req, required=False)
    if not req.caller.is_admin and rfid is None:
        return auth.challenge("override_device needs the admin password or the RFID/PIN "
                              "of the user of the running session")
    rt = evse_param(req)
    assert rt.evse is not None
    if rfid is not None:
        async with auth.guarded(req.app, req.caller.remote, Secret.CARD) as attempt:
            user = sessions.session_user(rt, rfid)
            attempt.failed = user is None
        if user is None:
            return auth.challenge(f"the RFID/PIN is not that of the user charging at {rt.dev_id}")
    flags = clean(req.params.get("flags", ""))
    set_bits, clear_bits = _flags(flags)
    ov_cur, clear_current = _mamps(req, rt)
    if not flags and ov_cur is None and not clear_current:
        raise ApiError(400, "flags or mamps is required")
    if not req.caller.is_admin and ADMIN_ONLY_FLAGS & set(flags):
        return auth.challenge("flags E and e need the admin password")
    sessions.change_overrides(rt, set_bits=set_bits, clear_bits=clear_bits, ov_cur=ov_cur,
                              clear_current=clear_current)
    ev = rt.evse
    return {"dev_id": rt.dev_id, "overrides": ev.overrides,
            "ov_cur": ev.ov_cur if ev.ov_cur is not None else 0}


@command("soft_meter", Permission.ADMIN,
         "Read (and with val=Wh set) an EVSE's soft meter; answers the old reading")
async def soft_meter(req: Request) -> Any:
    rt = evse_param(req)
    value: float | None = None
    if "val" in req.params and clean(req.params["val"]):
        value = parse_number(req.params["val"], "val")
        if value < 0 or value > 1e12:
            raise ApiError(400, "val must be between 0 and 1e12 Wh")
    old = _sessions(req).soft_meter(rt, value)
    return round(old)


def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(text: str) -> str:
    """Text as a spreadsheet will not run it as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def transactions_csv(rows: list[Transaction], names: dict[str, str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for t in rows:
        end = t.end_time if not t.open else None
        last = t.end_time if t.end_time is not None else t.updated_time
        duration = max(0.0, (last or t.start_time) - t.start_time)
        end_wh = t.end_wh if t.end_wh is not None else t.start_wh
        writer.writerow([
            t.id, t.dev_id, t.user_id, _cell(names.get(t.user_id, t.user_name)), _cell(t.rfid),
            _iso(t.start_time), _iso(end), round(duration), round(t.start_wh), round(end_wh),
            round(t.energy_wh), round(t.max_power_w),
        ])
    return buf.getvalue()


@command("get_transactions", Permission.USER,
         "Transactions as CSV: all (admin) or the caller's own (user_id=)")
async def get_transactions(req: Request) -> Any:
    user_id = parse_user_id(req.params["user_id"], "user_id") if clean(
        req.params.get("user_id", "")) else None
    if not req.caller.is_admin:
        user = await own_user(req, user_id)
        if user is None:
            return auth.challenge("get_transactions needs the admin password or a user_id")
    names = {u.id: u.name for u in req.app.users.all()}
    text = transactions_csv(_sessions(req).transactions(user_id), names)
    return web.Response(
        text=text, content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="transactions.csv"'})
