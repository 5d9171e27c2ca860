"""JSON answers for requests aiohttp's HTTP parser refuses (the one adapter to its internals).

A request line or header over aiohttp's limits (8190 bytes), too many headers or bytes
that are not HTTP never reach a handler or a middleware: the low-level protocol
(`aiohttp.web_protocol.RequestHandler.handle_error`) answers them itself, in plain text
that echoes part of the request, and logs each one with a traceback, so any client could
fill the log. Here the same refusal is a JSON error like every other answer
(`{"error": …}`, `application/json`, status 400) and is logged as one debug line; so is
a body that fails to decode (found while aiohttp reads the rest of it after the answer).
Failures of our own code that reach aiohttp (status 500) are still logged with their
traceback, as a bug, and answered `{"error": "internal error"}`.

aiohttp offers no public hook for this, so this module uses its internals and nothing
else in chargebrain does: `AppRunner._make_server`, the `web.Server` it makes, and the
`RequestHandler` each connection gets (both are given the subclasses below by class;
they add no state). When aiohttp changes these, only this module has to follow
(tests/api/test_request_forms.py sends over-long requests on a raw socket).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from chargebrain.api.answers import error_response

log = logging.getLogger("chargebrain.http")

_CLIENT_FAULTS = (web.RequestPayloadError, HttpProcessingError, ConnectionError)


def refusal(status: int, exc: BaseException | None) -> str:
    """The message of a refused request (never any of the client's bytes)."""
    if status >= 500:
        return "internal error" if status == 500 else HTTPStatus(status).phrase.lower()
    if isinstance(exc, LineTooLong):
        return "the request line or a header is too long"
    return "not a valid HTTP request"


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection protocol, answering its own errors as JSON."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.debug("refused a request from %s: %s", request.remote,
                      type(exc).__name__ if exc is not None else status)
        if request.writer.output_size > 0:
            # Part of an answer is out already: the connection can only be dropped.
            raise ConnectionError("an answer was already being sent")
        resp = error_response(refusal(status, exc), status)
        resp.force_close()
        return resp

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp logs here what fails around a request; a body the client sent broken,
        or a client gone, is the client's affair: one debug line, no traceback."""
        exc = kw.get("exc_info")
        if isinstance(exc, _CLIENT_FAULTS):
            log.debug("a request failed on the client's side: %s", type(exc).__name__)
            return
        super().log_exception(*args, **kw)


class _JsonErrorServer(web.Server):
    """aiohttp's server, giving every connection the protocol above."""

    __slots__ = ()

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = _JsonErrorHandler
        return handler


class JsonErrorRunner(web.AppRunner):
    """An `AppRunner` whose server answers the HTTP parser's refusals as JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server
