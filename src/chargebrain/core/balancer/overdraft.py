"""The overdraft penalty: an overshoot of the connection limit comes off the available
current for a while.

The measured total per phase (non-EVSE load plus what the EVSEs are measured to draw)
above `max_total_current` is an overshoot; the largest is kept in `overdraft_cur`. It is
split by who caused it:

* the EVSEs, by drawing more than the manager gave them: per phase, the overshoot up to
  the sum over EVSEs of what each draws above its current (the larger of its last current
  and, for `settle_s` after a change, the one before: a car still coming down is not
  overdrawing). That part comes off the available current for `overdraft_penalty_time`
  (300 s): the allocation itself cannot see it, so it would happen again.
* the rest of the house, up to what its load rose since the last cycle (a step of the
  household load with the cars at the limit): the next cycle already sees the higher
  load, so that part only comes off for `house_penalty_s` (120 s), room for the peaks
  that follow a step (inrush, cycling appliances), not for five minutes; and it lowers
  charging cars but pauses none (they may keep their minimum within it, see
  `Work.soft`): the house did not rise because of them.

The rest of an overshoot is no one's: the cars draw what they were given and the house
did not rise; the last allocation, read under today's configuration, was over the limit
(a phase rotation changed under charging cars), and this cycle's allocation sees it.
Each part keeps the largest overshoot of its window, from the latest; the two add up.

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

from chargebrain.core.balancer.data import BalancerState, EvseMemory, Measurement
from chargebrain.core.balancer.work import Work
from chargebrain.core.phases import Phases


def given(mem: EvseMemory, now: float, settle_s: float) -> int:
    """The most an EVSE was given lately: its last current, or the one before it for
    `settle_s` after a change (a car follows a lower current within seconds)."""
    last = mem.last_set if mem.last_set > 0 else 0
    if mem.prev_set > last and now - mem.set_at < settle_s:
        return mem.prev_set
    return last


def overdraft(w: Work, site_m: Measurement, state: BalancerState) -> list[int]:
    """The penalty per phase in force this cycle (both parts); sets the Work's penalties,
    their ends, `pen_applied`, `overshoot` and `overdraft_cur`. `w.consumed` and `w.excess` must be
    filled."""
    cfg, now = w.cfg, w.now
    # The currents measured now were set under last cycle's limit; a limit that just
    # dropped is not an overdraw until the cars have had a cycle to follow it.
    limit = cfg.max_total_current
    if state.prev_max_total is not None and state.prev_max_total > limit:
        limit = state.prev_max_total
    pen, until = list(state.penalty), list(state.penalty_until)
    house, house_until = list(state.house_penalty), list(state.house_until)
    consumed, excess = w.consumed, w.excess
    before = state.prev_load
    w.site_load = site_m.current
    worst = 0
    for p in range(3):
        if now >= until[p]:
            pen[p] = 0
        if now >= house_until[p]:
            house[p] = 0
        if site_m.stale >> p & 1:
            continue
        over = site_m.current[p] + consumed[p] - limit
        if over <= 0:
            continue
        worst = max(worst, over)
        own = min(over, excess[p])
        if own > 0:
            pen[p] = max(pen[p], own)
            until[p] = now + cfg.overdraft_penalty_time
        rise = site_m.current[p] - (before[p] if before is not None else 0)
        step = min(over - own, rise)
        if step > 0:
            house[p] = max(house[p], step)
            house_until[p] = now + w.tun.house_penalty_s
    w.penalty, w.penalty_until = Phases.of(pen), (until[0], until[1], until[2])
    w.house_penalty = Phases.of(house)
    w.house_until = (house_until[0], house_until[1], house_until[2])
    w.overshoot = worst
    w.overdraft_cur = max(state.overdraft_cur, worst)
    total = [pen[p] + house[p] for p in range(3)]
    w.pen_applied = Phases.of(total)
    w.house_applied = house
    return total
