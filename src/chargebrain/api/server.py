"""The HTTP server: `/cnf?cmd=…` dispatch, authentication, JSON answers, the web UI
(`/`, `/ui/…` from api/static.py) and its live updates (`/events`, api/live.py).

Parameters come from the query string and, for POST, from a form body; a JSON body is
parsed once and handed to the command (both bodies are parsed strictly, in `bodies.py`).
Every failure is a JSON error with a 4xx status (also an unknown path, a wrong method or
a body over the size limit); an unexpected exception is logged and answered 500 without
a traceback. Requests that the HTTP parser refuses are answered in `http_errors.py`; the
request forms that mean the same as the plain ones (`//cnf`, an encoded query) are made
plain in `request_forms.py`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiDict

from chargebrain.api import auth
from chargebrain.api.answers import challenge, error_response, json_response
from chargebrain.api.bodies import form_fields, json_body
from chargebrain.api.commands import COMMANDS, Permission, Request
from chargebrain.api.errors import ApiError
from chargebrain.api.live import LiveFeed, LogTail, handle_events
from chargebrain.api.offload import Worker
from chargebrain.api.request_forms import plain_request
from chargebrain.api.static import handle_index, handle_ui_file

if TYPE_CHECKING:
    from chargebrain.api.services import Services

log = logging.getLogger("chargebrain.http")

MAX_PATH_IN_ERROR = 200
# A JSON body up to this size is decoded on the event loop (a few ms at worst).
INLINE_JSON_BYTES = 256 * 1024


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own error answers (unknown path, wrong method, body too large) as JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"no such page: {request.path[:MAX_PATH_IN_ERROR]}"
        elif exc.status == 405:
            message = f"method {request.method} is not allowed here"
        else:
            message = exc.text or exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(message, exc.status, headers=headers or None)


async def _params(
    request: web.Request, worker: Worker,
) -> tuple[dict[str, str], MultiDict[str], Any, bytes, str | None]:
    """Query and form parameters (the first value of each, and all of them in order),
    the JSON body (or why it is not JSON), the raw body. A body over INLINE_JSON_BYTES is
    decoded in the worker thread."""
    multi: MultiDict[str] = MultiDict(request.query)
    raw = b""
    body: Any = None
    body_error: str | None = None
    if request.method == "POST" and request.can_read_body:
        try:
            raw = await request.read()
        except (web.RequestPayloadError, ConnectionError) as exc:
            # A body that does not decode, or a client gone while sending it.
            log.debug("the body from %s could not be read: %s", request.remote, exc)
            raise ApiError(400, "the request body could not be read") from None
        ctype = request.content_type
        looks_json = raw.lstrip()[:1] in (b"{", b"[")
        # `curl -d '{…}'` sends JSON labelled as a form: the body decides, not the label.
        if ctype == "application/x-www-form-urlencoded" and not looks_json:
            for key, field_value in form_fields(raw, request.charset):
                multi.add(key, field_value)
        else:
            try:
                if len(raw) > INLINE_JSON_BYTES:
                    body = await worker.run(json_body, raw, True)
                else:
                    body = json_body(raw)
            except ApiError as exc:
                body_error = exc.message
    params: dict[str, str] = {}
    for key, value in multi.items():
        params.setdefault(key, value)
    return params, multi, body, raw, body_error


class HttpApi:
    """The aiohttp application serving the API and the UI."""

    def __init__(self, app: Services) -> None:
        self.app = app
        self.web = web.Application(
            client_max_size=2 * 1024 * 1024, middlewares=[json_errors, plain_request])
        self.web.router.add_route("*", "/cnf", self.handle_cnf)
        self.web.router.add_get("/ui/en/sim.htm", self.handle_sim_page)
        self.live = LiveFeed()
        self.log_tail = LogTail()
        self.web.router.add_get("/", handle_index)
        self.web.router.add_get("/ui/{path:.+}", handle_ui_file)
        self.web.router.add_get("/events", self.handle_events)

    async def handle_events(self, request: web.Request) -> web.StreamResponse:
        return await handle_events(self.app, self.live, self.log_tail, request)

    async def handle_cnf(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            return error_response("use GET or POST", 405, headers={"Allow": "GET, POST"})
        try:
            params, multi, body, raw, body_error = await _params(request, self.app.worker)
            name = params.get("cmd", "").strip()
            cmd = COMMANDS.get(name)
            if cmd is None:
                raise ApiError(404, f"unknown command {name!r}" if name else "cmd is required")
            caller = await auth.identify(self.app, request)
            req = Request(self.app, request.method, params, body, raw, caller, body_error,
                          multi_params=multi)
            if cmd.permission is Permission.ADMIN and not caller.is_admin:
                await auth.penalise(self.app, caller)
                return challenge(f"{name} needs the admin password")
            result = await cmd.handler(req)
            if not name.startswith("get_"):
                # It may have changed what get_dev_info shows (api/dev_info_cache.py).
                self.app.manager.signal.changed()
        except ApiError as exc:
            return json_response(exc.body, status=exc.status, headers=exc.headers)
        except web.HTTPException:
            raise  # answered as JSON by `json_errors` (e.g. a body over the size limit)
        except Exception:
            log.exception("command %s failed", request.query.get("cmd", "?"))
            return error_response("internal error", 500)
        if isinstance(result, web.StreamResponse):
            return result
        return json_response(result)

    async def handle_sim_page(self, request: web.Request) -> web.StreamResponse:
        try:
            caller = await auth.identify(self.app, request)
        except ApiError as exc:
            return json_response(exc.body, status=exc.status, headers=exc.headers)
        if not caller.is_admin:
            await auth.penalise(self.app, caller)
            return challenge("the simulation page needs the admin password")
        return web.Response(text=SIM_PAGE, content_type="text/html")


SIM_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>chargebrain simulation</title>
</head><body><h1>chargebrain simulation</h1>
<p>Simulated devices are HTTP-input devices whose name starts with <code>Sim-</code>.</p>
</body></html>"""
