"""Turn one cycle's inputs into the working numbers a policy decides on.

Everything a policy needs before it decides (per-phase capacities, fixed loads of offline
and disabled EVSEs, overdraft penalty, which EVSEs compete for current and with what
minimum and maximum); the group tree and EVSE order come from layout.py, the working
records from work.py, and finish (rounding, reasons, memory, summaries) from finish.py.
The policies in this package and core/baselines.py share it, so they differ only in how
they choose currents. Pure: no I/O, no clock reads; it must never mutate its inputs.
"""

from chargebrain.core.balancer.data import (
    IEC_MIN_CURRENT,
    NEVER_SEEN,
    NO_DRAW,
    BalancerState,
    DisablePolicy,
    Limit,
    SiteInput,
)
from chargebrain.core.balancer.drawing import observe, probing
from chargebrain.core.balancer.finish import charge_of, finish
from chargebrain.core.balancer.layout import id_order, tree_of
from chargebrain.core.balancer.work import (
    BY_CAP,
    BY_IMBALANCE,
    BY_TIMER,
    CANDIDATE,
    FITS,
    FIXED,
    IDLE,
    INF,
    MASK_PHASES,
    NOT_SET,
    PAIRS,
    PHASE_SHIFT,
    PLUGGED,
    EmptySlot,
    Slot,
    Work,
    assumed_load,
    rot_mask,
    worst_mask,
)
from chargebrain.core.model import EvseState
from chargebrain.core.phases import ALL_PHASES_MASK, Phases

__all__ = [
    "BY_CAP",
    "BY_IMBALANCE",
    "BY_TIMER",
    "CANDIDATE",
    "FITS",
    "FIXED",
    "IDLE",
    "INF",
    "MASK_PHASES",
    "NOT_SET",
    "PAIRS",
    "Slot",
    "Work",
    "classify",
    "finish",
    "prepare",
    "worst_mask",
]


def _idle(s: Slot, lreason: Limit, reason: str) -> None:
    s.kind = IDLE
    s.current = 0
    s.lreason = lreason
    s.reason = reason


def _fixed(s: Slot, current: int, bmask: int, lreason: Limit, reason: str, ctl: bool) -> None:
    s.kind = FIXED
    s.current = max(current, 0)
    s.bmask = bmask
    s.lreason = lreason
    s.reason = reason
    s.controlled = ctl


def classify(w: Work, s: Slot) -> None:
    """Decide whether an EVSE competes, is idle or is fixed load; learn its phases."""
    e, mem, now, tun = s.e, s.mem, w.now, w.tun
    offline = e.offline_since is not None or e.state is EvseState.OFFLINE
    plugged = mem.plugged if offline else e.state in PLUGGED
    s.plugged = plugged
    if plugged:
        s.plugged_since = (
            e.plugged_since
            if e.plugged_since is not None
            else (mem.plugged_since if mem.plugged and mem.plugged_since is not None else now)
        )
        learnt = mem.learnt_phases if mem.plugged else 0
        if not offline and e.has_meter and not e.used_phases:
            learnt |= e.measured.mask(tun.learn_threshold_ma)
        s.learnt = learnt
    min_cur = max(e.min_current, IEC_MIN_CURRENT)
    last = mem.last_set if mem.last_set >= 0 else e.max_current

    if offline:
        since = e.offline_since if e.offline_since is not None else now
        held = last
        if now - since >= w.cfg.com_timeout:
            fail_safe = min_cur if e.fail_safe_current == 1 else e.fail_safe_current
            held = max(last, fail_safe)
        _fixed(s, held, worst_mask(e, s.learnt, plugged), Limit.OFFLINE, "offline", False)
        return
    if not e.enabled:
        policy = w.cfg.disable_policy
        bmask = worst_mask(e, s.learnt, plugged)
        if policy == DisablePolicy.MINIMUM:
            _fixed(s, min_cur, bmask, Limit.DISABLED, "disabled (minimum current)", True)
        elif policy == DisablePolicy.FREE:
            _fixed(s, e.max_current, bmask, Limit.DISABLED, "disabled (free charging)", False)
        else:
            _idle(s, Limit.DISABLED, "disabled")
        return
    if not plugged:
        if e.state is EvseState.ERROR:
            _idle(s, Limit.NONE, "EVSE error")
        else:
            _idle(s, Limit.NO_VEHICLE, "no vehicle")
        return
    if e.needs_auth and not e.authorised:
        _idle(s, Limit.NOT_AUTHORISED, "waiting for authorisation")
        return
    if e.override_disable:
        _idle(s, Limit.OVERRIDE, "override")
        return
    if e.max_current < min_cur:
        _idle(s, Limit.EVSE_MAX, "EVSE maximum")
        return
    wish, wish_kind = e.rule_current, Limit.RULE
    if e.override_current is not None:
        wish, wish_kind = e.override_current, Limit.OVERRIDE
    if wish is not None and wish <= 0:
        _idle(s, wish_kind, "override" if wish_kind is Limit.OVERRIDE else "rule")
        return

    s.kind = CANDIDATE
    s.min = min_cur
    if wish is None or wish >= e.max_current:
        s.want, s.cap_kind = e.max_current, Limit.EVSE_MAX
    else:
        # A rule or override asking for less than the minimum charges at the minimum.
        s.want, s.cap_kind = max(wish, min_cur), wish_kind
    s.max_want, s.max_kind = s.want, s.cap_kind
    if e.used_phases & ALL_PHASES_MASK:
        evse_mask = e.used_phases & ALL_PHASES_MASK
    elif e.has_meter:
        # Until the car has shown which phases it uses, its current is planned on every
        # phase: a three-phase car must not start on room that exists only on L1.
        evse_mask = s.learnt or ALL_PHASES_MASK
    else:
        evse_mask = ALL_PHASES_MASK  # cannot learn without a meter: assume the worst
    s.bmask = rot_mask(evse_mask, e.rotation)
    s.incumbent = mem.last_set > 0 and mem.waiting_since is None and mem.plugged
    offered = mem.last_set if mem.plugged and mem.last_set > 0 else 0
    if e.has_meter:
        draw = max(e.measured.l1, e.measured.l2, e.measured.l3)
    else:
        draw = offered if e.state.charging else 0
    dm = mem.draw if mem.plugged else NO_DRAW
    s.drawing = draw >= tun.idle_threshold_ma
    if dm is not NO_DRAW or (offered and not s.drawing):  # else: nothing new to note
        dm = observe(dm, draw, offered, min_cur, s.max_want, now, tun)
        if dm.idle:
            s.idle, s.probing = True, probing(dm, now)
    s.dm = dm
    if mem.plugged and (mem.charge or mem.charge_rate):
        s.charge = charge_of(mem, now)
    if w.imb_limit > 0 and (s.bmask != ALL_PHASES_MASK or (e.has_meter and not s.learnt)):
        _imbalance_masks(w, s)
    if s.incumbent:
        _lend(w, s, draw)
        if s.cap_kind is Limit.CAR_DRAW and s.want > draw:
            # It is given up to `want` but draws less: on the light side of a pair only
            # what it draws counts.
            s.lfree = min(s.min, s.want - draw)


def _imbalance_masks(w: Work, s: Slot) -> None:
    """Where the imbalance check counts a car: on the phases it may draw on (the heavy
    side of a pair) and on those it surely draws on (the light side). A car whose phases
    are not known yet may draw on every phase it is planned on but surely only on its
    L1; a car that has drawn nothing for quiet_after_s surely draws nowhere (counting it
    would balance the phases on paper only). A car on all three known phases cannot
    unbalance them and is left out."""
    e, tun, now = s.e, w.tun, w.now
    known = e.used_phases & ALL_PHASES_MASK or not e.has_meter or s.learnt
    if known and s.bmask == ALL_PHASES_MASK:
        return
    since = s.dm.quiet_since
    quiet = s.dm.idle or (since is not None and now - since >= tun.quiet_after_s)
    s.hmask = s.bmask
    if not quiet:
        s.lmask = s.bmask if known else rot_mask(1, e.rotation)


def _lend(w: Work, s: Slot, draw: int) -> None:
    """Cap a car that draws clearly less than offered at its draw plus a margin."""
    mem, tun = s.mem, w.tun
    offered = mem.last_set
    following = draw >= offered - tun.lend_threshold_ma
    if following:
        cycles = 0
    elif mem.raised:
        cycles = mem.lend_cycles  # the offer just went up: give the car a cycle to follow
    else:
        cycles = mem.lend_cycles + 1
    s.lend_cycles = cycles
    if cycles >= tun.lend_after_cycles:
        cap = max(s.min, draw + tun.lend_margin_ma)
    elif mem.capped:
        # Taking lent current back: one margin step per cycle, and only while it follows.
        cap = max(s.min, offered + tun.lend_margin_ma if following else offered)
    else:
        return
    if cap < s.want:
        s.want, s.cap_kind = cap, Limit.CAR_DRAW


def prepare(site: SiteInput, state: BalancerState, now: float) -> Work:
    """Classify every EVSE and compute each node's per-phase capacity for this cycle."""
    cfg = site.config
    tree = tree_of(site.groups)
    w = Work(cfg, tree, now)
    w.imb_limit = max(cfg.max_imbalance_cur, 0)
    tun = w.tun

    evses = site.evses
    order = id_order(evses)
    memories = state.evses
    slots = w.slots
    input_order = [0] * len(order)
    consumed = w.consumed
    for pos, i in enumerate(order):
        e = evses[i]
        input_order[i] = pos
        mem = memories.get(e.id, NEVER_SEEN)
        if e.state is EvseState.WAITING and e.offline_since is None and e.enabled:
            s: Slot = EmptySlot(e, mem)  # what classify decides for it
        else:
            s = Slot(e, mem)
            classify(w, s)
        slots.append(s)
        # EVSE consumption in building phases, for the overdraft check: what is measured,
        # never what is only assumed for an unreachable EVSE (that would be a phantom
        # overdraw; its real draw, if any, is in the grid reading).
        if s.kind == FIXED and s.lreason is Limit.OFFLINE:
            pass
        elif e.has_meter:
            m = e.measured
            shift = PHASE_SHIFT.get(e.rotation % 360, 0)
            if shift == 0:
                drawn = (m.l1, m.l2, m.l3)
            elif shift == 1:
                drawn = (m.l3, m.l1, m.l2)
            else:
                drawn = (m.l2, m.l3, m.l1)
            s.drawn = drawn
            consumed[0] += drawn[0]
            consumed[1] += drawn[1]
            consumed[2] += drawn[2]
        elif e.state.charging and s.mem.last_set > 0:
            bm = s.bmask or worst_mask(e, s.learnt, s.plugged)
            held = s.mem.last_set
            s.drawn = (held if bm & 1 else 0, held if bm & 2 else 0, held if bm & 4 else 0)
            for p in MASK_PHASES[bm]:
                consumed[p] += s.mem.last_set
    w.input_order = input_order

    # Overdraft: measured total above the connection limit shrinks what is available. The
    # currents measured now were set under last cycle's limit; a limit that just dropped
    # is not an overdraw until the cars have had a cycle to follow it.
    site_m = site.load
    limit = cfg.max_total_current
    if state.prev_max_total is not None and state.prev_max_total > limit:
        limit = state.prev_max_total
    pen = list(state.penalty)
    until = list(state.penalty_until)
    worst = 0
    for p in range(3):
        if now >= until[p]:
            pen[p] = 0
        if not site_m.stale >> p & 1:
            over = site_m.current[p] + consumed[p] - limit
            if over > 0:
                worst = max(worst, over)
                pen[p] = max(pen[p], over)
                until[p] = now + cfg.overdraft_penalty_time
    w.penalty = Phases.of(pen)
    w.penalty_until = (until[0], until[1], until[2])
    w.overdraft_cur = max(state.overdraft_cur, worst)

    # Capacities: site (and wallbox supply line) at node 0, then each limited group.
    site_load = assumed_load(site_m, cfg.max_total_current, tun.credit_export)
    cap, avail = w.cap, w.node_avail
    for p in range(3):
        head = cfg.max_total_current - cfg.reserve_current - site_load[p] - pen[p]
        if 0 < cfg.max_total_evse_current < head:
            head = cfg.max_total_evse_current
            w.root_kind[p] = Limit.SUPPLY
        avail[p] = cap[p] = head
    for node, g in enumerate(tree.configs):
        if g is None or g.max_current <= 0:
            continue
        gl = assumed_load(g.load, g.max_current, tun.credit_export)
        c = node * 3
        avail[c] = cap[c] = g.max_current - gl[0]
        avail[c + 1] = cap[c + 1] = g.max_current - gl[1]
        avail[c + 2] = cap[c + 2] = g.max_current - gl[2]

    # Fixed loads come off every limited node above them, and count towards imbalance.
    imb = w.imb_base
    for s in slots:
        if s.kind != FIXED or s.current <= 0:
            continue
        node = tree.index.get(s.e.group, 0)
        for c in w.constraints(node, s.bmask):
            cap[c] -= s.current
        for p in MASK_PHASES[s.bmask]:
            imb[p] += s.current
    if cfg.imbalance_add:
        w.imb_extra = site_load
        for p in range(3):
            imb[p] += site_load[p]

    # Ranking keys: group priorities along the path, then the EVSE's own, padded so an
    # EVSE tied with a sibling group competes with its members as if it had its priority.
    width = tree.depth + 1
    tiers: dict[tuple[int, int], tuple[float, ...]] = {}
    for s in slots:
        if s.kind != CANDIDATE:
            continue
        e = s.e
        node = tree.index.get(e.group, 0)
        s.cons = w.constraints(node, s.bmask)
        tkey = (node, e.priority)
        tier = tiers.get(tkey)
        if tier is None:
            prio = tree.prio[node]
            key: list[float] = [-x for x in prio]
            key.extend([-e.priority] * (width - len(prio)))
            tier = tiers[tkey] = (*key, 1.0, 0.0)
        if e.fcfs:
            since = s.plugged_since if s.plugged_since is not None else now
            tier = (*tier[:-2], 0.0, since)
        s.tier = tier
    return w

