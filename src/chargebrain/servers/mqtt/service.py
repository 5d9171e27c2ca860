"""The MQTT connection of chargebrain: connects, reconnects, and runs publishing and
receiving while connected.

The broker is the site parameter `mqtt_url` (`chargebrain run --mqtt URL` sets it at
start); empty means no MQTT. The topic prefix is `cfos_mqtt`, or `cfos_mqtt_<serial>`
with `mqtt_serial_prefix`. A change of either reconnects; a broker that cannot be
reached is tried again after 1, 2, 4 … 60 s (logged once per outage, then at DEBUG).

While connected, five tasks run: the sender (outbox → broker), the receiver (broker →
`InboundHandler`), the publisher (after each control cycle, at most once per cycle
period: `StatePublisher`), the subscriptions of the meters read over MQTT (again when
the watched topics change) and a watch on the settings. `<prefix>/status` is `online`
while connected and `offline` otherwise (the broker publishes it as our last will).
Log lines at INFO and above go to `<prefix>/log` through a log handler.

The control cycle only sets two events (`CycleListener`); nothing the cycle does waits
for the broker, and nothing here grows without bound (see `outbox.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from chargebrain import package_version
from chargebrain.manager.state import DeviceRuntime
from chargebrain.servers.mqtt.adapter import BrokerError, Connection, Will, connect
from chargebrain.servers.mqtt.discovery import Discovery
from chargebrain.servers.mqtt.feed import NO_BROKER, Feed
from chargebrain.servers.mqtt.inbound import InboundHandler
from chargebrain.servers.mqtt.outbox import LogHandler, Outbox
from chargebrain.servers.mqtt.publish import StatePublisher
from chargebrain.servers.mqtt.url import BrokerUrl, BrokerUrlError, parse_broker_url

if TYPE_CHECKING:
    from chargebrain.api.services import Services

log = logging.getLogger("chargebrain.mqtt")

PREFIX = "cfos_mqtt"
BACKOFF_S = (1.0, 60.0)  # the first wait before trying again, and the longest
MIN_PUBLISH_INTERVAL_S = 0.2


class _Changed(Exception):
    """The broker or the prefix changed: connect again."""


class CycleListener:
    """The charging manager's SessionListener: a cycle ended, a transaction ended."""

    def __init__(self, service: MqttService) -> None:
        self.service = service

    def on_plug(self, rt: DeviceRuntime, now: float) -> None:
        return None

    def on_rfid(self, rt: DeviceRuntime, rfid: str, now: float) -> None:
        return None

    def on_unplug(self, rt: DeviceRuntime, now: float) -> None:
        service = self.service
        if service.url is not None:
            service.publisher.transaction(service.prefix, rt, now)

    def on_cycle(self, now: float) -> None:
        self.service.publish_due.set()
        self.service.settings_due.set()


class MqttService:
    """See the module's docstring."""

    def __init__(self, app: Services) -> None:
        self.app = app
        self.feed = Feed(app.clock.monotonic)
        self.outbox = Outbox()
        self.publisher = StatePublisher(app, self.outbox)
        self.inbound = InboundHandler(app, self.feed, self.outbox)
        self.listener = CycleListener(self)
        self.publish_due = asyncio.Event()
        self.settings_due = asyncio.Event()
        self.url: BrokerUrl | None = None  # the broker in use (connected or not)
        self.prefix = PREFIX
        self.connected = False
        self.connections = 0
        self.published = 0
        self._log_handler: LogHandler | None = None

    # --- settings -----------------------------------------------------------------------

    def _wanted(self) -> tuple[str, str]:
        """(broker URL text, topic prefix) as the site parameters say now."""
        site = self.app.manager.site
        prefix = PREFIX
        if site.mqtt_serial_prefix:
            prefix = f"{PREFIX}_{self.app.powerbrain.serial}"
        return site.mqtt_url.strip(), prefix

    async def _until_changed(self, wanted: tuple[str, str], timeout: float | None = None) -> None:
        """Return when the settings differ from `wanted`, or after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._wanted() == wanted:
            self.settings_due.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.settings_due.wait(), remaining)

    # --- the connection -----------------------------------------------------------------

    async def run(self) -> None:
        """Keep the connection the settings ask for, until cancelled."""
        loop = asyncio.get_running_loop()
        handler = self._log_handler = LogHandler(loop, f"{PREFIX}/log", self.outbox)
        handler.enabled = False
        logging.getLogger("chargebrain").addHandler(handler)
        worker = asyncio.create_task(self.inbound.run(), name="mqtt commands")
        try:
            await self._supervise(handler)
        finally:
            logging.getLogger("chargebrain").removeHandler(handler)
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            self.connected = False

    async def _supervise(self, handler: LogHandler) -> None:
        backoff = BACKOFF_S[0]
        complained = False
        while True:
            wanted = text, prefix = self._wanted()
            self.url = None
            handler.enabled = False
            if not text:
                self.feed.set_problem(NO_BROKER)
                await self._until_changed(wanted)
                continue
            try:
                url = parse_broker_url(text)
            except BrokerUrlError as exc:
                self.feed.set_problem(f"mqtt_url cannot be used: {exc}")
                log.error("MQTT: mqtt_url cannot be used: %s", exc)
                await self._until_changed(wanted)
                continue
            self.url, self.prefix = url, prefix
            self.inbound.prefix = prefix
            handler.topic, handler.enabled = f"{prefix}/log", True
            try:
                async with connect(url, Will(f"{prefix}/status", b"offline")) as conn:
                    self.connections += 1
                    log.info("MQTT: connected to %s (MQTT %s), topics %s/…", url.where,
                             "5" if url.version == 5 else "3.1.1", prefix)
                    backoff, complained = BACKOFF_S[0], False
                    await self._session(conn, wanted)
            except _Changed:
                log.info("MQTT: the broker or the topic prefix changed; connecting again")
                continue
            except BrokerError as exc:
                self.feed.set_problem(f"MQTT broker {url.where}: {exc}")
                level = logging.DEBUG if complained else logging.WARNING
                log.log(level, "MQTT: %s; trying again in %g s", exc, backoff)
                complained = True
            except Exception:  # a fault of ours: the connection starts again, later
                self.feed.set_problem(f"MQTT broker {url.where}: internal error")
                log.exception("MQTT: the connection failed; trying again in %g s", backoff)
            finally:
                self.connected = False
            await self._until_changed(wanted, backoff)
            backoff = min(backoff * 2, BACKOFF_S[1])

    async def _session(self, conn: Connection, wanted: tuple[str, str]) -> None:
        prefix = wanted[1]
        self.connected = True
        self.feed.set_problem("")
        self.publisher.reset()
        self.outbox.clear_state()
        await conn.publish(f"{prefix}/status", b"online", retain=True, qos=1)
        self.feed.changed.clear()
        base = set(self.inbound.subscriptions())
        subscribed = base | self.feed.topics()
        await conn.subscribe(sorted(subscribed))
        self.publish_due.set()
        tasks = [
            asyncio.create_task(self._send(conn), name="mqtt send"),
            asyncio.create_task(self._receive(conn), name="mqtt receive"),
            asyncio.create_task(self._publish(prefix), name="mqtt publish"),
            asyncio.create_task(self._subscriptions(conn, base, subscribed), name="mqtt sub"),
            asyncio.create_task(self._until_changed(wanted), name="mqtt settings"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(BrokerError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await conn.publish(f"{prefix}/status", b"offline", retain=True, qos=1)
        for task in done:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                raise failure
        raise _Changed

    async def _send(self, conn: Connection) -> None:
        outbox = self.outbox
        while True:
            message = await outbox.next()
            user_properties = [("status", str(message.status))] if message.status else []
            try:
                await conn.publish(message.topic, message.payload, retain=message.retain,
                                   qos=message.qos, correlation=message.correlation,
                                   user_properties=user_properties)
            except BrokerError:
                outbox.put_back(message)
                raise
            except asyncio.CancelledError:
                outbox.put_back(message)
                raise
            self.published += 1

    async def _receive(self, conn: Connection) -> None:
        async for message in conn.messages():
            self.inbound.handle(message)
        raise BrokerError("the broker closed the connection")

    async def _publish(self, prefix: str) -> None:
        loop = asyncio.get_running_loop()
        version = package_version()
        while True:
            await self.publish_due.wait()
            self.publish_due.clear()
            started = loop.time()
            site = self.app.manager.site
            discovery = None
            if site.mqtt_ha_discovery:
                discovery = Discovery(self.app.powerbrain.serial, prefix, version)
            try:
                self.publisher.publish(prefix, discovery)
            except Exception:  # a fault of ours must not end the connection
                log.exception("MQTT: building the state to publish failed")
            period = max(MIN_PUBLISH_INTERVAL_S, site.cycle_ms / 1000.0)
            await asyncio.sleep(max(0.0, started + period - loop.time()))

    async def _subscriptions(self, conn: Connection, base: set[str],
                             subscribed: set[str]) -> None:
        feed = self.feed
        while True:
            await feed.changed.wait()
            feed.changed.clear()
            wanted = base | feed.topics()
            await conn.subscribe(sorted(wanted - subscribed))
            await conn.unsubscribe(sorted(subscribed - wanted))
            subscribed = wanted

    # --- for the metrics ----------------------------------------------------------------

    @property
    def dropped(self) -> int:
        return self.outbox.dropped

    @property
    def received(self) -> int:
        return self.inbound.received

    @property
    def ignored(self) -> int:
        return self.inbound.ignored
