"""Handing current from one car to another without overshoot.

The allocation keeps every limit as if the cars followed their new currents at once. They
do not: a car that gets less keeps drawing for a few seconds (its lag), and one that was
still ramping up towards its last current goes on rising for a moment; a car that gets
more in the same cycle, or starts, may then overload the limit in between. So on every
limited (node, phase) a car counts with the most it may draw while it changes over:

    Σ max(new current, last cycle's current, what it draws now)  ≤  limit

Where that does not hold, the increases wait for the decreases, in this order:

1. cars that would start this cycle (the last admitted first; a car paused only while
   readings were missing starts again like one) wait for a later cycle;
2. cars that already charge rise less, in whole current steps (the largest rise first),
   never below their last current or what they draw now; a probe (drawing.py) that would
   raise a car's minimum waits too.

A cycle or two later the others are seen to have come down and the rest follows. Loads we
do not control this cycle (cars a rule stops) count with their last current and what they
draw; offline and disabled EVSEs are already in the limits. Pure: works on the cycle's
Work only.
"""

from __future__ import annotations

from chargebrain.core.balancer.data import PauseReason
from chargebrain.core.balancer.prepare import (
    MASK_PHASES,
    Slot,
    Work,
    worst_mask,
)


def hand_over(w: Work, limits: list[int], admitted: list[Slot], movers: list[Slot],
              others: list[Slot]) -> None:
    """Hold back increases that the cars' present and last currents leave no room for.

    `limits`: per (node, phase) the capacity before admission (after fixed loads);
    `admitted`: the admitted candidates in the order they were admitted; `movers`: the
    candidates that had a current last cycle or draw now (only they can count above
    their new current); `others`: the EVSEs neither fixed nor competing (idle).
    """
    step = max(w.tun.current_step_ma, 1)
    # The admitted currents alone keep every limit (w.load holds them); only what some
    # EVSEs had or draw above their new current can overload.
    usage = list(w.load)
    if not _add_excess(w, movers, others, usage, step):
        return
    over = [c for c, u in enumerate(usage) if u > limits[c]]
    if not over:
        return
    new: dict[int, int] = {}  # id of a slot -> its new current, where changed here
    changed: list[Slot] = []
    for c in over:
        excess = usage[c] - limits[c]
        if excess <= 0:
            continue
        cars = [s for s in admitted if c in s.cons]  # in the order they were admitted
        if cars:
            excess = _defer_starts(w, c, excess, cars, new, changed, usage)
        if excess > 0 and cars:
            _slow_rises(w, c, excess, cars, new, changed, usage)
    for s in changed:
        if s.admitted:
            _settle(s, new[id(s)])


def _old(s: Slot) -> int:
    """The current decided for this EVSE last cycle (0 for a new car)."""
    mem = s.mem
    return mem.last_set if mem.plugged and mem.last_set > 0 else 0


def _add_excess(w: Work, movers: list[Slot], others: list[Slot], usage: list[int],
                step: int) -> bool:
    """Add to `usage` what controlled EVSEs had or draw above their new current, per
    (node, phase); False if there is none. Candidates under the same limits (the same
    constraint tuple) are summed per phase first, then added to each limit once."""
    found = False
    by_cons: dict[int, tuple[tuple[int, ...], list[int]]] = {}  # id(cons) -> sums
    for s in movers:
        d, mem = s.drawn, s.mem
        old = mem.last_set if mem.plugged and mem.last_set > 0 else 0
        cur = s.min + s.extra - s.extra % step if s.admitted else 0
        d0, d1, d2 = d
        if cur >= old and cur >= d0 and cur >= d1 and cur >= d2:
            continue
        cons = s.cons
        got = by_cons.get(id(cons))
        if got is None:
            sums = [0, 0, 0]
            by_cons[id(cons)] = (cons, sums)
        else:
            sums = got[1]
        top = d0 if d0 > old else old
        if top > cur:
            sums[0] += top - cur
        top = d1 if d1 > old else old
        if top > cur:
            sums[1] += top - cur
        top = d2 if d2 > old else old
        if top > cur:
            sums[2] += top - cur
    for cons, sums in by_cons.values():
        for c in cons:
            v = sums[c % 3]
            if v:
                usage[c] += v
                found = True
    index = w.tree.index
    for s in others:
        d, mem = s.drawn, s.mem
        old = mem.last_set if mem.plugged and mem.last_set > 0 else 0
        if not (old or d[0] or d[1] or d[2]):
            continue
        held = old if s.plugged else 0
        mask = (d[0] > 0) | (d[1] > 0) << 1 | (d[2] > 0) << 2
        held_mask = worst_mask(s.e, s.learnt, True) if held else 0
        for c in w.constraints(index.get(s.e.group, 0), mask | held_mask):
            p = c % 3
            got_p = max(held if held_mask >> p & 1 else 0, d[p])
            if got_p:
                usage[c] += got_p
                found = True
    return found


def _current(w: Work, s: Slot, new: dict[int, int]) -> int:
    """An admitted car's new current: as changed here, else its allocation's (the current
    above its minimum in whole steps)."""
    got = new.get(id(s))
    if got is not None:
        return got
    extra = s.extra
    return s.min + extra - extra % max(w.tun.current_step_ma, 1)


def _counted(s: Slot, cur: int, p: int) -> int:
    """What a candidate counts on phase `p` with new current `cur`."""
    return max(cur, _old(s), s.drawn[p])


def _change(w: Work, s: Slot, new: dict[int, int], changed: list[Slot], cur: int,
            usage: list[int]) -> None:
    """Set a slot's new current; update the usage of every limit it is under and the
    imbalance count."""
    old = _current(w, s, new)
    last, d = _old(s), s.drawn
    # per phase: _counted(s, old, p) - _counted(s, cur, p)
    less = [max(old, last, d[p]) - max(cur, last, d[p]) for p in range(3)]
    for c in s.cons:
        usage[c] -= less[c % 3]
    if old != cur:
        w.count(s, cur - old)
    if id(s) not in new:
        changed.append(s)
    new[id(s)] = cur


def _balanced(w: Work, s: Slot, old: int, cur: int) -> bool:
    """Lowering `s` from `old` to `cur` keeps the phase imbalance within its bounds."""
    if w.imb_limit <= 0 or cur >= old or not (s.hmask or s.lmask):
        return True
    allowed = max(w.imb_limit, w.imbalance())
    w.count(s, cur - old)
    ok = w.imbalance() <= allowed
    w.count(s, old - cur)
    return ok


def _defer_starts(
    w: Work, c: int, excess: int, cars: list[Slot], new: dict[int, int], changed: list[Slot],
    usage: list[int],
) -> int:
    """Cars that would start on limit `c` wait; returns the excess left. `cars`: the
    admitted cars under `c`, in the order they were admitted."""
    p = c % 3
    for s in reversed(cars):
        if excess <= 0:
            break
        if (s.incumbent and _old(s)) or not s.admitted:
            continue  # a car paused while readings were missing starts again like a new one
        cur = _current(w, s, new)
        freed = _counted(s, cur, p) - _counted(s, 0, p)
        if freed <= 0 or not _balanced(w, s, cur, 0):
            continue
        excess -= freed
        _change(w, s, new, changed, 0, usage)
        s.admitted = False
        s.paused = True
        s.data_pause = s.mem.data_pause  # it is still the car the readings stopped
        s.fail = c
        s.pause_reason = PauseReason.SHORTAGE
        s.reason = f"waiting for other cars to come down ({w.label_of(c)})"
    return excess


def _slow_rises(
    w: Work, c: int, excess: int, cars: list[Slot], new: dict[int, int], changed: list[Slot],
    usage: list[int],
) -> None:
    """Charging cars on limit `c` (`cars`: the admitted cars under it) rise less, in whole
    steps, largest rise first."""
    step = max(w.tun.current_step_ma, 1)
    p = c % 3
    rising = []
    for s in cars:
        if s.admitted and s.incumbent:
            mem = s.mem
            old = mem.last_set if mem.plugged and mem.last_set > 0 else 0  # _old(s)
            if old:
                got = new.get(id(s))
                if got is None:
                    got = s.min + s.extra - s.extra % step
                rise = got - max(old, s.drawn[p])
                if rise > 0:
                    rising.append((-rise, s.e.id, s))
    rising.sort(key=lambda r: (r[0], r[1]))
    for _, _, s in rising:
        if excess <= 0:
            break
        cur = _current(w, s, new)
        floor = max(_old(s), max(s.drawn[q] for q in MASK_PHASES[s.bmask]))
        k = -(-min(excess, cur - floor) // step)
        while k > 0 and (cur - k * step < floor or not _balanced(w, s, cur, cur - k * step)):
            k -= 1
        if k <= 0:
            continue
        before = usage[c]
        _change(w, s, new, changed, cur - k * step, usage)
        excess -= before - usage[c]
        s.bound, s.held = c, True


def _settle(s: Slot, cur: int) -> None:
    """Write a held-back current into the slot; one held below the minimum it would have
    had (a probe, a newly learnt start current) keeps its last current and waits."""
    if cur < s.min:
        s.min, s.probing = cur, False
    s.extra = cur - s.min
