"""The one module that speaks to the `ocpp` and `websockets` libraries (both change their
APIs between releases): OCPP-J 1.6 over WebSocket, for either side of a connection.

* `Peer`: one connection's remote procedure calls. Every payload is checked against the
  OCPP 1.6 JSON schemas that the `ocpp` library ships: incoming calls before the handler
  sees them and our answers before they leave, our calls before they leave and their
  answers when they arrive. Incoming calls are answered one at a time, in order; our
  calls go one at a time with a timeout. A malformed frame, an unknown action or an
  invalid payload is answered with the CALLERROR the protocol names (`OcppFault`, with
  the error codes as OCPP 1.6 spells them), and the handler never sees it.
* `serve`: a WebSocket server for the central system. A `gate` decides every opening
  handshake (path, HTTP Basic credentials; the subprotocol `ocpp1.6` is required); a
  refusal is an HTTP error with a JSON body. The number of TCP connections, the time a
  handshake may take, the size of a message and the keepalive are bounded (`Limits`).
* `connect`: the client side (a charge point, or a gateway towards a backend).

The library's own `ChargePoint` class is not used here: it answers nothing to a frame it
cannot parse, spells two error codes as OCPP 2.0 does, and matches answers to calls
through one shared queue. Only its message classes, schemas and validation are.

Nothing else in chargebrain imports `ocpp` or `websockets`; `Any` stays in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.messages import (
    Call,
    CallError,
    CallResult,
    validate_payload,
)
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHeader, WebSocketException
from websockets.headers import build_authorization_basic, parse_authorization_basic
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

log = logging.getLogger("chargebrain.ocpp")

VERSION = "1.6"
SUBPROTOCOL = "ocpp1.6"
CALL_TIMEOUT_S = 15.0
LOUD_EVERY_S = 60.0
#: OCPP 1.6 JSON allows at most 36 characters in a message id.
MAX_UNIQUE_ID = 36

Payload = dict[str, object]
CallHandler = Callable[[str, Payload], Awaitable[Payload]]

# OCPP 1.6 error codes (OCPP-J 1.6, section 4.2.3).
NOT_IMPLEMENTED = "NotImplemented"  # the action is not known
NOT_SUPPORTED = "NotSupported"  # the action is known but not supported here
INTERNAL_ERROR = "InternalError"
PROTOCOL_ERROR = "ProtocolError"  # the payload is incomplete
SECURITY_ERROR = "SecurityError"
FORMATION_VIOLATION = "FormationViolation"  # not syntactically correct
PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"  # a value not allowed
OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"  # a value of the wrong type
GENERIC_ERROR = "GenericError"
#: The library names two codes as OCPP 2.0 does.
_AS_16 = {"FormatViolation": FORMATION_VIOLATION,
          "OccurrenceConstraintViolation": OCCURENCE_CONSTRAINT_VIOLATION}
_ACTIONS = frozenset(a.value for a in Action)


class OcppFault(Exception):
    """A CALLERROR: one to answer (raised by a handler), or one received for our call."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description


class PeerClosed(ConnectionError):
    """The connection is closed."""


def _fault(exc: Any) -> OcppFault:
    """The library's validation error as an OCPP 1.6 fault."""
    code = _AS_16.get(exc.code, exc.code)
    cause = exc.details.get("cause") if isinstance(exc.details, dict) else None
    return OcppFault(code, str(cause or exc.description)[:200])


class Transport:
    """A WebSocket connection carrying OCPP-J text frames."""

    def __init__(self, ws: ServerConnection | Any) -> None:
        self._ws = ws
        address = ws.remote_address
        self.remote = str(address[0]) if isinstance(address, tuple) else str(address or "")

    async def recv(self) -> str | bytes:
        try:
            data: str | bytes = await self._ws.recv()
        except ConnectionClosed:
            raise PeerClosed("closed") from None
        return data

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except ConnectionClosed:
            raise PeerClosed("closed") from None

    async def close(self, reason: str = "") -> None:
        await self._ws.close(1000, reason[:120])

    async def wait_closed(self) -> None:
        await self._ws.wait_closed()


@dataclass
class _Incoming:
    unique_id: str
    action: str
    payload: dict[str, Any]


class Peer:
    """One OCPP-J 1.6 connection: answers incoming calls and makes calls of its own."""

    def __init__(self, transport: Transport, handler: CallHandler, name: str = "",
                 call_timeout: float = CALL_TIMEOUT_S,
                 answered: Callable[[str], None] | None = None) -> None:
        self.transport = transport
        self.handler = handler
        self.answered = answered  # told the action of each call answered (after the answer)
        self.name = name
        self.call_timeout = call_timeout
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._incoming: asyncio.Queue[_Incoming] = asyncio.Queue(maxsize=4)
        self._call_lock = asyncio.Lock()
        self.closed = False

    async def run(self) -> None:
        """Read frames until the connection closes."""
        worker = asyncio.create_task(self._answer_calls())
        try:
            while True:
                await self._frame(await self.transport.recv())
        except PeerClosed:
            pass
        finally:
            self.closed = True
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, PeerClosed):
                await worker
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(PeerClosed("the connection closed"))
            self._pending.clear()

    async def close(self, reason: str = "") -> None:
        await self.transport.close(reason)

    # --- frames in ----------------------------------------------------------------------

    async def _frame(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                await self._error("-1", FORMATION_VIOLATION, "a frame is UTF-8 text")
                return
        log.debug("%s → %s", self.name, raw[:2000])
        try:
            msg = json.loads(raw)
        except ValueError:
            await self._error("-1", FORMATION_VIOLATION, "the frame is not JSON")
            return
        if not isinstance(msg, list) or not msg or type(msg[0]) is not int:
            await self._error(_uid(msg), FORMATION_VIOLATION,
                              "a frame is a JSON array beginning with its message type")
            return
        kind, uid = msg[0], _uid(msg)
        if kind == 2:
            if (len(msg) != 4 or uid == "-1" or not isinstance(msg[2], str)
                    or not isinstance(msg[3], dict)):
                await self._error(uid, FORMATION_VIOLATION,
                                  "a CALL is [2, \"<id>\", \"<action>\", {<payload>}]")
                return
            await self._incoming.put(_Incoming(uid, msg[2], msg[3]))
        elif kind in (3, 4):
            future = self._pending.pop(uid, None)
            if future is None or future.done():
                log.debug("%s: an answer to no call of ours: %s", self.name, raw[:200])
            elif kind == 3 and len(msg) == 3 and isinstance(msg[2], dict):
                future.set_result(msg[2])
            elif kind == 4 and len(msg) >= 4 and isinstance(msg[2], str):
                future.set_exception(OcppFault(msg[2], str(msg[3])[:200]))
            else:
                future.set_exception(OcppFault(FORMATION_VIOLATION, "a malformed answer"))
        else:
            await self._error(uid, FORMATION_VIOLATION, f"message type {kind} is not OCPP's")

    async def _answer_calls(self) -> None:
        while True:
            call = await self._incoming.get()
            try:
                answer = await self._answer(call)
            except OcppFault as fault:
                await self._error(call.unique_id, fault.code, fault.description)
                continue
            except PeerClosed:
                raise
            except Exception:
                log.exception("%s: answering %s failed", self.name, call.action)
                await self._error(call.unique_id, INTERNAL_ERROR, "an unexpected error")
                continue
            await self._send(answer)
            if self.answered is not None:
                self.answered(call.action)

    async def _answer(self, call: _Incoming) -> str:
        if call.action not in _ACTIONS:
            raise OcppFault(NOT_IMPLEMENTED, f"{call.action[:50]!r} is no OCPP 1.6 action")
        request = Call(call.unique_id, call.action, call.payload)
        try:
            await validate_payload(request, VERSION)
        except OCPPError as exc:
            raise _fault(exc) from None
        payload = await self.handler(call.action, call.payload)
        result = request.create_call_result(payload)
        try:
            await validate_payload(result, VERSION)
        except OCPPError as exc:
            log.error("%s: our answer to %s is invalid: %s", self.name, call.action, exc)
            raise OcppFault(INTERNAL_ERROR, "the answer could not be made") from None
        text: str = result.to_json()
        return text

    async def _error(self, unique_id: str, code: str, description: str) -> None:
        await self._send(CallError(unique_id, code, description, {}).to_json())

    async def _send(self, text: str) -> None:
        log.debug("%s ← %s", self.name, text[:2000])
        await self.transport.send(text)

    # --- calls out ----------------------------------------------------------------------

    async def call(self, action: str, payload: Payload, timeout: float | None = None
                   ) -> Payload:
        """Make a call and return the answer's payload. Raises OcppFault (a CALLERROR, or
        an answer that breaks the schema), TimeoutError, PeerClosed; ValueError when
        `payload` itself breaks the schema."""
        async with self._call_lock:
            if self.closed:
                raise PeerClosed("the connection is closed")
            uid = str(uuid.uuid4())
            request = Call(uid, action, dict(payload))
            try:
                await validate_payload(request, VERSION)
            except OCPPError as exc:
                raise ValueError(f"{action}: {_fault(exc)}") from None
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending[uid] = future
            try:
                await self._send(request.to_json())
                answer = await asyncio.wait_for(future, timeout or self.call_timeout)
            finally:
                self._pending.pop(uid, None)
        try:
            await validate_payload(CallResult(uid, answer, action), VERSION)
        except OCPPError as exc:
            raise _fault(exc) from None
        return dict(answer)


def _uid(msg: Any) -> str:
    """The message id of a frame, or "-1" where it has none that can be used."""
    if isinstance(msg, list) and len(msg) > 1 and isinstance(msg[1], str) and (
            0 < len(msg[1]) <= MAX_UNIQUE_ID):
        return msg[1]
    return "-1"


# --- the server -----------------------------------------------------------------------


@dataclass(frozen=True)
class Handshake:
    """An opening handshake, as the gate sees it."""

    path: str
    remote: str
    credentials: tuple[str, str] | None  # HTTP Basic (user, password), if sent


class Refusal(Exception):
    """The gate refuses a handshake: an HTTP error with a JSON body."""

    def __init__(self, status: int, message: str, challenge: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.challenge = challenge  # 401: ask for Basic credentials


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1000  # TCP connections at once, handshakes included
    handshake_s: float = 10.0  # TLS and WebSocket handshakes together
    max_message: int = 128 * 1024  # bytes of one message
    keepalive_s: float = 30.0  # ping interval, and how long a pong may take


Gate = Callable[[Handshake], str]
Welcome = Callable[[str, Transport], Awaitable[None]]


class Listener:
    """A running OCPP WebSocket server."""

    def __init__(self, server: Server) -> None:
        self._server = server
        sockets = server.sockets
        self.port = int(sockets[0].getsockname()[1]) if sockets else 0

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


def _json_response(connection: ServerConnection, status: int, message: str,
                   challenge: bool = False) -> Response:
    response = connection.respond(status, json.dumps({"error": message},
                                                      separators=(",", ":")))
    del response.headers["Content-Type"]  # (a header may be there several times)
    response.headers["Content-Type"] = "application/json"
    if challenge:
        response.headers["WWW-Authenticate"] = 'Basic realm="chargebrain OCPP"'
    return response


def _credentials(headers: Headers) -> tuple[str, str] | None:
    header = headers.get("Authorization")
    if header is None:
        return None
    try:
        return parse_authorization_basic(header)
    except InvalidHeader:
        return ("", "")  # malformed: wrong credentials


def _offered(headers: Headers) -> list[str]:
    return [p.strip() for value in headers.get_all("Sec-WebSocket-Protocol")
            for p in value.split(",")]


async def serve(host: str, port: int, gate: Gate, welcome: Welcome,
                tls: ssl.SSLContext | None = None, limits: Limits = Limits()) -> Listener:
    """Listen on `host`:`port` (0: any free port); raises OSError if it cannot."""
    accepted: dict[ServerConnection, str] = {}
    count = [0]
    warned = [-LOUD_EVERY_S]  # (loop time) a dropped connection is a warning once a minute

    class Counted(ServerConnection):
        """Counts TCP connections; one over the limit is dropped at once."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            count[0] += 1
            super().connection_made(transport)
            if count[0] > limits.max_connections:
                now = asyncio.get_running_loop().time()
                loud = now - warned[0] >= LOUD_EVERY_S
                if loud:
                    warned[0] = now
                log.log(logging.WARNING if loud else logging.DEBUG,
                        "OCPP: more than %d connections; one from %s dropped",
                        limits.max_connections, transport.get_extra_info("peername"))
                transport.abort()  # type: ignore[attr-defined]

        def connection_lost(self, exc: Exception | None) -> None:
            count[0] -= 1
            accepted.pop(self, None)
            super().connection_lost(exc)

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if SUBPROTOCOL not in _offered(request.headers):
            if request.headers.get("Upgrade", "").lower() != "websocket":
                return _json_response(connection, 426, "an OCPP-J WebSocket is expected here")
            return _json_response(connection, 400, f"the subprotocol {SUBPROTOCOL} is needed")
        address = connection.remote_address
        remote = str(address[0]) if isinstance(address, tuple) else ""
        try:
            accepted[connection] = gate(Handshake(request.path, remote,
                                                  _credentials(request.headers)))
        except Refusal as refusal:
            return _json_response(connection, refusal.status, refusal.message,
                                  refusal.challenge)
        return None

    def process_response(connection: ServerConnection, request: Request,
                         response: Response) -> Response | None:
        if response.status_code == 101 or response.headers.get_all(
                "Content-Type") == ["application/json"]:
            return None
        text = response.body.decode("utf-8", "replace").strip() or response.reason_phrase
        return _json_response(connection, response.status_code, text)

    async def handler(connection: ServerConnection) -> None:
        charge_point = accepted.pop(connection, None)
        if charge_point is None:
            return
        await welcome(charge_point, Transport(connection))

    server = await ws_serve(
        handler, host or None, port, ssl=tls, subprotocols=[Subprotocol(SUBPROTOCOL)],
        process_request=process_request, process_response=process_response,
        open_timeout=limits.handshake_s, ping_interval=limits.keepalive_s,
        ping_timeout=limits.keepalive_s, max_size=limits.max_message, max_queue=8,
        create_connection=Counted, server_header="chargebrain",
        logger=logging.getLogger("chargebrain.ocpp.websocket"))
    return Listener(server)


async def connect(url: str, password: str | None = None, user: str | None = None,
                  tls: ssl.SSLContext | None = None, timeout: float = 10.0) -> Transport:
    """Open an OCPP-J 1.6 connection to `url` (a charge point's side); raises OSError or
    PeerClosed when it cannot be opened."""
    headers = []
    if password is not None:
        ident = user if user is not None else url.rstrip("/").rpartition("/")[2]
        headers.append(("Authorization", build_authorization_basic(ident, password)))
    try:
        ws = await ws_connect(url, subprotocols=[Subprotocol(SUBPROTOCOL)],
                              additional_headers=headers, ssl=tls, open_timeout=timeout)
    except (WebSocketException, TimeoutError) as exc:
        raise PeerClosed(f"cannot connect to {url}: {exc}") from None
    return Transport(ws)
