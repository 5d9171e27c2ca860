"""What a meter read over MQTT needs from the broker connection: the latest message of
each topic it watches.

The drivers depend on this protocol only; the MQTT service (servers/mqtt) provides it,
subscribing every watched topic through its one broker connection and keeping the last
message of each. A driver never waits for the broker: it reads what arrived. Also here:
which topics a definition reads, and the checks an MQTT meter passes when it is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from chargebrain.devices.errors import DeviceError
from chargebrain.devices.meterdef import MeterDefinition

#: The device address that means "the configured broker" for an MQTT meter (the vendor's).
MQTT_ADDRESS = "mqtt"


@dataclass(frozen=True, slots=True)
class TopicValue:
    """The last message of a topic and when it came (the clock's monotonic time)."""

    payload: bytes
    received: float


class TopicFeed(Protocol):
    """The broker connection, as the meters read over MQTT see it."""

    def watch(self, owner: object, topics: Iterable[str]) -> None:
        """Subscribe `topics` for `owner` (replacing what it watched before)."""

    def unwatch(self, owner: object) -> None:
        """`owner` no longer needs its topics."""

    def latest(self, topic: str) -> TopicValue | None:
        """The last message on `topic` since it was watched, or None."""

    def problem(self) -> str:
        """Why no messages can come now ("" when the broker is connected)."""


def topic_problem(topic: str) -> str | None:
    """Why `topic` cannot be subscribed as one exact topic, or None."""
    if not topic:
        return "an empty topic"
    if "+" in topic or "#" in topic:
        return f"topic {topic!r} has a wildcard (+ or #); name one topic exactly"
    if "\x00" in topic or len(topic.encode("utf-8", "replace")) > 65535:
        return f"topic {topic[:40]!r} is not a valid MQTT topic"
    return None


def topics_of(definition: MeterDefinition) -> list[str]:
    """The topics an MQTT meter definition reads, each once."""
    topics = [v.topic for v in definition.variables if v.is_read and v.topic is not None]
    topics += [i.topic for i in definition.inputs if i.topic is not None]
    return list(dict.fromkeys(topics))


def feed_for(definition: MeterDefinition, address: str, topics: TopicFeed | None) -> TopicFeed:
    """The feed an MQTT meter reads from, once its definition and address are checked
    (DeviceError if they cannot be read that way)."""
    name = definition.dev_type
    if topics is None:
        raise DeviceError(f"meter definition {name} uses MQTT (rtype 2); MQTT meters are "
                          "read through the MQTT connection of a running server")
    if address.strip().lower() != MQTT_ADDRESS:
        raise DeviceError(f"an MQTT meter's address is 'mqtt' (the broker of mqtt_url), "
                          f"not {address[:60]!r}")
    for topic in topics_of(definition):
        problem = topic_problem(topic)
        if problem is not None:
            raise DeviceError(f"meter definition {name}: {problem}")
    return topics
