"""What the gateway's charge point has to tell its backend, in order, while the backend is
away and after.

Every message is queued with the moment it describes (its timestamp) and sent one at a
time, oldest first, each only after the previous one was answered. The queue is bounded:
beyond `capacity`, every other queued meter value is dropped (the first and the last
stay), so that a long absence is still covered, at a coarser step; with no meter values
left to thin, status notifications that a later one for the same connector makes moot
go. Transaction messages (StartTransaction, StopTransaction) are never dropped: a queue
of nothing but those may outgrow its bound. The first message, which may be on its way, stays.

A message's payload is made when it is sent (`Outgoing.payload`), so that it can name
what only an earlier answer told (the backend's transaction id).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from chargebrain.servers.ocpp.adapter import Payload

CAPACITY = 1000
TRANSACTION = "transaction"
STATUS = "status"
METER = "meter"


class Skip(Exception):
    """Raised by a payload maker: nothing is to be sent after all (the message is
    dropped, quietly)."""


@dataclass(eq=False)
class Outgoing:
    """One call to make: its action, what it is (TRANSACTION, STATUS, METER), the
    connector it concerns, the moment it describes, how to make its payload, and what to
    do with the answer."""

    action: str
    kind: str
    connector: int
    at: float
    payload: Callable[[], Payload]
    answered: Callable[[Payload], None] | None = None
    attempts: int = field(default=0, compare=False)


class Outbox:
    """The queue of one charge point's messages."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._items: deque[Outgoing] = deque()
        self.dropped = 0  # meter values and statuses dropped so far

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Outgoing]:
        return iter(self._items)

    def put(self, item: Outgoing) -> None:
        self._items.append(item)
        if len(self._items) > self.capacity:
            self._thin()

    def first(self) -> Outgoing | None:
        return self._items[0] if self._items else None

    def done(self, item: Outgoing) -> None:
        """`item` (the first) was answered, or given up."""
        if self._items and self._items[0] is item:
            self._items.popleft()

    def _thin(self) -> None:
        items = list(self._items)
        meters = [i for i, it in enumerate(items) if it.kind == METER and i > 0]
        drop: set[int] = set(meters[1:-1:2])  # the first and the last stay
        if not drop:
            later: set[int] = set()
            for i in range(len(items) - 1, 0, -1):
                it = items[i]
                if it.kind != STATUS:
                    continue
                if it.connector in later:
                    drop.add(i)
                later.add(it.connector)
        if not drop:
            return  # transactions only: they are kept
        self.dropped += len(drop)
        self._items = deque(it for i, it in enumerate(items) if i not in drop)
