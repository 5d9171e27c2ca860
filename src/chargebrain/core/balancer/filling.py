"""Stage 2 of the allocation: sharing the current above the minimums of a priority tier.

Max-min fair water filling over every (node, phase) limit a tier's cars sit under, each
car's own cap and the phase imbalance limit, in whole current steps (a limit is met
exactly, never exceeded); then the cars the imbalance stopped are filled again from
where they stood, since the imbalance is not monotone. Pure: works on the cycle's Work.
"""

from __future__ import annotations

from heapq import heapify, heappop, heapreplace

from chargebrain.core.balancer.work import (
    BY_CAP,
    BY_IMBALANCE,
    INF,
    MASK_PHASES,
    Slot,
    Work,
)

_REFILLS = 3  # rounds of filling again after the phase imbalance stopped some cars


def fill_tier(w: Work, tier: list[Slot]) -> None:
    """Stage 2 for one priority tier: water filling, then again for the cars the phase
    imbalance stopped. The imbalance is not monotone: cars on a phase with many cars are
    stopped early while those on the other phases still rise, and once these have risen
    there may be room for the first again."""
    water_fill(w, tier)
    for _ in range(_REFILLS):
        again = [s for s in tier if s.bound == BY_IMBALANCE and s.min + s.extra < s.want]
        if not again:
            return
        done = [s.extra for s in again]
        for s, extra in zip(again, done, strict=True):
            s.min += extra  # rise from where they stopped
        water_fill(w, again)
        for s, extra in zip(again, done, strict=True):
            s.min -= extra
            s.extra += extra
        if all(s.extra == extra for s, extra in zip(again, done, strict=True)):
            return


def water_fill(w: Work, tier: list[Slot]) -> None:
    """Stage 2 for one priority tier: raise everyone's current above its minimum by the
    same amount until it meets its own cap, a (node, phase) limit or the imbalance limit.

    Integer arithmetic in whole current steps, so a limit is met exactly and never
    exceeded. A limit that binds this tier is closed afterwards: the sub-step remainder
    on it is not handed to lower priorities (they would otherwise get more than a
    higher-priority car that still wants more).

    Cars under the same limits (the same constraint tuple, which the cycle's memo shares
    between EVSEs of one group and phase mask) are counted as one group: the group's
    limits are updated once per freeze, by the number of its cars that stop rising.
    """
    cap, load = w.cap, w.load
    step = max(w.tun.current_step_ma, 1)
    n = len(tier)
    k = [0] * len(cap)
    group_of: dict[int, int] = {}  # id of a constraint tuple -> group
    gcons: list[tuple[int, ...]] = []
    members: list[list[int]] = []
    car_group = [0] * n
    khi, klo = [0, 0, 0], [0, 0, 0]  # rising cars that may / surely draw on each phase
    events = []
    hcars = []  # the cars an imbalance limit can stop (those with an hmask)
    # A car that surely draws only what it draws now counts as surely drawing while it
    # rises up to that (`sure_events`: the level it stops at), on the heavy side all along.
    sure_events: list[tuple[int, int]] = []
    in_lo = [False] * n
    for i, s in enumerate(tier):
        cons = s.cons
        g = group_of.get(id(cons))
        if g is None:
            g = group_of[id(cons)] = len(gcons)
            gcons.append(cons)
            members.append([i])
        else:
            members[g].append(i)
        car_group[i] = g
        if s.hmask:
            hcars.append(i)
            for p in MASK_PHASES[s.hmask]:
                khi[p] += 1
        if s.lmask:
            sure = s.sure_draw - s.min if s.sure_draw >= 0 else INF
            if sure > 0:
                in_lo[i] = True
                for p in MASK_PHASES[s.lmask]:
                    klo[p] += 1
                if sure < INF:
                    sure_events.append((sure, i))
        room = s.want - s.min
        events.append((room - room % step, i))
    users: dict[int, list[int]] = {}  # constraint -> the groups under it
    for g, cons in enumerate(gcons):
        m = len(members[g])
        for c in cons:
            if k[c] == 0:
                users[c] = [g]
            else:
                users[c].append(g)
            k[c] += m
    sure_events.sort()
    sure_ptr, n_sure = 0, len(sure_events)
    rising = [True] * n
    left = n
    events.sort()
    n_events = len(events)
    heap = []
    for c in users:
        q = (cap[c] - load[c]) // k[c]
        heap.append((q - q % step, c))
    heapify(heap)
    imb_limit = w.imb_eff
    base, hi, lo = w.imb_base, w.ihi, w.ilo
    reserve = w.imb_reserve
    ptr = 0

    def freeze(cars: list[int], lam: int, why: int) -> None:
        """Stop these rising cars at `lam` above their minimum, bound by `why`."""
        nonlocal left
        stopped: dict[int, int] = {}  # group -> its cars stopped now
        for i in cars:
            s = tier[i]
            rising[i] = False
            s.extra = lam
            s.bound = why
            g = car_group[i]
            stopped[g] = stopped.get(g, 0) + 1
            if s.hmask:
                for p in MASK_PHASES[s.hmask]:
                    hi[p] += lam
                    khi[p] -= 1
            if in_lo[i]:
                in_lo[i] = False
                for p in MASK_PHASES[s.lmask]:
                    lo[p] += lam
                    klo[p] -= 1
        left -= len(cars)
        for g, m in stopped.items():
            added = lam * m
            for c in gcons[g]:
                load[c] += added
                k[c] -= m

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
        first = cap_lam if cap_lam < best else best
        while True:
            imb_lam, imb_p, imb_q = INF, -1, -1
            if imb_limit > 0 and (khi[0] or khi[1] or khi[2]):  # else no pair can bind
                imb_lam, imb_p, imb_q = _imbalance_event(
                    imb_limit, step, base, hi, lo, khi, klo, reserve)
            while sure_ptr < n_sure and not in_lo[sure_events[sure_ptr][1]]:
                sure_ptr += 1
            if sure_ptr == n_sure or sure_events[sure_ptr][0] > min(first, imb_lam):
                break
            # A car reaches what it draws now: above it, it no longer surely draws. (Only
            # the imbalance event moves: the caps and limits stay where they were.)
            sure_lam, i = sure_events[sure_ptr]
            sure_ptr += 1
            in_lo[i] = False
            for p in MASK_PHASES[tier[i].lmask]:
                lo[p] += sure_lam
                klo[p] -= 1
        # The earliest event wins; a cap reached at the same level as a limit counts as the
        # car's own cap (it wants no more).
        if cap_lam <= best and cap_lam <= imb_lam:
            capped = []
            while ptr < n_events and events[ptr][0] == cap_lam:
                i = events[ptr][1]
                if rising[i]:
                    capped.append(i)
                ptr += 1
            freeze(capped, cap_lam, BY_CAP)
        elif best <= imb_lam:
            best = max(best, 0)
            freeze([i for g in users[best_c] for i in members[g] if rising[i]], best, best_c)
            # Closed to lower priorities; never opened: cars kept at their minimum within
            # the house's part of the overdraft penalty stand beyond the capacity.
            cap[best_c] = min(cap[best_c], load[best_c])
        else:
            imb_lam = max(imb_lam, 0)
            pbit, qbit = 1 << imb_p, 1 << imb_q
            freeze([i for i in hcars if rising[i] and tier[i].hmask & pbit
                    and not (in_lo[i] and tier[i].lmask & qbit)], imb_lam, BY_IMBALANCE)
            pq = imb_p * 3 + imb_q
            gap = imb_limit - (base[imb_p] + hi[imb_p] - base[imb_q] - lo[imb_q])
            reserve[pq] = max(gap, 0)


def _imbalance_event(
    limit: int, step: int, base: list[int], hi: list[int], lo: list[int], khi: list[int],
    klo: list[int], reserve: list[int],
) -> tuple[int, int, int]:
    """The lowest level (whole steps) at which a pair of phases (p, q) reaches the
    imbalance limit, with p and q: over the pairs in PAIRS' order, the first lowest wins;
    (INF, -1, -1) if no pair's spread grows. Spelt out pair by pair: it runs at every
    event of the filling."""
    h0, h1, h2 = base[0] + hi[0], base[1] + hi[1], base[2] + hi[2]
    l0, l1, l2 = base[0] + lo[0], base[1] + lo[1], base[2] + lo[2]
    kh0, kh1, kh2 = khi
    kl0, kl1, kl2 = klo
    best, bp, bq = INF, -1, -1
    d = kh0 - kl1
    if d > 0:
        lam = (limit - (h0 - l1) - reserve[1]) // d
        lam -= lam % step
        if lam < best:
            best, bp, bq = lam, 0, 1
    d = kh0 - kl2
    if d > 0:
        lam = (limit - (h0 - l2) - reserve[2]) // d
        lam -= lam % step
        if lam < best:
            best, bp, bq = lam, 0, 2
    d = kh1 - kl0
    if d > 0:
        lam = (limit - (h1 - l0) - reserve[3]) // d
        lam -= lam % step
        if lam < best:
            best, bp, bq = lam, 1, 0
    d = kh1 - kl2
    if d > 0:
        lam = (limit - (h1 - l2) - reserve[5]) // d
        lam -= lam % step
        if lam < best:
            best, bp, bq = lam, 1, 2
    d = kh2 - kl0
    if d > 0:
        lam = (limit - (h2 - l0) - reserve[6]) // d
        lam -= lam % step
        if lam < best:
            best, bp, bq = lam, 2, 0
    d = kh2 - kl1
    if d > 0:
        lam = (limit - (h2 - l1) - reserve[7]) // d
        lam -= lam % step
        if lam < best:
            best, bp, bq = lam, 2, 1
    return best, bp, bq
