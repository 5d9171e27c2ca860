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

from chargebrain.core.balancer.admission import admit, measure_first
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
    IDLE,
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
    tiers, idle, probing, movers, others = sort_out(w, state.rank_order)
    limits = list(w.cap)
    order = by_priority(w, tiers)
    idle.extend(unprobe(probing))
    order.extend(admit_idle(w, idle))
    hand_over(w, limits, order, movers, others)
    explain(w, order)
    return finish(w, state)


Tiers = dict[tuple[float, ...], list[Slot]]
_GONE = Slot.__new__(Slot)  # what the hint's ids that no longer compete map to


def sort_out(
    w: Work, last: tuple[str, ...]
) -> tuple[Tiers, list[Slot], list[Slot], list[Slot], list[Slot]]:
    """One pass over the candidates: apply what the cars have shown by drawing (see
    drawing.py: each car's minimum is the start current it has shown, a probing car's
    minimum is the probe's current and it has no lending cap, idle cars are set aside to
    be served last, at their minimum), give each car that competes its ranking key, and
    put it in its priority tier. Returns the tiers, the idle cars, the probing ones, the
    candidates that had a current last cycle or draw now, and the EVSEs neither fixed nor
    competing (these two for the handover).

    The candidates are visited in the order the last cycle ranked them (`last`; new ones
    after, by id): only where the sorts start from, since every ranking key ends in the
    EVSE's id; from last cycle's order, where a few cars moved, sorting a tier takes
    about one comparison a car instead of log2 of its size."""
    by_id: dict[str, Slot] = {}
    others: list[Slot] = []
    for s in w.slots:
        kind = s.kind
        if kind == CANDIDATE:
            by_id[s.e.id] = s
        elif kind == IDLE:
            others.append(s)
    if last:
        take = by_id.pop
        cands = [(i, s) for i in last if (s := take(i, _GONE)) is not _GONE]
        cands.extend(by_id.items())
    else:
        cands = list(by_id.items())
    now, tun = w.now, w.tun
    rotate_after, gap = tun.rotation_time_s, tun.rotation_gap_mah * 3600.0
    tiers: Tiers = {}
    idle: list[Slot] = []
    probing: list[Slot] = []
    movers: list[Slot] = []
    bucket: dict[int, list[Slot]] = {}  # id of a tier key -> its cars (tiers, by identity)
    tier_of: tuple[float, ...] = ()
    members: list[Slot] = []
    for evse_id, s in cands:
        mem, d = s.mem, s.drawn
        if d[0] > 0 or d[1] > 0 or d[2] > 0 or (mem.plugged and mem.last_set > 0):
            movers.append(s)
        dm = s.dm
        least = s.min
        if dm.start_min <= least:  # floor_of(dm, s.min, max_current), at once
            floor = least
        else:
            e = s.e
            cap = e.max_current
            if e.backend_current is not None and e.backend_current < cap:
                cap = e.backend_current
            floor = floor_of(dm, least, cap)
        probe = s.probing
        if probe and s.frozen >= 0 and dm.probe_until is None:
            s.probing = probe = False  # a probe raises the car: it waits for fresh readings
        if probe:
            s.floor = floor  # (unprobe falls back to it)
            s.min = least = max(floor, dm.probe_ma)
            s.want, s.cap_kind = max(s.max_want, least), s.max_kind
            probing.append(s)
        elif s.idle:
            s.min = s.want = floor
            s.cap_kind = Limit.CAR_DRAW
            if s.frozen >= 0:
                _hold(w, s)
            idle.append(s)
            continue
        elif floor != least:
            s.min = floor
            if s.want < floor:
                s.want = floor
        if s.frozen >= 0:
            _hold(w, s)
        # The ranking key (docs/load-management.md, stage 1), and with the id what the
        # sort goes by (the id orders every tie).
        order: tuple[float, ...]
        if probe:
            # A probe takes no one's place, it gets what the others leave; but a car that
            # has never drawn and not been probed yet takes its turn like a waiting car.
            waiting = mem.waiting_since if mem.waiting_since is not None else now
            plugged = s.plugged_since if s.plugged_since is not None else now
            fresh = not dm.failed and s.charge <= 0
            order = (1.0, -INF, waiting, plugged) if fresh else (2.0, waiting, plugged)
        else:
            if s.incumbent:
                since = mem.charging_since if mem.charging_since is not None else now
                # Charging cars first, most recently started first. One that has charged
                # for the rotation time competes with the waiting cars as if it had been
                # given `gap` less charge: it yields to a car that has had that much
                # less, or none.
                if now - since < rotate_after:
                    order = (0.0, -since)
                else:
                    order = (1.0, s.charge - gap, -since)
            else:
                # Waiting cars: the least charge given first (none at all before any),
                # then the longest waiting.
                waiting = mem.waiting_since if mem.waiting_since is not None else now
                plugged = s.plugged_since if s.plugged_since is not None else now
                order = (1.0, s.charge if s.charge > 0 else -INF, waiting, plugged)
            if s.plan:
                order = plan_order(s, order)
        s.rank = (order, evse_id)
        tier = s.tier
        if tier is not tier_of:
            tier_of = tier
            got = bucket.get(id(tier))
            if got is None:
                got = bucket[id(tier)] = tiers.setdefault(tier, [])
            members = got
        members.append(s)
    return tiers, idle, probing, movers, others


def _hold(w: Work, s: Slot) -> None:
    """A meter above the car is not fresh: it gets no more than it had (a car that had
    nothing waits, see admit)."""
    last = s.mem.last_set if s.incumbent else 0
    if s.want > last:
        s.want = max(last, s.min)
        s.cap_kind = w.kind_of(s.frozen * 3)
        s.cap_reason = f"no fresh meter reading ({w.tree.labels[s.frozen]})"


def by_priority(w: Work, tiers: Tiers) -> list[Slot]:
    """Tier by tier, highest priority first: admit the tier's minimums (stage 1), then
    give the tier everything above them it can use (stage 2); a lower tier gets what is
    left. Cars refused for the phase imbalance are tried again at the end, since lower
    tiers on the other phases may have balanced them. Returns the admitted slots in the
    order they were admitted."""
    blocked: dict[int, tuple[float, ...]] = {}
    order: list[Slot] = []
    ranked: list[str] = []
    refused: list[Slot] = []
    for key in sorted(tiers):
        order.extend(admit_tier(w, tiers[key], blocked, refused, ranked))
    w.rank_order = tuple(ranked)
    refused = [s for s in refused if not s.admitted]
    if refused:
        again = admit(w, refused, {}, [], once_more=True)
        if again:
            order.extend(again)
            fill(w, again)
    return order


def admit_tier(w: Work, tier: list[Slot], blocked: dict[int, tuple[float, ...]],
               refused: list[Slot], ranked: list[str]) -> list[Slot]:
    """Stages 1 and 2 for one priority tier. With departure plans (plans.py) the cars
    whose plan leaves time are admitted only after the urgent ones have been given what
    their plans need. `refused` and `ranked`: see admission.admit."""
    if not w.planned:
        admitted = admit(w, tier, blocked, refused, ranked)
        if w.imb_limit > 0:
            w.imb_eff = max(w.imb_limit, w.imbalance())
        fill_tier(w, admitted)  # fill(w, admitted): they are of one tier
        return admitted
    if not any(s.plan for s in tier):
        admitted = admit(w, tier, blocked, refused, ranked)
        fill(w, admitted)
        return admitted
    first = [s for s in tier if s.plan != SLACK]
    later = [s for s in tier if s.plan == SLACK]
    admitted = admit(w, first, blocked, refused, ranked) if first else []
    _bound_imbalance(w)
    raise_urgent(w, [s for s in admitted if s.plan == URGENT], fill_tier)
    if later:
        admitted.extend(admit(w, later, blocked, refused, ranked))
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
    fill_one = fill_planned if w.planned else None
    start, n = 0, len(admitted)
    for i in range(1, n + 1):
        if i == n or admitted[i].tier != admitted[start].tier:
            if fill_one is None:  # no departure plans: the plain filling
                fill_tier(w, admitted[start:i])
            else:
                fill_one(w, admitted[start:i], fill_tier)
            start = i


def unprobe(probing: list[Slot]) -> list[Slot]:
    """Probing cars whose probe current did not fit: no probe this cycle (it stays due);
    they are idle cars like the others."""
    out = []
    for s in probing:
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


def explain(w: Work, admitted: list[Slot]) -> None:
    """Name what binds each admitted EVSE's current (`admitted`: every car admitted this
    cycle, some of which the handover may have held back)."""
    names: dict[int, tuple[Limit, str]] = {}  # constraint -> (kind, label)
    for s in admitted:
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
