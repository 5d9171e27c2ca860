"""No pause timer for a car stopped by a configuration change.

The minimum pause (`min_pause_time`) keeps a car that was charging from flapping when the
power it shares with others comes and goes. A car stopped in the cycle in which the
configuration changed (devices added, removed or regrouped, a phase rotation, a limit or
any other site parameter set) was stopped by the change, not by anything that comes and
goes: it waits like a car that has not started, and charges as soon as there is room.

So that a client writing settings every few seconds cannot make a car flap either, an
EVSE is released this way at most once per `min_pause_time`; a second stop within that
time keeps its timer.
"""

from __future__ import annotations

from dataclasses import replace

from chargebrain.core.balancer import Allocation, BalancerState, EvseMemory


class ConfigPauses:
    """Takes the pause timer off cars stopped in a cycle whose configuration changed."""

    def __init__(self) -> None:
        self._config: tuple[object, ...] | None = None
        self._released: dict[str, float] = {}  # EVSE id -> when its timer was last taken off

    def release(self, config: tuple[object, ...], before: BalancerState, alloc: Allocation,
                now: float, min_pause_s: float) -> Allocation:
        """`alloc` with the timers set in this cycle taken off when `config` (what the
        configuration is made of: compared by equality) differs from the last cycle's.
        `before` is the state the cycle started from."""
        changed = self._config is not None and config != self._config
        self._config = config
        if not changed:
            return alloc
        after = alloc.state.evses
        freed: dict[str, EvseMemory] = {}
        for dev_id, mem in after.items():
            if mem.pause_until <= now:
                continue
            old = before.evses.get(dev_id)
            if old is None or old.last_set <= 0 or old.pause_until > now:
                continue  # it was not charging, or its timer was running already
            if now - self._released.get(dev_id, -min_pause_s) < min_pause_s:
                continue  # released once within the minimum pause: the timer stays
            freed[dev_id] = replace(mem, pause_until=0.0)
            self._released[dev_id] = now
        if not freed:
            return alloc
        state = replace(alloc.state, evses={**after, **freed})
        return replace(alloc, state=state)

    def forget(self, dev_id: str) -> None:
        """The EVSE was removed or reset."""
        self._released.pop(dev_id, None)
