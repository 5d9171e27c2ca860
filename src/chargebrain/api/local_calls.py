"""`/cnf?<query>` run inside the process, without HTTP: the commands of the MQTT API.

A query and a body go through the same command table as an HTTP request, with the same
parsing of parameters and bodies (a JSON body is the command's JSON; any other body is
form fields), and the answer is what the HTTP API would send: a status, a content type
and the body bytes. The caller states who it is; the MQTT API calls as the admin (only
who may publish on the broker reaches it).

This module must never decide who may call: the caller it is given is the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict

from chargebrain.api.answers import JSON_TYPE, json_bytes
from chargebrain.api.bodies import form_fields, json_body
from chargebrain.api.commands import COMMANDS, Caller, Permission, Request
from chargebrain.api.errors import ApiError

if TYPE_CHECKING:
    from chargebrain.api.services import Services

log = logging.getLogger("chargebrain.api")

#: A JSON body above this size is decoded in the worker thread (as over HTTP).
INLINE_JSON_BYTES = 256 * 1024


@dataclass(frozen=True)
class Answer:
    """What the HTTP API would have sent."""

    status: int
    content_type: str
    body: bytes


def _answer(value: object, status: int = 200) -> Answer:
    return Answer(status, JSON_TYPE, json_bytes(value))


async def _request(app: Services, query: str, body: bytes, caller: Caller) -> Request:
    multi: MultiDict[str] = MultiDict(parse_qsl(query, keep_blank_values=True))
    parsed: object = None
    body_error: str | None = None
    if body:
        if body.lstrip()[:1] in (b"{", b"["):
            try:
                if len(body) > INLINE_JSON_BYTES:
                    parsed = await app.worker.run(json_body, body, True)
                else:
                    parsed = json_body(body)
            except ApiError as exc:
                body_error = exc.message
        else:
            for key, value in form_fields(body, "utf-8"):
                multi.add(key, value)
    params: dict[str, str] = {}
    for key, value in multi.items():
        params.setdefault(key, value)
    return Request(app, "POST" if body else "GET", params, parsed, body, caller, body_error,
                   multi_params=multi)


async def call(app: Services, query: str, body: bytes = b"",
               caller: Caller | None = None) -> Answer:
    """Run `/cnf?<query>` with `body` (empty: a GET) as `caller` (default: the admin)."""
    who = caller if caller is not None else Caller(is_admin=True, remote="local")
    try:
        req = await _request(app, query, body, who)
        name = req.params.get("cmd", "").strip()
        cmd = COMMANDS.get(name)
        if cmd is None:
            raise ApiError(404, f"unknown command {name!r}" if name else "cmd is required")
        if cmd.permission is Permission.ADMIN and not who.is_admin:
            raise ApiError(401, f"{name} needs the admin password")
        result = await cmd.handler(req)
    except ApiError as exc:
        return _answer(exc.body, exc.status)
    except Exception:
        log.exception("command of %s failed: %.200s", who.remote or "?", query)
        return _answer({"error": "internal error"}, 500)
    if isinstance(result, web.Response):
        content_type = result.headers.get("Content-Type", result.content_type)
        return Answer(result.status, content_type, bytes(result.body or b""))  # type: ignore[arg-type]
    if isinstance(result, web.StreamResponse):
        return _answer({"error": "this answer cannot be sent here"}, 400)
    return _answer(result)
