"""The HTTP server: `/cnf?cmd=…` dispatch, authentication, JSON answers, static UI.

Parameters come from the query string and, for POST, from a form body; a JSON body is
parsed once and handed to the command. Every failure is a JSON error with a 4xx status;
an unexpected exception is logged and answered 500 without a traceback.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from chargebrain.api import auth
from chargebrain.api.commands import COMMANDS, Permission, Request
from chargebrain.api.errors import ApiError
from chargebrain.api.params import json_body

if TYPE_CHECKING:
    from chargebrain.app import App

log = logging.getLogger("chargebrain.http")

JSON_TYPE = "application/json"


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
        status=status,
        content_type=JSON_TYPE,
        headers=headers,
    )


def _unauthorized(message: str) -> web.Response:
    return json_response(
        {"error": message}, status=401, headers={"WWW-Authenticate": 'Basic realm="chargebrain"'}
    )


async def _params(request: web.Request) -> tuple[dict[str, str], Any, bytes, str | None]:
    """Query and form parameters, the JSON body (or why it is not JSON), the raw body."""
    params: dict[str, str] = {}
    for key, value in request.query.items():
        params.setdefault(key, value)
    raw = b""
    body: Any = None
    body_error: str | None = None
    if request.method == "POST" and request.can_read_body:
        raw = await request.read()
        ctype = request.content_type
        looks_json = raw.lstrip()[:1] in (b"{", b"[")
        # `curl -d '{…}'` sends JSON labelled as a form: the body decides, not the label.
        if ctype == "application/x-www-form-urlencoded" and not looks_json:
            form = await request.post()
            for key, field_value in form.items():
                if isinstance(field_value, str):
                    params.setdefault(key, field_value)
        else:
            try:
                body = json_body(raw)
            except ApiError as exc:
                body_error = exc.message
    return params, body, raw, body_error


class HttpApi:
    """The aiohttp application serving the API and the UI."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.web = web.Application(client_max_size=2 * 1024 * 1024)
        self.web.router.add_route("*", "/cnf", self.handle_cnf)
        self.web.router.add_get("/ui/en/sim.htm", self.handle_sim_page)

    async def handle_cnf(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            return json_response({"error": "use GET or POST"}, status=405)
        try:
            params, body, raw, body_error = await _params(request)
            name = params.get("cmd", "").strip()
            cmd = COMMANDS.get(name)
            if cmd is None:
                raise ApiError(404, f"unknown command {name!r}" if name else "cmd is required")
            caller = await auth.identify(self.app, request)
            req = Request(self.app, request.method, params, body, raw, caller, body_error)
            if cmd.permission is Permission.ADMIN and not caller.is_admin:
                await auth.penalise(self.app, caller)
                return _unauthorized(f"{name} needs the admin password")
            result = await cmd.handler(req)
        except ApiError as exc:
            return json_response(exc.body, status=exc.status)
        except Exception:
            log.exception("command %s failed", request.query.get("cmd", "?"))
            return json_response({"error": "internal error"}, status=500)
        if isinstance(result, web.StreamResponse):
            return result
        return json_response(result)

    async def handle_sim_page(self, request: web.Request) -> web.StreamResponse:
        caller = await auth.identify(self.app, request)
        if not caller.is_admin:
            await auth.penalise(self.app, caller)
            return _unauthorized("the simulation page needs the admin password")
        return web.Response(text=SIM_PAGE, content_type="text/html")


SIM_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>chargebrain simulation</title>
</head><body><h1>chargebrain simulation</h1>
<p>Simulated devices are HTTP-input devices whose name starts with <code>Sim-</code>.</p>
</body></html>"""
