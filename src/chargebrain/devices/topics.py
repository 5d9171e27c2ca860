"""What a meter read over MQTT needs from the broker connection: the latest message of
each topic it watches.

The drivers depend on this protocol only; the MQTT service (servers/mqtt) provides it,
subscribing every watched topic through its one broker connection and keeping the last
message of each. A driver never waits for the broker: it reads what arrived.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


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
