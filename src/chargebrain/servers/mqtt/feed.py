"""The topics meters read over MQTT watch, and the last message of each.

Implements `devices.topics.TopicFeed` for the drivers; the MQTT service subscribes
`topics()` through its connection (again whenever `changed` is set) and hands every
message on a watched topic to `receive`. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from chargebrain.devices.topics import TopicValue

NO_BROKER = "no MQTT broker is configured (mqtt_url)"


class Feed:
    """Watched topics (per owner, a meter driver) and their last messages."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._owners: dict[int, frozenset[str]] = {}
        self._values: dict[str, TopicValue] = {}
        self._topics: frozenset[str] = frozenset()
        self._problem = NO_BROKER
        self.changed = asyncio.Event()  # set when the watched topics changed

    # --- TopicFeed ----------------------------------------------------------------------

    def watch(self, owner: object, topics: Iterable[str]) -> None:
        self._owners[id(owner)] = frozenset(topics)
        self._update()

    def unwatch(self, owner: object) -> None:
        if self._owners.pop(id(owner), None) is not None:
            self._update()

    def latest(self, topic: str) -> TopicValue | None:
        return self._values.get(topic)

    def problem(self) -> str:
        return self._problem

    # --- for the service ----------------------------------------------------------------

    def topics(self) -> frozenset[str]:
        """Every watched topic."""
        return self._topics

    def receive(self, topic: str, payload: bytes) -> bool:
        """Keep `payload` as the last message of `topic`; False if nobody watches it."""
        if topic not in self._topics:
            return False
        self._values[topic] = TopicValue(payload, self._monotonic())
        return True

    def set_problem(self, text: str) -> None:
        """Why no messages come now ("" while connected)."""
        self._problem = text

    def _update(self) -> None:
        topics = frozenset().union(*self._owners.values()) if self._owners else frozenset()
        if topics != self._topics:
            self._topics = topics
            for gone in [t for t in self._values if t not in topics]:
                del self._values[gone]
            self.changed.set()
