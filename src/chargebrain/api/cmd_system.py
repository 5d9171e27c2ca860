"""System commands: licence consent, the admin password, diagnostic logging.

accept_license stores the licence acceptance and the usage-statistics consent (reported
by accept_license and get_license); change_admin_pwd replaces the admin password after
checking the old one (within the caller's budget of wrong guesses, see api/throttle.py);
set_diag_logging records a DEBUG log for five minutes, which get_diag_log downloads.

This module must never store or answer a password in clear text, never accept a new
password without the old one, and never remove the password while the server listens
beyond loopback (unless it was started with --allow-insecure).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from chargebrain.api import auth
from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.params import parse_bool, require

log = logging.getLogger("chargebrain.system")

LICENSE_KEY = "license"


def _license(req: Request) -> dict[str, Any]:
    stored = req.app.store.get_setting(LICENSE_KEY, {})
    stored = stored if isinstance(stored, dict) else {}
    return {
        "license_accepted": bool(stored.get("license_accepted", False)),
        "allow_usage_stats": bool(stored.get("allow_usage_stats", False)),
    }


@command("accept_license", Permission.ADMIN,
         "Accept the licence (acc=1) and allow or forbid usage statistics (allow_usage_stats)")
async def accept_license(req: Request) -> Any:
    accepted = parse_bool(require(req.params, "acc"), "acc")
    current = _license(req)
    stats = (parse_bool(req.params["allow_usage_stats"], "allow_usage_stats")
             if "allow_usage_stats" in req.params else current["allow_usage_stats"])
    value = {"license_accepted": accepted, "allow_usage_stats": stats,
             "time": round(req.app.clock.now())}
    req.app.store.set_setting(LICENSE_KEY, value)
    log.info("licence %s, usage statistics %s", "accepted" if accepted else "not accepted",
             "allowed" if stats else "forbidden")
    return _license(req)


@command("get_license", Permission.PUBLIC,
         "Whether the licence and usage statistics were accepted")
async def get_license(req: Request) -> Any:
    return _license(req)


@command("change_admin_pwd", Permission.ADMIN,
         "Change the admin password (old_pwd must match; an empty new_pwd removes it)")
async def change_admin_pwd(req: Request) -> Any:
    new = req.params.get("new_pwd")
    if new is None:
        raise ApiError(400, "new_pwd is required")
    problem = auth.password_problem(new)
    if problem is not None:
        raise ApiError(400, f"new_pwd: {problem}")
    if new == "" and not auth.may_run_without_password(req.app):
        raise ApiError(403, "the admin password cannot be removed while the server listens "
                       f"on {req.app.http_host}: every client on the network would "
                       "be admin (only a server started with --allow-insecure allows it)")
    old = req.params.get("old_pwd", "")
    check = await auth.check_admin_password(req.app, req.caller.remote, auth.ADMIN_USER, old)
    if check.refusal is not None:
        raise auth.too_many(check.refusal)
    if check.verdict is not auth.Verdict.RIGHT:
        raise ApiError(403, "old_pwd is not the current admin password")
    auth.set_admin_password(req.app.store, new)
    if new:
        log.info("admin password changed")
    else:
        log.warning("admin password removed: every client is admin now")
    return "ok"


@command("set_diag_logging", Permission.ADMIN,
         "Start (enable=1) or stop (enable=0) diagnostic logging; stops after 5 minutes")
async def set_diag_logging(req: Request) -> Any:
    enable = parse_bool(require(req.params, "enable"), "enable")
    diag = req.app.diaglog
    if enable:
        diag.start()
    else:
        diag.stop()
    return {"enabled": diag.enabled, "remaining_s": round(diag.remaining())}


@command("get_diag_log", Permission.ADMIN, "Download the diagnostic log (text)")
async def get_diag_log(req: Request) -> Any:
    return web.Response(
        text=req.app.diaglog.text(), content_type="text/plain", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="chargebrain-diag.log"'})
