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
    PAIRS,
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
    """
    cap, load = w.cap, w.load
    step = max(w.tun.current_step_ma, 1)
    k = [0] * len(cap)
    users: dict[int, list[int]] = {}
    khi, klo = [0, 0, 0], [0, 0, 0]  # rising cars that may / surely draw on each phase
    events = []
    for i, s in enumerate(tier):
        for c in s.cons:
            if k[c] == 0:
                users[c] = [i]
            else:
                users[c].append(i)
            k[c] += 1
        if s.hmask:
            for p in MASK_PHASES[s.hmask]:
                khi[p] += 1
        if s.lmask:
            for p in MASK_PHASES[s.lmask]:
                klo[p] += 1
        room = s.want - s.min
        events.append((room - room % step, i))
    rising = [True] * len(tier)
    left = len(tier)
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
        if s.hmask:
            for p in MASK_PHASES[s.hmask]:
                hi[p] += lam
                khi[p] -= 1
        if s.lmask:
            for p in MASK_PHASES[s.lmask]:
                lo[p] += lam
                klo[p] -= 1

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
            for p, q in PAIRS:
                d = khi[p] - klo[q]
                if d > 0:
                    gap = imb_limit - (base[p] + hi[p] - base[q] - lo[q]) - reserve[p * 3 + q]
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
            # Closed to lower priorities; never opened: cars kept at their minimum within
            # the house's part of the overdraft penalty stand beyond the capacity.
            cap[best_c] = min(cap[best_c], load[best_c])
        else:
            imb_lam = max(imb_lam, 0)
            pbit, qbit = 1 << imb_p, 1 << imb_q
            for i, s in enumerate(tier):
                if rising[i] and s.hmask & pbit and not s.lmask & qbit:
                    freeze(i, imb_lam, BY_IMBALANCE)
            pq = imb_p * 3 + imb_q
            gap = imb_limit - (base[imb_p] + hi[imb_p] - base[imb_q] - lo[imb_q])
            reserve[pq] = max(gap, 0)
