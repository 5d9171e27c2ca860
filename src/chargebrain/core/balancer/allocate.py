"""The charging manager's allocation policy: who charges, and with how much current.

Per cycle (see docs/load-management.md), priority tier by priority tier, highest first
(a lower tier gets what the higher ones cannot use):
1. Admission: each competing EVSE's minimum current is reserved if it fits under every
   limit on its building phases and keeps the phase imbalance in bounds; charging cars
   come first, then waiting cars and cars that have charged long enough to give way, the
   least charge given first; idle cars (drawing nothing) are set aside.
2. Filling: the current above the tier's minimums is shared by max-min fair water
   filling over all (node, phase) limits and the imbalance limit.
Then cars refused for the imbalance are tried once more; idle cars get their minimum
where it still fits; increases that cars still coming down leave no room for wait
(handover.py).
Pure: same inputs and state give the same output; no I/O, no clock reads, no mutation of
inputs or of the carried state.
"""

from __future__ import annotations

from heapq import heapify, heappop, heapreplace

from chargebrain.core.balancer.data import Allocation, BalancerState, Limit, PauseReason, SiteInput
from chargebrain.core.balancer.drawing import floor_of
from chargebrain.core.balancer.handover import hand_over
from chargebrain.core.balancer.prepare import (
    BY_CAP,
    BY_IMBALANCE,
    BY_TIMER,
    CANDIDATE,
    FITS,
    INF,
    MASK_PHASES,
    NOT_SET,
    PAIRS,
    Slot,
    Work,
    finish,
    prepare,
)

_CAP_REASONS = {
    Limit.EVSE_MAX: "EVSE maximum",
    Limit.RULE: "rule",
    Limit.OVERRIDE: "override",
    Limit.CAR_DRAW: "car draw",
    Limit.BACKEND: "OCPP backend",
}
_IDLE_REASON = "car not drawing"
_REFILLS = 3  # rounds of filling again after the phase imbalance stopped some cars


def allocate(site: SiteInput, state: BalancerState, now: float) -> Allocation:
    """Decide every EVSE's current for this cycle.

    `state` is the previous call's `Allocation.state` (or `BalancerState()` at start);
    `now` is the caller's clock in seconds.
    """
    w = prepare(site, state, now)
    cands = [s for s in w.slots if s.kind == CANDIDATE]
    active, idle = split_idle(cands)
    limits = list(w.cap)
    order = by_priority(w, active)
    idle.extend(unprobe(active))
    order.extend(admit_idle(w, idle))
    hand_over(w, limits, order)
    explain(w, cands)
    return finish(w, state)


def by_priority(w: Work, active: list[Slot]) -> list[Slot]:
    """Tier by tier, highest priority first: admit the tier's minimums (stage 1), then
    give the tier everything above them it can use (stage 2); a lower tier gets what is
    left. Cars refused for the phase imbalance are tried again at the end, since lower
    tiers on the other phases may have balanced them. Returns the admitted slots in the
    order they were admitted."""
    active.sort(key=lambda s: s.tier)  # stable: ties keep their order
    blocked: dict[int, tuple[float, ...]] = {}
    order: list[Slot] = []
    start, n = 0, len(active)
    for i in range(1, n + 1):
        if i == n or active[i].tier != active[start].tier:
            admitted = admit(w, active[start:i], blocked)
            order.extend(admitted)
            fill(w, admitted)
            start = i
    refused = [s for s in active if s.fail == BY_IMBALANCE and not s.admitted]
    if refused:
        again = admit(w, refused, {}, once_more=True)
        if again:
            order.extend(again)
            fill(w, again)
    return order


def fill(w: Work, admitted: list[Slot]) -> None:
    """Stage 2 for cars just admitted (of one tier, or retried ones tier by tier)."""
    if w.imb_limit > 0:
        w.imb_eff = max(w.imb_limit, w.imbalance())
    start, n = 0, len(admitted)
    for i in range(1, n + 1):
        if i == n or admitted[i].tier != admitted[start].tier:
            fill_tier(w, admitted[start:i])
            start = i


def split_idle(cands: list[Slot]) -> tuple[list[Slot], list[Slot]]:
    """Apply what the cars have shown by drawing (see drawing.py): each car's minimum is
    the start current it has shown, a probing car's minimum is the probe's current (and
    no lending cap), and idle cars are set aside to be served last, at their minimum."""
    active: list[Slot] = []
    idle: list[Slot] = []
    for s in cands:
        dm = s.dm
        if dm.start_min <= s.min:  # floor_of(dm, s.min, max_current), at once
            floor = s.floor = s.min
        else:
            e = s.e
            cap = e.max_current
            if e.backend_current is not None and e.backend_current < cap:
                cap = e.backend_current
            floor = s.floor = floor_of(dm, s.min, cap)
        if s.probing:
            s.min = max(floor, s.dm.probe_ma)
            s.want, s.cap_kind = max(s.max_want, s.min), s.max_kind
        elif s.idle:
            s.min = s.want = floor
            s.cap_kind = Limit.CAR_DRAW
            idle.append(s)
            continue
        else:
            s.min = floor
            s.want = max(s.want, floor)
        active.append(s)
    return active, idle


def unprobe(active: list[Slot]) -> list[Slot]:
    """Probing cars whose probe current did not fit: no probe this cycle (it stays due);
    they are idle cars like the others."""
    out = []
    for s in active:
        if s.probing and not s.admitted:
            s.probing, s.paused, s.fail = False, False, NOT_SET
            s.pause_reason, s.reason = PauseReason.NONE, ""
            s.min = s.want = s.floor
            s.cap_kind = Limit.CAR_DRAW
            out.append(s)
    return out


def admit_idle(w: Work, idle: list[Slot]) -> list[Slot]:
    """After every car that draws or waits has its share: idle cars get their minimum
    where it still fits (one that had none needs the restart margin too, and its pause
    must have lasted the minimum pause time), else nothing."""
    margin = w.tun.restart_margin_ma
    idle.sort(key=lambda s: (s.tier, not s.incumbent, s.e.id))
    admitted = []
    for s in idle:
        holding = s.incumbent
        need = s.min if holding else s.min + margin
        c = w.fits(s.cons, need)
        if c == FITS and not w.imbalance_ok(s, need):
            c = BY_IMBALANCE
        if c == FITS and not holding and w.now < s.mem.pause_until:
            c = BY_TIMER
        if c == FITS:
            s.admitted, s.bound = True, BY_CAP
            w.reserve(s, s.min)
            admitted.append(s)
        else:
            s.paused, s.fail = True, c
            s.pause_reason = PauseReason.IMBALANCE if c == BY_IMBALANCE else PauseReason.SHORTAGE
            if c == BY_TIMER:
                s.pause_reason = s.mem.pause_reason or PauseReason.SHORTAGE
            s.reason = _IDLE_REASON
    return admitted


def rank(w: Work, cands: list[Slot]) -> None:
    """Sort the candidates in admission order (see docs/load-management.md, stage 1)."""
    now, tun = w.now, w.tun
    rotate_after = tun.rotation_time_s
    gap = tun.rotation_gap_mah * 3600.0
    for s in cands:
        mem = s.mem
        if s.probing:
            # A probe takes no one's place, it gets what the others leave; but a car that
            # has never drawn and not been probed yet takes its turn like a waiting car.
            waiting = mem.waiting_since if mem.waiting_since is not None else now
            plugged = s.plugged_since if s.plugged_since is not None else now
            fresh = not s.dm.failed and s.charge <= 0
            s.order = (1.0, -INF, waiting, plugged) if fresh else (2.0, waiting, plugged)
        elif s.incumbent:
            since = mem.charging_since if mem.charging_since is not None else now
            # Charging cars first, most recently started first. One that has charged for
            # the rotation time competes with the waiting cars as if it had been given
            # `gap` less charge: it yields to a car that has had that much less, or none.
            if now - since < rotate_after:
                s.order = (0.0, -since)
            else:
                s.order = (1.0, s.charge - gap, -since)
        else:
            # Waiting cars: the least charge given first (none at all before any), then
            # the longest waiting.
            waiting = mem.waiting_since if mem.waiting_since is not None else now
            plugged = s.plugged_since if s.plugged_since is not None else now
            s.order = (1.0, s.charge if s.charge > 0 else -INF, waiting, plugged)
    cands.sort(key=lambda s: (s.tier, s.order, s.e.id))


def admit(w: Work, cands: list[Slot], blocked: dict[int, tuple[float, ...]],
          once_more: bool = False) -> list[Slot]:
    """Stage 1: reserve minimum currents in ranking order; returns the admitted slots.

    `blocked`: phases (as the imbalance check counts them) of cars refused for the
    imbalance, with the tier of the first: a lower priority on the same phases waits
    behind them (kept across tiers). `once_more`: the cars were refused for the imbalance
    before and are tried once more, their pause undone if they fit now."""
    rank(w, cands)
    now, margin = w.now, w.tun.restart_margin_ma
    admitted: list[Slot] = []
    rotated_tiers: set[tuple[float, ...]] = set()
    retry: list[Slot] = []

    cap, load = w.cap, w.load
    imbalance_ok = w.imbalance_ok

    def check(s: Slot) -> int:
        need = s.min if s.incumbent else s.min + margin
        for c in s.cons:  # FITS or the first constraint it breaks
            if load[c] + need > cap[c]:
                return c
        if (s.hmask or s.lmask) and not imbalance_ok(s, need):
            return BY_IMBALANCE
        return FITS

    count = w.count

    def take(s: Slot) -> None:
        s.admitted, s.fail = True, FITS
        amount = s.min
        for c in s.cons:  # w.reserve(s, amount)
            load[c] += amount
        if s.hmask or s.lmask:
            count(s, amount, True)
        admitted.append(s)
        if not s.incumbent and not s.probing:
            rotated_tiers.add(s.tier)

    def waits(s: Slot) -> bool:
        """A higher priority on the same phases was refused for the imbalance."""
        first = blocked.get(s.hmask)
        return first is not None and first < s.tier

    def flush() -> None:
        # Imbalance is not monotone: a car refused for it may fit once others balance it.
        progress = bool(retry)
        while progress:
            progress = False
            for r in retry:
                if not r.admitted and not waits(r) and check(r) == FITS:
                    take(r)
                    progress = True

    if once_more:
        progress = True
        while progress:  # one admitted may balance the next
            progress = False
            still: dict[int, tuple[float, ...]] = {}  # as `blocked`, for this sweep
            for s in cands:
                if s.admitted:
                    continue
                first = still.get(s.hmask)
                if ((first is None or first >= s.tier)
                        and (s.incumbent or now >= s.mem.pause_until) and check(s) == FITS):
                    s.paused, s.pause_reason, s.reason = False, PauseReason.NONE, ""
                    take(s)
                    progress = True
                else:
                    still.setdefault(s.hmask, s.tier)
        return admitted
    for s in cands:
        c = BY_IMBALANCE if waits(s) else check(s)
        if not s.incumbent and now < s.mem.pause_until:
            s.fail = BY_TIMER if c == FITS else c
        elif c == FITS:
            take(s)
        else:
            s.fail = c
            if c == BY_IMBALANCE:
                retry.append(s)
                blocked.setdefault(s.hmask, s.tier)
    flush()
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
        elif s.incumbent and s.order[0] == 1.0 and s.tier in rotated_tiers:
            s.pause_reason = PauseReason.ROTATION
            s.reason = "round robin"
        else:
            s.pause_reason = PauseReason.SHORTAGE
            s.reason = f"minimum current not available ({w.label_of(s.fail)})"
    return admitted


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
            cap[best_c] = load[best_c]
        else:
            imb_lam = max(imb_lam, 0)
            pbit, qbit = 1 << imb_p, 1 << imb_q
            for i, s in enumerate(tier):
                if rising[i] and s.hmask & pbit and not s.lmask & qbit:
                    freeze(i, imb_lam, BY_IMBALANCE)
            pq = imb_p * 3 + imb_q
            gap = imb_limit - (base[imb_p] + hi[imb_p] - base[imb_q] - lo[imb_q])
            reserve[pq] = max(gap, 0)


def explain(w: Work, cands: list[Slot]) -> None:
    """Name what binds each admitted EVSE's current."""
    names: dict[int, tuple[Limit, str]] = {}  # constraint -> (kind, label)
    for s in cands:
        if not s.admitted:
            continue
        if s.bound == BY_CAP:
            s.lreason = s.cap_kind
            s.reason = _IDLE_REASON if s.idle and not s.probing else _CAP_REASONS[s.cap_kind]
        elif s.bound == BY_IMBALANCE:
            s.lreason = Limit.IMBALANCE
            s.reason = "phase imbalance"
        else:
            named = names.get(s.bound)
            if named is None:
                named = names[s.bound] = (w.kind_of(s.bound), w.label_of(s.bound))
            s.lreason, s.reason = named
