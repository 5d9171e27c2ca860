"""The MQTT client library behind one small interface: connect, publish, subscribe, receive.

The only module that imports `aiomqtt` (and through it paho-mqtt): an upgrade of either
touches this file alone. A connection is an async context manager (`connect`); every
failure of the library (refused, lost, timed out, a bad certificate) comes out as a
`BrokerError` with a one-line message. MQTT 5's request/response properties (response
topic, correlation data) and user properties are handled here, so the rest of the code
sees plain values.

This module must never decide what is published or what a message means.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from chargebrain.servers.mqtt.url import BrokerUrl

CONNECT_TIMEOUT_S = 10.0
#: Received messages waiting to be handled; more are dropped by the library (and logged).
MAX_QUEUED_INCOMING = 1000
KEEPALIVE_S = 30

log = logging.getLogger("chargebrain.mqtt")


class BrokerError(Exception):
    """The broker cannot be reached or the connection failed; the message is one line."""


@dataclass(frozen=True)
class Inbound:
    """One received message."""

    topic: str
    payload: bytes
    retain: bool = False
    response_topic: str | None = None  # MQTT 5: where the sender wants the answer
    correlation: bytes | None = None  # MQTT 5: to be sent back with the answer


@dataclass(frozen=True)
class Will:
    """What the broker publishes for us when the connection is lost."""

    topic: str
    payload: bytes
    retain: bool = True


def _tls_context(url: BrokerUrl) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context()
        if url.cafile:
            context.load_verify_locations(cafile=url.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(f"TLS: cannot use the CA file {url.cafile}: {exc}") from None
    if url.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause).strip() and str(cause) not in text:
        text = f"{text}: {cause}"
    return text.splitlines()[0]


class Connection:
    """An open connection to the broker."""

    def __init__(self, client: aiomqtt.Client, version: int) -> None:
        self._client = client
        self.version = version

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 0,
                      correlation: bytes | None = None,
                      user_properties: Iterable[tuple[str, str]] = ()) -> None:
        """Publish; MQTT 5 properties are sent only on an MQTT 5 connection."""
        properties = None
        extra = list(user_properties)
        if self.version == 5 and (correlation is not None or extra):
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if correlation is not None:
                properties.CorrelationData = correlation
            if extra:
                properties.UserProperty = extra
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain,
                                       properties=properties)
        except (aiomqtt.MqttError, ValueError) as exc:
            raise BrokerError(f"publishing to {topic}: {_describe(exc)}") from None

    async def subscribe(self, topics: Iterable[str], qos: int = 1) -> None:
        wanted = [(t, qos) for t in topics]
        if not wanted:
            return
        try:
            await self._client.subscribe(wanted)
        except (aiomqtt.MqttError, ValueError) as exc:
            raise BrokerError(f"subscribing: {_describe(exc)}") from None

    async def unsubscribe(self, topics: Iterable[str]) -> None:
        unwanted = list(topics)
        if not unwanted:
            return
        try:
            await self._client.unsubscribe(unwanted)
        except (aiomqtt.MqttError, ValueError) as exc:
            raise BrokerError(f"unsubscribing: {_describe(exc)}") from None

    async def messages(self) -> AsyncIterator[Inbound]:
        """The received messages, until the connection is lost (then BrokerError)."""
        try:
            async for message in self._client.messages:
                payload = message.payload
                if not isinstance(payload, bytes | bytearray):
                    payload = str(payload).encode()
                response_topic = correlation = None
                props = message.properties
                if props is not None:
                    response_topic = getattr(props, "ResponseTopic", None)
                    correlation = getattr(props, "CorrelationData", None)
                yield Inbound(str(message.topic), bytes(payload), bool(message.retain),
                              response_topic, correlation)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"connection lost: {_describe(exc)}") from None


@asynccontextmanager
async def connect(url: BrokerUrl, will: Will | None = None,
                  client_id: str | None = None) -> AsyncIterator[Connection]:
    """A connection to the broker at `url`, closed on leaving; raises BrokerError."""
    client = aiomqtt.Client(
        url.host, url.port, username=url.username, password=url.password,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5 if url.version == 5 else aiomqtt.ProtocolVersion.V311,
        will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=will.retain) if will else None,
        keepalive=KEEPALIVE_S, timeout=CONNECT_TIMEOUT_S,
        max_queued_incoming_messages=MAX_QUEUED_INCOMING,
        tls_context=_tls_context(url) if url.tls else None,
    )
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S + 1):
            await client.__aenter__()
    except TimeoutError:
        raise BrokerError(f"no connection to {url.where} within {CONNECT_TIMEOUT_S:g} s") from None
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"cannot connect to {url.where}: {_describe(exc)}") from None
    try:
        yield Connection(client, url.version)
    finally:
        try:
            async with asyncio.timeout(2.0):
                await client.__aexit__(None, None, None)
        except (TimeoutError, aiomqtt.MqttError) as exc:
            log.debug("closing the MQTT connection: %s", _describe(exc))
