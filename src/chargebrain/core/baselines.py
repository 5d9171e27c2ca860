"""Naive allocation policies to measure the balancer against (simulator, benchmarks).

Both take the same inputs and return the same Allocation as
chargebrain.core.balancer.allocate, and share its preparation (tree, capacities, offline
and disabled handling), so a comparison shows the effect of the policy alone. They keep
every (node, phase) limit but nothing else: no pause timer, no rotation, no lending, no
imbalance check. They must never be used to drive real EVSEs.
"""

from __future__ import annotations

from chargebrain.core.balancer.data import (
    Allocation,
    BalancerState,
    PauseReason,
    SiteInput,
)
from chargebrain.core.balancer.prepare import (
    BY_CAP,
    CANDIDATE,
    CAP_REASONS,
    INF,
    Slot,
    Work,
    finish,
    prepare,
)


def equal_split(site: SiteInput, state: BalancerState, now: float) -> Allocation:
    """Every competing EVSE gets the same share of each limit it sits under (capped at
    what it may take); if any share is below that EVSE's minimum, every EVSE stops."""
    w = prepare(site, state, now)
    cands = _candidates(w)
    users: dict[int, int] = {}
    for s in cands:
        for c in s.cons:
            users[c] = users.get(c, 0) + 1
    shares: list[tuple[Slot, int, int]] = []
    for s in cands:
        share, by = INF, BY_CAP
        for c in s.cons:
            v = w.cap[c] // users[c]
            if v < share:
                share, by = v, c
        if s.want <= share:
            share, by = s.want, BY_CAP
        shares.append((s, share, by))
    if any(share < s.min for s, share, _ in shares):
        for s, share, by in shares:
            s.paused = True
            s.pause_reason = PauseReason.SHORTAGE
            where = f" ({w.label_of(by)})" if share < s.min and by != BY_CAP else ""
            s.reason = f"minimum current not available{where}"
    else:
        for s, share, by in shares:
            _admit(w, s, share, by)
    return finish(w, state)


def fcfs_priority(site: SiteInput, state: BalancerState, now: float) -> Allocation:
    """In priority order, then by plug-in time, each EVSE takes all it may from what is
    left; one that cannot get its minimum waits, with no rotation."""
    w = prepare(site, state, now)
    cands = _candidates(w)
    cands.sort(key=lambda s: (s.tier, now if s.plugged_since is None else s.plugged_since, s.e.id))
    cap, load = w.cap, w.load
    for s in cands:
        room, by = s.want, BY_CAP
        for c in s.cons:
            v = cap[c] - load[c]
            if v < room:
                room, by = v, c
        if room >= s.min:
            _admit(w, s, room, by)
            w.commit(s.cons, room)
        else:
            s.paused = True
            s.pause_reason = PauseReason.SHORTAGE
            s.reason = f"minimum current not available ({w.label_of(by)})"
    return finish(w, state)


def _candidates(w: Work) -> list[Slot]:
    cands = [s for s in w.slots if s.kind == CANDIDATE]
    for s in cands:
        s.want, s.cap_kind = s.max_want, s.max_kind
    return cands


def _admit(w: Work, s: Slot, current: int, by: int) -> None:
    s.admitted = True
    s.extra = current - s.min
    s.bound = by
    if by == BY_CAP:
        s.lreason, s.reason = s.cap_kind, CAP_REASONS[s.cap_kind]
    else:
        s.lreason, s.reason = w.kind_of(by), w.label_of(by)
