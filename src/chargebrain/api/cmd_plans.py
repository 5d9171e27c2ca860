"""Departure plans: `set_plan`, chargebrain's own command (the vendor has none).

`set_plan&dev_id=E1&departure=17:30&req_energy=20000` tells the manager when the car at
an EVSE leaves and how much energy it wants in the session (api/shapes/plans.py declares
the values; docs/load-management.md says what the manager does with them). The admin may
set any EVSE's plan; the user of the EVSE's running session with an RFID/PIN of theirs
(`rfid=`) or their user id (`user_id=`), both checked within the caller's budget of wrong
guesses. Everything is checked before the plan changes; a refused request changes
nothing. The answer is the plan in force: `{"dev_id", "departure", "req_energy"}`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from chargebrain.api import auth
from chargebrain.api.cmd_sessions import evse_param
from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.params import clean
from chargebrain.api.shapes.plans import Departure, plan_body
from chargebrain.api.shapes.users import parse_user_id
from chargebrain.api.throttle import Secret
from chargebrain.manager.plans import MAX_AHEAD_S, clear_plan, plan_of, set_plan
from chargebrain.manager.rules_runtime import local_zone
from chargebrain.manager.state import DeviceRuntime

MAX_RFID = 64
_NO_CREDENTIALS = ("set_plan needs the admin password, or the RFID/PIN (rfid=) or user id "
                   "(user_id=) of the user of the running session")


async def _session_user(req: Request, rt: DeviceRuntime) -> str | None:
    """Why the caller may not set this EVSE's plan (None: they may)."""
    if req.caller.is_admin:
        return None
    ev = rt.evse
    assert ev is not None
    rfid = clean(req.params.get("rfid", ""))
    if rfid:
        if len(rfid) > MAX_RFID or any(ord(ch) <= 32 or ord(ch) == 127 for ch in rfid):
            raise ApiError(400, "rfid: not a valid RFID/PIN")
        async with auth.guarded(req.app, req.caller.remote, Secret.CARD) as attempt:
            user = req.app.sessions.session_user(rt, rfid)
            attempt.failed = req.app.users.find_card(rfid) is None
        if user is None:
            return f"the RFID/PIN is not that of the user charging at {rt.dev_id}"
        return None
    if clean(req.params.get("user_id", "")):
        user_id = parse_user_id(req.params["user_id"], "user_id")
        async with auth.guarded(req.app, req.caller.remote, Secret.USER_ID) as attempt:
            known = req.app.users.get(user_id) is not None
            attempt.failed = not known
        if not known or not ev.plugged or ev.user_id != user_id:
            return f"the user id is not that of the user charging at {rt.dev_id}"
        return None
    return _NO_CREDENTIALS


def _resolve(departure: Departure, now: float) -> float:
    """Unix time of a departure as sent (0: forget it); ApiError 400 when it has passed
    or lies more than 7 days ahead."""
    if departure.minute is not None:
        local = datetime.fromtimestamp(now, local_zone())
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        at = midnight + timedelta(minutes=departure.minute)
        if at.timestamp() <= now:
            at += timedelta(days=1)
        return float(round(at.timestamp()))
    assert departure.at is not None
    if departure.at == 0:
        return 0.0
    if departure.at <= now:
        raise ApiError(400, f"departure: {departure.at:.0f} has passed (now {now:.0f})")
    if departure.at > now + MAX_AHEAD_S:
        raise ApiError(400, "departure: more than 7 days ahead")
    return float(round(departure.at))


@command("set_plan", Permission.USER,
         "Set a session's departure plan: departure, req_energy (admin or the session's user)")
async def set_plan_cmd(req: Request) -> Any:
    if not req.caller.is_admin and not (
            clean(req.params.get("rfid", "")) or clean(req.params.get("user_id", ""))):
        return auth.challenge(_NO_CREDENTIALS)
    rt = evse_param(req)
    fields = req.body if req.body is not None else {
        k: v for k, v in req.params.items() if k not in ("cmd", "dev_id", "rfid", "user_id")}
    body = plan_body(fields)
    if body.departure is None and body.req_energy is None and not body.clear:
        raise ApiError(400, "departure, req_energy or clear is required")
    now = req.app.clock.now()
    departure = _resolve(body.departure, now) if body.departure is not None else None
    refused = await _session_user(req, rt)
    if refused is not None:
        return auth.challenge(refused)
    ev = rt.evse
    assert ev is not None
    if body.clear:
        clear_plan(ev)
    set_plan(ev, departure, body.req_energy)
    req.app.manager.wake()
    plan = plan_of(ev)
    return {"dev_id": rt.dev_id,
            "departure": round(plan.departure) if plan.departure is not None else 0,
            "req_energy": round(plan.energy_wh) if plan.energy_wh is not None else 0}
