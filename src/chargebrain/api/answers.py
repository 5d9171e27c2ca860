"""The JSON answers of the HTTP server: one content type, one style, one error shape.

Every answer built here is compact JSON (`separators=(",", ":")`, UTF-8, not ASCII
escaped) labelled exactly `application/json` (no charset parameter), and every error is
the object `{"error": "<message>"}`. Commands, authentication, the unknown-path and
wrong-method answers and the answers to requests the HTTP parser refuses all come from
here, so a client sees the same form whatever went wrong.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

JSON_TYPE = "application/json"
CHALLENGE = {"WWW-Authenticate": 'Basic realm="chargebrain"'}


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON. A lone surrogate in a string (no request can bring one in
    since bodies are parsed strictly, but an older version stored what it was sent) is
    written as its JSON escape, `\\ud800`, instead of failing the answer."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "backslashreplace")


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json_bytes(value), status=status, content_type=JSON_TYPE, headers=headers
    )


def error_response(
    message: str, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """`{"error": message}` with a 4xx (or 5xx) status."""
    return json_response({"error": message}, status=status, headers=headers)


def challenge(message: str) -> web.Response:
    """A 401 that asks for HTTP Basic credentials."""
    return error_response(message, 401, headers=dict(CHALLENGE))
