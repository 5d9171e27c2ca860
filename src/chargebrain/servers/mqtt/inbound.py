"""What chargebrain does with the messages it receives: pushed readings, API calls, the
observe-mode control of wallboxes, and the values of meters read over MQTT.

* `<prefix>/set/<dev_id>`: the JSON of set_ajax_meter / set_ajax_evse, for HTTP-input
  devices; kept at once (no answer).
* `<prefix>/api/<query>`: `/cnf?<query>` with the payload as POST body, as the admin;
  the answer goes to `<prefix>/api_res` (or an MQTT 5 response topic, with the
  correlation data). Calls run one after the other, outside the receiving loop.
* `<prefix>/ctl`: `{"E1": {"cur": mA, "ena": bool, "wke": bool, "phs": 1|3}, …}`: in
  observe mode (lb_enabled false) written to those EVSEs through their drivers (see
  `control.py`).
* any topic a meter definition names: kept by the feed.

A payload that is not what the topic takes, an unknown topic, a retained command or an
oversized message is ignored with a log line (at most one a minute per kind of
problem); nothing here raises out of `handle`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from chargebrain.api.bodies import json_body
from chargebrain.api.errors import ApiError
from chargebrain.api.local_calls import call
from chargebrain.api.shapes.pushes import evse_reading, meter_reading
from chargebrain.devices.registry import Kind
from chargebrain.manager.config import ConfigError
from chargebrain.servers.mqtt.adapter import Inbound
from chargebrain.servers.mqtt.control import ExternalControl
from chargebrain.servers.mqtt.feed import Feed
from chargebrain.servers.mqtt.outbox import Outbox, Outgoing

if TYPE_CHECKING:
    from chargebrain.api.services import Services

log = logging.getLogger("chargebrain.mqtt")

#: Larger messages are ignored (the HTTP API takes bodies up to 2 MiB too).
MAX_PAYLOAD = 2 * 1024 * 1024
#: API calls and control messages waiting to be run; more are ignored.
MAX_WAITING = 64
COMPLAIN_EVERY_S = 60.0


class Complaints:
    """Log lines about ignored messages: at most one a minute per kind of problem (a
    client that repeats a bad message must not fill the log)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def __call__(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < COMPLAIN_EVERY_S:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        if len(self._last) > 1000:
            self._last.clear()
            self._quiet.clear()
        self._last[kind] = now
        quiet = self._quiet.pop(kind, 0)
        more = f" ({quiet} more like it not logged)" if quiet else ""
        log.warning("MQTT: " + message + more, *args)


class InboundHandler:
    """Handles received messages (see the module's docstring)."""

    def __init__(self, app: Services, feed: Feed, outbox: Outbox) -> None:
        self.app = app
        self.feed = feed
        self.outbox = outbox
        self.control = ExternalControl(app.manager)
        self.complain = Complaints()
        self.prefix = "cfos_mqtt"
        self.received = 0
        self.ignored = 0
        self._work: asyncio.Queue[tuple[str, Inbound]] = asyncio.Queue(MAX_WAITING)

    def subscriptions(self) -> list[str]:
        """The command topics of `prefix`."""
        p = self.prefix
        return [f"{p}/set/+", f"{p}/api/#", f"{p}/ctl"]

    def handle(self, message: Inbound) -> None:
        """Take one received message (never raises)."""
        self.received += 1
        try:
            self._handle(message)
        except Exception:
            self.ignored += 1
            log.exception("MQTT: handling a message on %.200s failed", message.topic)

    def _ignore(self, kind: str, text: str, *args: object) -> None:
        self.ignored += 1
        self.complain(kind, text, *args)

    def _handle(self, message: Inbound) -> None:
        topic, size = message.topic, len(message.payload)
        if size > MAX_PAYLOAD:
            self._ignore("size", "ignored %d bytes on %.200s: larger than %d bytes", size,
                         topic, MAX_PAYLOAD)
            return
        if self.feed.receive(topic, message.payload):
            return
        p = self.prefix + "/"
        if not topic.startswith(p):
            self._ignore("topic", "ignored a message on an unknown topic %.200s", topic)
            return
        rest = topic[len(p):]
        kind = "ctl" if rest == "ctl" else rest.partition("/")[0]
        if kind not in ("set", "api", "ctl"):
            self._ignore("topic", "ignored a message on an unknown topic %.200s", topic)
            return
        if message.retain:
            # A retained command would run again at every reconnect.
            self._ignore("retained", "ignored a retained message on %.200s: commands are "
                         "not retained", topic)
            return
        if kind == "set":
            self._push(rest[4:], message.payload)
            return
        if kind == "api" and not rest[4:]:
            self._ignore("api", "ignored a message on %.200s: no query after api/", topic)
            return
        try:
            self._work.put_nowait((kind, message))
        except asyncio.QueueFull:
            self._ignore("busy", "ignored a message on %.200s: %d commands are waiting",
                         topic, MAX_WAITING)

    # --- set/<dev_id> -------------------------------------------------------------------

    def _push(self, dev_id: str, payload: bytes) -> None:
        mgr = self.app.manager
        rt = mgr.devices.get(dev_id.strip().upper())
        if rt is None or not rt.dtype.pushed:
            what = "no device" if rt is None else "not an HTTP-input device"
            self._ignore(f"set {dev_id[:20]}", "ignored set/%.20s: %s", dev_id, what)
            return
        try:
            doc = json_body(payload)
            if not isinstance(doc, dict):
                raise ApiError(400, "a JSON object is required")
            if rt.dtype.kind is Kind.EVSE:
                mgr.pushes.push_evse(rt.dev_id, evse_reading(doc))
            else:
                mgr.pushes.push_meter(rt.dev_id, meter_reading(doc))
        except (ApiError, ConfigError) as exc:
            text = exc.message if isinstance(exc, ApiError) else str(exc)
            self._ignore(f"set {rt.dev_id}", "ignored set/%s: %s", rt.dev_id, text)

    # --- api/<query> and ctl, one after the other ----------------------------------------

    async def run(self) -> None:
        """Run the waiting API calls and control messages (forever)."""
        while True:
            kind, message = await self._work.get()
            try:
                if kind == "api":
                    await self._api(message)
                else:
                    await self._ctl(message.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("MQTT: %s message failed", kind)

    async def _api(self, message: Inbound) -> None:
        query = message.topic[len(self.prefix) + len("/api/"):]
        answer = await call(self.app, query, message.payload)
        log.debug("MQTT API %.200s: %d", query, answer.status)
        if answer.status >= 400:
            log.info("MQTT API %.100s: %d %.200s", query, answer.status,
                     answer.body.decode("utf-8", "replace"))
        topic = message.response_topic or f"{self.prefix}/api_res"
        self.outbox.put_event(Outgoing(topic, answer.body, qos=1,
                                       correlation=message.correlation, status=answer.status))

    async def _ctl(self, payload: bytes) -> None:
        try:
            doc: Any = json_body(payload)
        except ApiError as exc:
            self._ignore("ctl", "ignored ctl: %s", exc.message)
            return
        if not isinstance(doc, dict):
            self._ignore("ctl", "ignored ctl: a JSON object of EVSE ids is required")
            return
        for problem in await self.control.apply(doc):
            self._ignore(f"ctl {problem[:30]}", "ctl: %s", problem)
