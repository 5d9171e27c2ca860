"""The charging manager's allocation policy: who charges, and with how much current.

Two stages per cycle (see docs/load-management.md):
1. Admission: in priority order, each competing EVSE's minimum current is reserved if it
   fits under every limit on its building phases and keeps the phase imbalance in bounds;
   charging cars come first, then waiting cars (longest waiting first, with a restart
   margin and the minimum pause), then cars that have charged long enough to yield.
2. Filling: priority tier by priority tier, the current above the minimums is shared by
   max-min fair water filling over all (node, phase) limits and the imbalance limit.
Pure: same inputs and state give the same output; no I/O, no clock reads, no mutation of
inputs or of the carried state.
"""

from __future__ import annotations

from heapq import heapify, heappop, heapreplace

from chargebrain.core.balancer.data import Allocation, BalancerState, Limit, PauseReason, SiteInput
from chargebrain.core.balancer.prepare import (
    BY_CAP,
    BY_IMBALANCE,
    BY_TIMER,
    CANDIDATE,
    FITS,
    INF,
    Slot,
    Work,
    finish,
    prepare,
)

_PAIRS = ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))
_CAP_REASONS = {
    Limit.EVSE_MAX: "EVSE maximum",
    Limit.RULE: "rule",
    Limit.OVERRIDE: "override",
    Limit.CAR_DRAW: "car draw",
}


def allocate(site: SiteInput, state: BalancerState, now: float) -> Allocation:
    """Decide every EVSE's current for this cycle.

    `state` is the previous call's `Allocation.state` (or `BalancerState()` at start);
    `now` is the caller's clock in seconds.
    """
    w = prepare(site, state, now)
    cands = [s for s in w.slots if s.kind == CANDIDATE]
    admitted = admit(w, cands)
    admitted.sort(key=lambda s: s.tier)
    if w.imb_limit > 0:
        t = [w.imb_base[p] + w.load[p] for p in range(3)]
        w.imb_eff = max(w.imb_limit, max(t) - min(t))
    start = 0
    for i in range(1, len(admitted) + 1):
        if i == len(admitted) or admitted[i].tier != admitted[start].tier:
            water_fill(w, admitted[start:i])
            start = i
    explain(w, cands)
    return finish(w, state)


def admit(w: Work, cands: list[Slot]) -> list[Slot]:
    """Stage 1: reserve minimum currents in ranking order; returns the admitted slots."""
    now, tun = w.now, w.tun
    rotate_after, margin = tun.rotation_time_s, tun.restart_margin_ma
    for s in cands:
        mem = s.mem
        if s.incumbent:
            since = mem.charging_since if mem.charging_since is not None else now
            # Charging cars first, most recently started first; those that have charged
            # for the rotation time go behind the waiting cars of their tier.
            s.order = (2.0 if now - since >= rotate_after else 0.0, -since)
        else:
            waiting = mem.waiting_since if mem.waiting_since is not None else now
            plugged = s.plugged_since if s.plugged_since is not None else now
            s.order = (1.0, waiting, plugged)
    cands.sort(key=lambda s: (s.tier, s.order, s.e.id))

    admitted: list[Slot] = []
    rotated_tiers: set[tuple[float, ...]] = set()
    retry: list[Slot] = []
    for s in cands:
        need = s.min if s.incumbent else s.min + margin
        c = w.fits(s.cons, need)  # FITS or the first constraint it breaks
        if c == FITS and not w.imbalance_ok(s.bmask, need):
            c = BY_IMBALANCE
        if not s.incumbent and now < s.mem.pause_until:
            s.fail = BY_TIMER if c == FITS else c
            continue
        if c == FITS:
            s.admitted = True
            w.commit(s.cons, s.min)
            admitted.append(s)
            if not s.incumbent:
                rotated_tiers.add(s.tier)
        else:
            s.fail = c
            if c == BY_IMBALANCE:
                retry.append(s)
    # Imbalance is not monotone: a car refused earlier may fit once others balance it.
    progress = True
    while retry and progress:
        progress, rest = False, []
        for s in retry:
            need = s.min if s.incumbent else s.min + margin
            if w.fits(s.cons, need) == FITS and w.imbalance_ok(s.bmask, need):
                s.admitted, s.fail, progress = True, FITS, True
                w.commit(s.cons, s.min)
                admitted.append(s)
            else:
                rest.append(s)
        retry = rest
    for s in cands:
        if s.admitted:
            continue
        s.paused = True
        if s.fail == BY_TIMER:
            s.pause_reason = s.mem.pause_reason or PauseReason.SHORTAGE
            s.reason = "pause timer"
        elif s.fail == BY_IMBALANCE:
            s.pause_reason = PauseReason.IMBALANCE
            s.reason = "phase imbalance"
        elif s.incumbent and s.order[0] == 2.0 and s.tier in rotated_tiers:
            s.pause_reason = PauseReason.ROTATION
            s.reason = "round robin"
        else:
            s.pause_reason = PauseReason.SHORTAGE
            s.reason = f"minimum current not available ({w.label_of(s.fail)})"
    return admitted


def water_fill(w: Work, tier: list[Slot]) -> None:
    """Stage 2 for one priority tier: raise everyone's current above its minimum by the
    same amount until it meets its own cap, a (node, phase) limit or the imbalance limit.

    Integer arithmetic in whole current steps, so a limit is met exactly and never
    exceeded. A limit that binds this tier is closed afterwards: the sub-step remainder
    on it is not handed to lower priorities (they would otherwise get more than a
    higher-priority car that still wants more).
    """
    cap, load = w.cap, w.load
    step = max(w.tun.current_step_ma, 1)
    k = [0] * len(cap)
    users: dict[int, list[int]] = {}
    for i, s in enumerate(tier):
        for c in s.cons:
            if k[c] == 0:
                users[c] = [i]
            else:
                users[c].append(i)
            k[c] += 1
    rising = [True] * len(tier)
    left = len(tier)
    events = []
    for i, s in enumerate(tier):
        room = s.want - s.min
        events.append((room - room % step, i))
    events.sort()
    n_events = len(events)
    heap = []
    for c in users:
        q = (cap[c] - load[c]) // k[c]
        heap.append((q - q % step, c))
    heapify(heap)
    imb_limit = w.imb_eff
    base = w.imb_base
    reserve = w.imb_reserve
    ptr = 0

    def freeze(i: int, lam: int, why: int) -> None:
        nonlocal left
        s = tier[i]
        rising[i] = False
        left -= 1
        s.extra = lam
        s.bound = why
        for c in s.cons:
            load[c] += lam
            k[c] -= 1

    while left:
        while ptr < n_events and not rising[events[ptr][1]]:
            ptr += 1
        cap_lam = events[ptr][0] if ptr < n_events else INF
        best_c, best = -1, INF
        while heap:
            lam, c = heap[0]
            kc = k[c]
            if kc == 0:
                heappop(heap)
                continue
            q = (cap[c] - load[c]) // kc
            actual = q - q % step
            if actual > lam:
                heapreplace(heap, (actual, c))
                continue
            best_c, best = c, actual
            break
        imb_lam, imb_p, imb_q = INF, -1, -1
        if imb_limit > 0:
            for p, q in _PAIRS:
                d = k[p] - k[q]
                if d > 0:
                    gap = imb_limit - (base[p] + load[p] - base[q] - load[q]) - reserve[p * 3 + q]
                    lam = gap // d
                    lam -= lam % step
                    if lam < imb_lam:
                        imb_lam, imb_p, imb_q = lam, p, q
        # The earliest event wins; a cap reached at the same level as a limit counts as the
        # car's own cap (it wants no more).
        if cap_lam <= best and cap_lam <= imb_lam:
            while ptr < n_events and events[ptr][0] == cap_lam:
                i = events[ptr][1]
                if rising[i]:
                    freeze(i, cap_lam, BY_CAP)
                ptr += 1
        elif best <= imb_lam:
            best = max(best, 0)
            for i in users[best_c]:
                if rising[i]:
                    freeze(i, best, best_c)
            cap[best_c] = load[best_c]
        else:
            imb_lam = max(imb_lam, 0)
            pbit, qbit = 1 << imb_p, 1 << imb_q
            for i, s in enumerate(tier):
                if rising[i] and s.bmask & pbit and not s.bmask & qbit:
                    freeze(i, imb_lam, BY_IMBALANCE)
            pq = imb_p * 3 + imb_q
            gap = imb_limit - (base[imb_p] + load[imb_p] - base[imb_q] - load[imb_q])
            reserve[pq] = max(gap, 0)


def explain(w: Work, cands: list[Slot]) -> None:
    """Name what binds each admitted EVSE's current."""
    for s in cands:
        if not s.admitted:
            continue
        if s.bound == BY_CAP:
            s.lreason = s.cap_kind
            s.reason = _CAP_REASONS[s.cap_kind]
        elif s.bound == BY_IMBALANCE:
            s.lreason = Limit.IMBALANCE
            s.reason = "phase imbalance"
        else:
            s.lreason = w.kind_of(s.bound)
            s.reason = w.label_of(s.bound)
