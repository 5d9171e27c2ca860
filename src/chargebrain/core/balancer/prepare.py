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
    NO_LEND,
    BalancerState,
    DisablePolicy,
    Limit,
    SiteInput,
)
from chargebrain.core.balancer.drawing import observe, probing
from chargebrain.core.balancer.finish import charge_of, finish
from chargebrain.core.balancer.layout import id_order, tree_of
from chargebrain.core.balancer.lending import lend
from chargebrain.core.balancer.overdraft import given, overdraft
from chargebrain.core.balancer.plans import classify_plan
from chargebrain.core.balancer.work import (
    BY_CAP,
    BY_FROZEN,
    BY_IMBALANCE,
    BY_TIMER,
    CANDIDATE,
    CAP_REASONS,
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
    cons_cache_of,
    rot_mask,
    worst_mask,
)
from chargebrain.core.model import EvseState
from chargebrain.core.phases import ALL_PHASES_MASK

__all__ = [
    "BY_CAP",
    "BY_FROZEN",
    "BY_IMBALANCE",
    "BY_TIMER",
    "CANDIDATE",
    "CAP_REASONS",
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


_OFFLINE = EvseState.OFFLINE
_CHARGING = frozenset(s for s in EvseState if s.charging)
_RULE, _OVERRIDE, _EVSE_MAX, _CAR_DRAW = Limit.RULE, Limit.OVERRIDE, Limit.EVSE_MAX, Limit.CAR_DRAW
_NO_LEND = NO_LEND
_BACKEND = Limit.BACKEND
_SCHEDULE = Limit.SCHEDULE
_CAP_TEXT = {_EVSE_MAX: "EVSE maximum", _BACKEND: "OCPP backend", _SCHEDULE: "charging schedule"}
_ROTATED = {(m, r): rot_mask(m, r) for m in range(8) for r in (0, 120, 240)}


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
    state = e.state
    offline = e.offline_since is not None or state is _OFFLINE
    mem_plugged = mem.plugged
    plugged = mem_plugged if offline else state in PLUGGED
    s.plugged = plugged
    if plugged:
        if e.plugged_since is not None:
            s.plugged_since = e.plugged_since
        elif mem_plugged and mem.plugged_since is not None:
            s.plugged_since = mem.plugged_since
        else:
            s.plugged_since = now
        learnt = mem.learnt_phases if mem_plugged else 0
        if not offline and e.has_meter and not e.used_phases and not e.one_phase:
            # (On one phase nothing is learnt: back on three, the car may use them all.)
            learnt |= e.measured.mask(tun.learn_threshold_ma)
        s.learnt = learnt
    min_cur = e.min_current
    if min_cur < IEC_MIN_CURRENT:
        min_cur = IEC_MIN_CURRENT
    max_cur = e.max_current
    max_kind = _EVSE_MAX
    backend = e.backend_current
    if backend is not None and backend < max_cur:
        max_cur, max_kind = (backend if backend > 0 else 0), _BACKEND
    sched = e.schedule_current  # a limit like the backend's; below the minimum: no charging
    if sched is not None and sched < max_cur:
        max_cur, max_kind = (sched if sched > 0 else 0), _SCHEDULE

    if offline:
        last = mem.last_set if mem.last_set >= 0 else max_cur
        if e.offline_current is not None:
            last = e.offline_current
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
            _fixed(s, max_cur, bmask, Limit.DISABLED, "disabled (free charging)", False)
        else:
            _idle(s, Limit.DISABLED, "disabled")
        return
    if not plugged:
        if state is EvseState.ERROR:
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
    if max_cur < min_cur:
        _idle(s, max_kind, _CAP_TEXT[max_kind])
        return
    wish, wish_kind = e.rule_current, _RULE
    if e.override_current is not None:
        wish, wish_kind = e.override_current, _OVERRIDE
    if wish is not None and wish <= 0:
        _idle(s, wish_kind, "override" if wish_kind is _OVERRIDE else "rule")
        return

    s.kind = CANDIDATE
    s.min = min_cur
    if wish is None or wish >= max_cur:
        want, cap_kind = max_cur, max_kind
    else:
        # A rule or override asking for less than the minimum charges at the minimum.
        want, cap_kind = (wish if wish > min_cur else min_cur), wish_kind
    s.want = s.max_want = want
    s.cap_kind = s.max_kind = cap_kind
    has_meter = e.has_meter
    used = e.used_phases & ALL_PHASES_MASK
    if e.one_phase and not (e.measured.mask(tun.learn_threshold_ma) & 0b110):
        # Its 1-phase contactor is selected and it draws on no other phase (it would if
        # the contactor had not switched yet).
        evse_mask = 0b001
    elif used:
        evse_mask = used
    elif has_meter:
        # Until the car has shown which phases it uses, its current is planned on every
        # phase: a three-phase car must not start on room that exists only on L1.
        evse_mask = s.learnt or ALL_PHASES_MASK
    else:
        evse_mask = ALL_PHASES_MASK  # cannot learn without a meter: assume the worst
    rotated = _ROTATED.get((evse_mask, e.rotation))
    bmask = rotated if rotated is not None else rot_mask(evse_mask, e.rotation)
    s.bmask = bmask
    if e.departure is not None:
        w.planned = True
        classify_plan(w, s, mem.urgent and mem_plugged)
    last_set = mem.last_set
    # A charging car (one paused while readings were missing may be one again, see
    # `_data_back`).
    incumbent = s.incumbent = last_set > 0 and mem.waiting_since is None and mem_plugged
    offered = last_set if mem_plugged and last_set > 0 else 0
    if has_meter:
        m = e.measured
        draw = m.l1
        if m.l2 > draw:
            draw = m.l2
        if m.l3 > draw:
            draw = m.l3
    else:
        draw = offered if state in _CHARGING else 0
    dm = mem.draw if mem_plugged else NO_DRAW
    drawing = s.drawing = draw >= tun.idle_threshold_ma
    if dm is not NO_DRAW or (offered and not drawing):  # else: nothing new to note
        dm = observe(dm, draw, offered, min_cur, want, now, tun)
        if dm.idle:
            s.idle, s.probing = True, probing(dm, now)
    s.dm = dm
    if e.own_lending and draw < offered:
        # Another charging manager lends itself (EvseInput.own_lending): to lending here it
        # draws its offer. Idle or not was judged on what it draws, above.
        draw = offered
    if mem_plugged and (mem.charge or mem.charge_rate):
        s.charge = charge_of(mem, now)
    if w.imb_limit > 0 and (bmask != ALL_PHASES_MASK or (has_meter and not s.learnt)):
        # Where the imbalance check counts a car: on the phases it may draw on (the heavy
        # side of a pair) and on those it surely draws on (the light side). A car whose
        # phases are not known yet may draw on every phase it is planned on but surely
        # only on its L1 (where that keeps it from starting, it starts anyway at its
        # minimum, see allocate.measure_first); a car that has drawn nothing for
        # quiet_after_s surely draws nowhere (counting it would balance the phases on
        # paper only). A car on all three known phases cannot unbalance them and is left
        # out.
        known = used or not has_meter or s.learnt
        if not known or bmask != ALL_PHASES_MASK:
            quiet = dm.quiet_since
            s.hmask = bmask
            s.unsure_phases = not known
            if not (dm.idle or (quiet is not None and now - quiet >= tun.quiet_after_s)):
                s.lmask = bmask if known else rot_mask(1, e.rotation)
    if mem_plugged and mem.lend is not _NO_LEND:
        s.lm = mem.lend
    if incumbent:
        lend(w, s, draw)
        if has_meter and s.lmask:
            # A charging car surely draws what it draws now, at most its current: what it
            # is given beyond (lent from, probed upward, limited by its own charger) counts
            # on the heavy side of a pair only.
            s.sure_draw = draw
        elif s.cap_kind is _CAR_DRAW and s.want > draw:
            # It is given up to `want` but draws less: on the light side of a pair only
            # what it draws counts.
            s.lfree = min(s.min, s.want - draw)


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
    consumed, excess = w.consumed, w.excess
    settle = tun.settle_s
    odraw_ma, odraw_share = tun.overdraw_tolerance_ma, tun.overdraw_tolerance_share
    mem_of = memories.get
    add = slots.append
    waiting, offline = EvseState.WAITING, Limit.OFFLINE
    for pos, i in enumerate(order):
        e = evses[i]
        input_order[i] = pos
        mem = mem_of(e.id, NEVER_SEEN)
        if e.state is waiting and e.offline_since is None and e.enabled:
            s: Slot = EmptySlot(e, mem)  # what classify decides for it
        else:
            s = Slot(e, mem)
            classify(w, s)
        add(s)
        # EVSE consumption in building phases, for the overdraft check: what is measured,
        # never what is only assumed for an unreachable EVSE (that would be a phantom
        # overdraw; its real draw, if any, is in the grid reading).
        if s.kind == FIXED and s.lreason is offline:
            pass
        elif e.has_meter:
            m = e.measured
            rot = e.rotation
            shift = 0 if rot == 0 else PHASE_SHIFT.get(rot % 360, 0)
            if shift == 0:
                d0, d1, d2 = m.l1, m.l2, m.l3
            elif shift == 1:
                d0, d1, d2 = m.l3, m.l1, m.l2
            else:
                d0, d1, d2 = m.l2, m.l3, m.l1
            s.drawn = (d0, d1, d2)
            consumed[0] += d0
            consumed[1] += d1
            consumed[2] += d2
            if d0 > 0 or d1 > 0 or d2 > 0:
                top = s.current if s.kind == FIXED else given(s.mem, now, settle)
                # within its meter's tolerance it draws what it was given (overdraft.py)
                over = top + odraw_ma + round(top * odraw_share)
                if d0 > over:
                    excess[0] += d0 - top
                if d1 > over:
                    excess[1] += d1 - top
                if d2 > over:
                    excess[2] += d2 - top
        elif e.state.charging and s.mem.last_set > 0:
            bm = s.bmask or worst_mask(e, s.learnt, s.plugged)
            held = s.mem.last_set
            s.drawn = (held if bm & 1 else 0, held if bm & 2 else 0, held if bm & 4 else 0)
            for p in MASK_PHASES[bm]:
                consumed[p] += s.mem.last_set
    w.input_order = input_order

    site_m = site.load
    pen = overdraft(w, site_m, state)
    house = w.house_applied

    # Capacities: site (and wallbox supply line) at node 0, then each limited group.
    site_load = assumed_load(site_m, cfg.max_total_current, tun.credit_export)
    cap, avail, unsure = w.cap, w.node_avail, w.unsure
    if cfg.scheduled:
        w.root_kind = [Limit.SCHEDULE] * 3
    for p in range(3):
        if site_m.stale >> p & 1:
            unsure[p] = site_load[p]
        head = cfg.max_total_current - cfg.reserve_current - site_load[p] - pen[p]
        if 0 < cfg.max_total_evse_current < head:
            head = cfg.max_total_evse_current
            w.root_kind[p] = Limit.SUPPLY
        avail[p] = cap[p] = head
        if house[p] > 0:  # the house's part of the penalty pauses no charging car
            soft = head + house[p]
            if 0 < cfg.max_total_evse_current < soft:
                soft = cfg.max_total_evse_current
            w.soft[p] = soft - head
    for node, g in enumerate(tree.configs):
        if g is None or g.max_current is None:
            continue
        limit = max(0, g.max_current)
        gl = assumed_load(g.load, limit, tun.credit_export)
        if g.load is not None:  # its own load is measured: the site's reserve, as there
            limit -= cfg.reserve_current
        c = node * 3
        if g.load is not None and g.load.stale:
            for p in range(3):
                if g.load.stale >> p & 1:
                    unsure[c + p] = gl[p]
        avail[c] = cap[c] = limit - gl[0]
        avail[c + 1] = cap[c + 1] = limit - gl[1]
        avail[c + 2] = cap[c + 2] = limit - gl[2]

    w.cons_cache = cons_cache_of(tree, cap)

    # Fixed loads come off every limited node above them, and count towards imbalance.
    # Ranking keys: group priorities along the path, then the EVSE's own, padded so an
    # EVSE tied with a sibling group competes with its members as if it had its priority.
    imb = w.imb_base
    width = tree.depth + 1
    tiers: dict[tuple[int, int], tuple[float, ...]] = {}
    same_tier: dict[tuple[float, ...], tuple[float, ...]] = {}
    index, cons_cache = tree.index, w.cons_cache
    quiet = _quiet_nodes(site, index)
    for s in slots:
        kind = s.kind
        if kind == CANDIDATE:
            e = s.e
            node = index.get(e.group, 0)
            if quiet:
                for n in tree.path[node]:
                    if n in quiet:
                        s.frozen = n
                        break
            cons = cons_cache.get((node, s.bmask))
            s.cons = cons if cons is not None else w.constraints(node, s.bmask)
            tkey = (node, e.priority)
            tier = tiers.get(tkey)
            if tier is None:
                prio = tree.prio[node]
                key: list[float] = [-x for x in prio]
                key.extend([-e.priority] * (width - len(prio)))
                # Equal keys as one object (the tiers are told apart by identity first).
                tier = (*key, 1.0, 0.0)
                tier = tiers[tkey] = same_tier.setdefault(tier, tier)
            if e.fcfs:
                since = s.plugged_since if s.plugged_since is not None else now
                tier = (*tier[:-2], 0.0, since)
            s.tier = tier
        elif kind == FIXED and s.current > 0:
            node = index.get(s.e.group, 0)
            unreachable = s.lreason is Limit.OFFLINE
            for c in w.constraints(node, s.bmask):
                cap[c] -= s.current
                if unreachable:
                    unsure[c] += s.current
            for p in MASK_PHASES[s.bmask]:
                imb[p] += s.current
    if cfg.imbalance_add:
        w.imb_extra = site_load
        for p in range(3):
            imb[p] += site_load[p]
    _data_back(w)
    return w


def _data_back(w: Work) -> None:
    """A car paused only for loads assumed for missing readings competes as the charging
    car it was once less is assumed on its limits than when it stopped (the readings are
    back); until then it waits like any waiting car, but without a pause timer."""
    for s in w.slots:
        mem = s.mem
        if (mem.data_pause and s.kind == CANDIDATE and mem.plugged
                and w.unsure_on(s.cons) < mem.data_pause):
            s.incumbent = True


def _quiet_nodes(site: SiteInput, index: dict[int, int]) -> frozenset[int]:
    """Nodes whose non-EVSE load reading is not fresh: nobody under them gets more."""
    if site.load.fresh and all(g.load is None or g.load.fresh for g in site.groups):
        return frozenset()
    out = set()
    if not site.load.fresh:
        out.add(0)
    for g in site.groups:
        if g.load is not None and not g.load.fresh and g.id in index:
            out.add(index[g.id])
    return frozenset(out)

