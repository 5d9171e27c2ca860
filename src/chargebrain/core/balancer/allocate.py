"""The charging manager's allocation policy: who charges, and with how much current.

Per cycle (see docs/load-management.md), priority tier by priority tier, highest first
(a lower tier gets what the higher ones cannot use):
1. Admission: each competing EVSE's minimum current is reserved if it fits under every
   limit on its building phases and keeps the phase imbalance in bounds; charging cars
   come first, then waiting cars and cars that have charged long enough to give way, the
   least charge given first; idle cars (drawing nothing) are set aside.
2. Filling: the current above the tier's minimums is shared by max-min fair water
   filling over all (node, phase) limits and the imbalance limit (filling.py).
Then cars refused for the imbalance are tried once more; idle cars get their minimum
where it still fits; increases that cars still coming down leave no room for wait
(handover.py). A car that was charging and stops only because of loads assumed for
missing readings keeps its place for when they are back (no pause timer); under a meter
whose reading is not fresh nobody gets more than it had.
Pure: same inputs and state give the same output; no I/O, no clock reads, no mutation of
inputs or of the carried state.
"""

from __future__ import annotations

import math

from chargebrain.core.balancer.data import Allocation, BalancerState, Limit, PauseReason, SiteInput
from chargebrain.core.balancer.drawing import floor_of
from chargebrain.core.balancer.filling import fill_tier
from chargebrain.core.balancer.handover import hand_over
from chargebrain.core.balancer.plans import SLACK, URGENT, fill_planned, plan_order, raise_urgent
from chargebrain.core.balancer.prepare import (
    BY_CAP,
    BY_FROZEN,
    BY_IMBALANCE,
    BY_TIMER,
    CANDIDATE,
    CAP_REASONS,
    FITS,
    INF,
    NOT_SET,
    Slot,
    Work,
    finish,
    prepare,
)

_IDLE_REASON = "car not drawing"


def allocate(site: SiteInput, state: BalancerState, now: float) -> Allocation:
    """Decide every EVSE's current for this cycle.

    `state` is the previous call's `Allocation.state` (or `BalancerState()` at start);
    `now` is the caller's clock in seconds.
    """
    w = prepare(site, state, now)
    cands = [s for s in w.slots if s.kind == CANDIDATE]
    if state.rank_order:
        cands = in_last_order(cands, state.rank_order)
    active, idle = split_idle(w, cands)
    limits = list(w.cap)
    order = by_priority(w, active)
    idle.extend(unprobe(active))
    order.extend(admit_idle(w, idle))
    hand_over(w, limits, order)
    explain(w, cands)
    return finish(w, state)


def in_last_order(cands: list[Slot], last: tuple[str, ...]) -> list[Slot]:
    """The candidates in the order the last cycle ranked them (new ones last, by id).

    Only where the sorts start from: every ranking key ends in the EVSE's id, so the
    sorted result is the same from any start; from last cycle's order, where a few cars
    moved, sorting takes about one comparison a car instead of log2(n)."""
    by_id = {s.e.id: s for s in cands}
    out = []
    take = by_id.pop
    for i in last:
        s = take(i, None)
        if s is not None:
            out.append(s)
    out.extend(by_id.values())
    return out


def by_priority(w: Work, active: list[Slot]) -> list[Slot]:
    """Tier by tier, highest priority first: admit the tier's minimums (stage 1), then
    give the tier everything above them it can use (stage 2); a lower tier gets what is
    left. Cars refused for the phase imbalance are tried again at the end, since lower
    tiers on the other phases may have balanced them. Returns the admitted slots in the
    order they were admitted."""
    active.sort(key=_by_tier)  # stable: ties keep their order
    blocked: dict[int, tuple[float, ...]] = {}
    order: list[Slot] = []
    ranked: list[Slot] = []
    start, n = 0, len(active)
    for i in range(1, n + 1):
        if i == n or _new_tier(active[i].tier, active[start].tier):
            part = active[start:i]
            order.extend(admit_tier(w, part, blocked))  # ranks `part` in place
            ranked.extend(part)
            start = i
    w.rank_order = tuple([s.e.id for s in ranked])
    refused = [s for s in active if s.fail == BY_IMBALANCE and not s.admitted]
    if refused:
        again = admit(w, refused, {}, once_more=True)
        if again:
            order.extend(again)
            fill(w, again)
    return order


def admit_tier(w: Work, tier: list[Slot], blocked: dict[int, tuple[float, ...]]) -> list[Slot]:
    """Stages 1 and 2 for one priority tier. With departure plans (plans.py) the cars
    whose plan leaves time are admitted only after the urgent ones have been given what
    their plans need."""
    if not w.planned or not any(s.plan for s in tier):
        admitted = admit(w, tier, blocked)
        fill(w, admitted)
        return admitted
    first = [s for s in tier if s.plan != SLACK]
    later = [s for s in tier if s.plan == SLACK]
    admitted = admit(w, first, blocked) if first else []
    _bound_imbalance(w)
    raise_urgent(w, [s for s in admitted if s.plan == URGENT], fill_tier)
    if later:
        admitted.extend(admit(w, later, blocked))
        _bound_imbalance(w)
    fill_planned(w, admitted, fill_tier, urgent_done=True)
    return admitted


def _bound_imbalance(w: Work) -> None:
    """The imbalance stage 2 keeps to: the limit, or the spread the minimums already
    make, whichever is larger."""
    if w.imb_limit > 0:
        w.imb_eff = max(w.imb_limit, w.imb_eff, w.imbalance())


def fill(w: Work, admitted: list[Slot]) -> None:
    """Stage 2 for cars just admitted (of one tier, or retried ones tier by tier)."""
    if w.imb_limit > 0:
        w.imb_eff = max(w.imb_limit, w.imbalance())
    start, n = 0, len(admitted)
    for i in range(1, n + 1):
        if i == n or admitted[i].tier != admitted[start].tier:
            fill_planned(w, admitted[start:i], fill_tier)
            start = i


def split_idle(w: Work, cands: list[Slot]) -> tuple[list[Slot], list[Slot]]:
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
        if s.frozen >= 0 and s.probing and dm.probe_until is None:
            s.probing = False  # a probe raises the car: it waits for fresh readings
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
        if s.frozen >= 0:
            _hold(w, s)
        active.append(s)
    for s in idle:
        if s.frozen >= 0:
            _hold(w, s)
    return active, idle


def _hold(w: Work, s: Slot) -> None:
    """A meter above the car is not fresh: it gets no more than it had (a car that had
    nothing waits, see admit)."""
    last = s.mem.last_set if s.incumbent else 0
    if s.want > last:
        s.want = max(last, s.min)
        s.cap_kind = w.kind_of(s.frozen * 3)
        s.cap_reason = f"no fresh meter reading ({w.tree.labels[s.frozen]})"


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
        if c == FITS and not w.imbalance_ok(
                s, need if holding else s.min + w.tun.imbalance_margin_ma):
            if s.unsure_phases:
                measure_first(s)
            else:
                c = BY_IMBALANCE
        if c == FITS and s.frozen >= 0 and s.mem.last_set < s.min:
            c = BY_FROZEN
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
            elif holding and c >= 0:
                s.data_pause = w.assumed_only(s.cons, need)
            s.reason = _IDLE_REASON
    return admitted


def measure_first(s: Slot) -> None:
    """A car whose phases are not known yet, kept from starting by the imbalance it would
    cause if it were single-phase: it starts at its minimum, counted as balanced, so that
    its meter shows which phases it uses (else it would never be measured)."""
    s.hmask = s.lmask = 0
    s.want = s.max_want = s.min
    s.cap_kind = s.max_kind = Limit.IMBALANCE


def rank(w: Work, cands: list[Slot], tiers: bool = True) -> None:
    """Sort the candidates in admission order (see docs/load-management.md, stage 1).
    `tiers`: they may be of several priority tiers (else all of one)."""
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
        if s.plan and not s.probing:
            s.order = plan_order(s, s.order)
    cands.sort(key=_by_order)
    if tiers:
        cands.sort(key=_by_tier)  # stable: by (tier, order, id)


def _by_order(s: Slot) -> tuple[tuple[float, ...], str]:
    return s.order, s.e.id


def _new_tier(t: tuple[float, ...], u: tuple[float, ...]) -> bool:
    """t != u, at once where they are the same object (most neighbours)."""
    return t is not u and t != u


def _by_tier(s: Slot) -> tuple[float, ...]:
    return s.tier


def admit(w: Work, cands: list[Slot], blocked: dict[int, tuple[float, ...]],
          once_more: bool = False) -> list[Slot]:
    """Stage 1: reserve minimum currents in ranking order; returns the admitted slots.

    `blocked`: phases (as the imbalance check counts them) of cars refused for the
    imbalance, with the tier of the first: a lower priority on the same phases waits
    behind them (kept across tiers). `once_more`: the cars were refused for the imbalance
    before and are tried once more, their pause undone if they fit now."""
    rank(w, cands, once_more)
    now, margin = w.now, w.tun.restart_margin_ma
    imb_margin = w.tun.imbalance_margin_ma
    admitted: list[Slot] = []
    rotated_tiers: set[tuple[float, ...]] = set()
    retry: list[Slot] = []

    cap, load = w.cap, w.load
    imbalance_ok = w.imbalance_ok

    soft = w.soft
    cap_only = [0] * len(soft)

    def check(s: Slot) -> int:
        if s.incumbent:
            need = s.min
            # A car that is charging may keep its minimum within the house's part of the
            # overdraft penalty (overdraft.py).
            kept = soft if s.mem.last_set > 0 else cap_only
            for c in s.cons:  # FITS or the first constraint it breaks
                if load[c] + need > cap[c] + kept[c]:
                    return c
        else:
            need = s.min + margin
            for c in s.cons:
                if load[c] + need > cap[c]:
                    return c
            if (s.hmask or s.lmask) and not imbalance_ok(s, s.min + imb_margin):
                if not s.unsure_phases:
                    return BY_IMBALANCE
                measure_first(s)
        if (s.hmask or s.lmask) and not imbalance_ok(s, need):
            if not s.unsure_phases:
                return BY_IMBALANCE
            measure_first(s)
        if s.frozen >= 0 and not (s.incumbent and s.mem.last_set >= s.min):
            return BY_FROZEN
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
        c = BY_IMBALANCE if blocked and waits(s) else check(s)
        if not s.incumbent and now < s.mem.pause_until:
            s.fail = BY_TIMER if c == FITS else c
        elif c == FITS:
            take(s)
        else:
            s.fail = c
            if c == BY_IMBALANCE:
                retry.append(s)
                blocked.setdefault(s.hmask, s.tier)
            elif c >= 0 and s.incumbent:
                # Only loads assumed for missing readings leave it no room: it stops, and
                # starts again as a charging car when the readings are back.
                s.data_pause = w.assumed_only(s.cons, s.min)
    flush()
    for s in cands:
        if s.admitted:
            continue
        s.paused = True
        if s.fail == BY_TIMER:
            s.pause_reason = s.mem.pause_reason or PauseReason.SHORTAGE
            s.reason = f"pause timer, {math.ceil(s.mem.pause_until - now)} s left"
        elif s.fail == BY_FROZEN:
            s.pause_reason = s.mem.pause_reason or PauseReason.SHORTAGE
            s.data_pause = s.mem.data_pause  # still waiting for the readings it stopped for
            s.reason = f"waiting for a fresh meter reading ({w.tree.labels[s.frozen]})"
        elif s.fail == BY_IMBALANCE:
            s.pause_reason = PauseReason.IMBALANCE
            s.reason = "phase imbalance"
        elif s.incumbent and s.order[0] == 1.0 and s.tier in rotated_tiers:
            s.pause_reason = PauseReason.ROTATION
            s.reason = "round robin"
        elif s.plan == SLACK and s.fail >= 0 and not s.data_pause:
            s.pause_reason = PauseReason.ROTATION if s.incumbent else PauseReason.SHORTAGE
            s.reason = f"departure plan leaves time ({w.label_of(s.fail)})"
        else:
            s.pause_reason = PauseReason.SHORTAGE
            held = bool(s.data_pause or (not s.incumbent and s.mem.data_pause))
            s.reason = _shortage(w.label_of(s.fail), held)
    return admitted


_shortages: dict[tuple[str, bool], str] = {}


def _shortage(label: str, held: bool) -> str:
    """The reason of a car refused on the limit `label` (`held`: only loads assumed for
    missing readings refuse it), one string object between cycles: most refusals repeat,
    and finish's decision memo then hashes it once."""
    key = (label, held)
    got = _shortages.get(key)
    if got is None:
        if len(_shortages) >= 1024:
            _shortages.clear()
        missing = ", readings missing" if held else ""
        got = _shortages[key] = f"minimum current not available ({label}{missing})"
    return got


def explain(w: Work, cands: list[Slot]) -> None:
    """Name what binds each admitted EVSE's current."""
    names: dict[int, tuple[Limit, str]] = {}  # constraint -> (kind, label)
    for s in cands:
        if not s.admitted:
            continue
        if s.bound == BY_CAP:
            s.lreason = s.cap_kind
            if s.cap_reason:
                s.reason = s.cap_reason
            else:
                s.reason = _IDLE_REASON if s.idle and not s.probing else CAP_REASONS[s.cap_kind]
        elif s.bound == BY_IMBALANCE:
            s.lreason = Limit.IMBALANCE
            s.reason = "phase imbalance"
        else:
            named = names.get(s.bound)
            if named is None:
                named = names[s.bound] = (w.kind_of(s.bound), w.label_of(s.bound))
            s.lreason, s.reason = named
            if s.plan == SLACK:
                s.reason = f"{s.reason}, departure plan leaves time"
