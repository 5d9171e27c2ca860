"""HeapKeeper: what survives a full collection is frozen, and tidying the frozen heap
still frees reference cycles among frozen objects."""

from __future__ import annotations

import asyncio
import gc
import weakref

from chargebrain.heap import HeapKeeper


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle_of_two() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def test_survivors_of_a_full_collection_are_frozen_and_tidying_frees_cycles() -> None:
    keeper = HeapKeeper(tidy_s=3600.0)
    keeper.start()
    try:
        assert gc.get_freeze_count() > 0
        kept = [Node() for _ in range(1000)]
        frozen = gc.get_freeze_count()
        gc.collect()  # a full collection: its survivors are frozen on the loop just after
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert gc.get_freeze_count() >= frozen + len(kept)
        # A cycle that became garbage after it was frozen: no collection frees it ...
        ref = cycle_of_two()
        gc.freeze()
        gc.collect(0)
        gc.collect(1)
        assert ref() is not None
        # ... until the frozen heap is tidied.
        keeper.tidy()
        assert ref() is None
        assert keeper.tidied == 1
    finally:
        keeper.stop()
    assert gc.get_freeze_count() == 0
    assert keeper._collected not in gc.callbacks
