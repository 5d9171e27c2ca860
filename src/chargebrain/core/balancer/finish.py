"""Build the Allocation from the policy's choices: rounding, decisions, node summaries and
the memory carried into the next cycle. Pure: no I/O, no clock reads; it never mutates
its inputs or the carried state.
"""

from __future__ import annotations

from dataclasses import fields, replace

from chargebrain.core.balancer.data import (
    NEVER_SEEN,
    NO_DRAW,
    NO_LEND,
    Allocation,
    BalancerState,
    DrawMemory,
    EvseDecision,
    EvseMemory,
    LendMemory,
    Limit,
    NodeDecision,
    PauseReason,
)
from chargebrain.core.balancer.drawing import not_offered
from chargebrain.core.balancer.plans import URGENT
from chargebrain.core.balancer.work import (
    BY_CAP,
    CANDIDATE,
    FIXED,
    IDLE,
    INF,
    MASK_PHASES,
    EmptySlot,
    Slot,
    Work,
)
from chargebrain.core.phases import ZERO, Phases


def finish(w: Work, state: BalancerState) -> Allocation:
    """Round, explain, remember: build the Allocation from the policy's choices."""
    cfg, tun, now, tree = w.cfg, w.tun, w.now, w.tree
    step = max(tun.current_step_ma, 1)
    write_ok = cfg.lb_enabled
    memories: dict[str, EvseMemory] = {}
    decisions: list[EvseDecision] = []
    node_alloc = [0] * (3 * len(tree.path))
    tot = [0, 0, 0]
    index = tree.index
    memo_get = _decisions.get
    add = decisions.append
    for s in w.slots:
        e, mem = s.e, s.mem
        if s.__class__ is EmptySlot:
            memories[e.id] = _UNPLUGGED
            key = (e.id, 0, True, write_ok, False, _NO_PAUSE, _NO_VEHICLE, _NO_VEHICLE_REASON, 0)
            d = memo_get(key)
            add(d if d is not None else _decision(key))
            continue
        kind = s.kind
        if kind == CANDIDATE and s.admitted:
            # The current above the minimum moves in whole steps.
            s.current = s.min + s.extra - s.extra % step
        cur = s.current
        pause_time = 0.0
        if cur > 0:
            base = index.get(e.group, 0) * 3
            for p in MASK_PHASES[s.bmask]:
                node_alloc[base + p] += cur
                tot[p] += cur
        if kind == FIXED:
            new_mem = _fixed_memory(s, mem, now, tun.settle_s)
        elif kind == IDLE:
            new_mem = _idle_memory(s, mem, now, tun.settle_s)
        else:
            new_mem = _candidate_memory(w, s, mem)
            if s.paused and new_mem.waiting_since is not None:
                pause_time = now - new_mem.waiting_since
        if new_mem is not NEVER_SEEN:
            memories[e.id] = new_mem
        write = write_ok and not (kind == FIXED and s.lreason is Limit.OFFLINE)
        if pause_time == 0.0:
            key = (e.id, cur, s.controlled, write, s.paused, s.pause_reason, s.lreason,
                   s.reason, s.bmask)  # fmt: skip
            d = memo_get(key)
            add(d if d is not None else _decision(key))
        elif cur == 0:  # paused (pause_time is only set for a paused car)
            add(
                _paused_decision(
                    e.id, s.controlled, write, pause_time, s.pause_reason, s.lreason,
                    s.reason, s.bmask,
                )
            )
        else:
            add(
                EvseDecision(
                    e.id, cur, cur > 0, s.controlled, write, s.paused, pause_time,
                    s.pause_reason, s.lreason, s.reason, s.bmask,
                    Phases.on_mask(cur, s.bmask) if cur > 0 else ZERO,
                )
            )
    for n in tree.bottom_up:
        par = tree.parent[n]
        if par >= 0:
            for p in range(3):
                node_alloc[par * 3 + p] += node_alloc[n * 3 + p]
    avail = w.node_avail
    nodes = []
    for n in range(len(tree.path)):
        c = n * 3
        a0, a1, a2 = avail[c], avail[c + 1], avail[c + 2]
        if a0 >= INF:
            a0 = a1 = a2 = -1  # no limit of its own
        else:
            a0, a1, a2 = (a0 if a0 > 0 else 0), (a1 if a1 > 0 else 0), (a2 if a2 > 0 else 0)
        nodes.append(
            _node(
                (tree.group_ids[n], tree.labels[n], a0, a1, a2,
                 node_alloc[c], node_alloc[c + 1], node_alloc[c + 2])
            )
        )
    spread = [tot[p] + w.imb_extra[p] for p in range(3)]
    new_state = BalancerState(
        evses=memories,
        penalty=w.penalty,
        penalty_until=w.penalty_until,
        house_penalty=w.house_penalty,
        house_until=w.house_until,
        overdraft_cur=w.overdraft_cur,
        prev_max_total=cfg.max_total_current,
        prev_load=w.site_load,
        rank_order=w.rank_order,
    )
    return Allocation(
        evses=tuple(decisions[i] for i in w.input_order),
        available=Phases.of([max(v, 0) for v in w.node_avail[:3]]),
        allocated=Phases.of(tot),
        consumed=Phases.of(w.consumed),
        overdraft_applied=w.pen_applied,
        overdraft_cur=w.overdraft_cur,
        imbalance=max(spread) - min(spread),
        observe=not cfg.lb_enabled,
        nodes=tuple(nodes),
        state=new_state,
        overshoot=w.overshoot,
    )


# Building a frozen slotted dataclass through its generated __init__ sets every field with
# object.__setattr__; setting the slots through their descriptors gives the same object at
# about half the cost. The unpacking fails at import if a field is added or removed.
_new = object.__new__
(_m0, _m1, _m2, _m3, _m4, _m5, _m6, _m7, _m8, _m9, _m10, _m11, _m12, _m13, _m14, _m15, _m16,
 _m17, _m18, _m19) = [getattr(EvseMemory, f.name).__set__ for f in fields(EvseMemory)]
(_d0, _d1, _d2, _d3, _d4, _d5, _d6, _d7, _d8, _d9, _d10, _d11) = [
    getattr(EvseDecision, f.name).__set__ for f in fields(EvseDecision)
]


def _memory(
    last_set: int,
    plugged: bool,
    plugged_since: float | None,
    learnt_phases: int,
    waiting_since: float | None,
    pause_until: float,
    pause_reason: PauseReason,
    charging_since: float | None,
    lend_cycles: int,
    capped: bool,
    raised: bool,
    draw: DrawMemory,
    charge: float,
    charge_at: float,
    charge_rate: int,
    data_pause: int,
    prev_set: int,
    set_at: float,
    lend: LendMemory,
    urgent: bool,
) -> EvseMemory:
    """EvseMemory(...) with every field given in order, built as described above."""
    m: EvseMemory = _new(EvseMemory)
    _m0(m, last_set)
    _m1(m, plugged)
    _m2(m, plugged_since)
    _m3(m, learnt_phases)
    _m4(m, waiting_since)
    _m5(m, pause_until)
    _m6(m, pause_reason)
    _m7(m, charging_since)
    _m8(m, lend_cycles)
    _m9(m, capped)
    _m10(m, raised)
    _m11(m, draw)
    _m12(m, charge)
    _m13(m, charge_at)
    _m14(m, charge_rate)
    _m15(m, data_pause)
    _m16(m, prev_set)
    _m17(m, set_at)
    _m18(m, lend)
    _m19(m, urgent)
    return m


def _paused_decision(
    evse_id: str,
    controlled: bool,
    write: bool,
    pause_time: float,
    pause_reason: PauseReason,
    lreason: Limit,
    reason: str,
    phases: int,
) -> EvseDecision:
    """EvseDecision of a paused EVSE (current 0), built as described above."""
    d: EvseDecision = _new(EvseDecision)
    _d0(d, evse_id)
    _d1(d, 0)
    _d2(d, False)
    _d3(d, controlled)
    _d4(d, write)
    _d5(d, True)
    _d6(d, pause_time)
    _d7(d, pause_reason)
    _d8(d, lreason)
    _d9(d, reason)
    _d10(d, phases)
    _d11(d, ZERO)
    return d


# A decision without a pause time is a function of these fields: (id, current,
# controlled, write, paused, pause_reason, lreason, reason, phases mask).
_DecisionKey = tuple[str, int, bool, bool, bool, PauseReason, Limit, str, int]
_decisions: dict[_DecisionKey, EvseDecision] = {}
_nodes: dict[tuple[int, str, int, int, int, int, int, int], NodeDecision] = {}
_MEMO_SIZE = 8192  # entries; a memo that grows beyond is emptied


def _decision(key: _DecisionKey) -> EvseDecision:
    """The EvseDecision of `key` (pause time 0), shared between cycles: building a frozen
    dataclass costs far more than looking one up, and most decisions repeat."""
    d = _decisions.get(key)
    if d is None:
        evse_id, cur, ctl, write, paused, pause_reason, lreason, reason, bmask = key
        load = Phases.on_mask(cur, bmask) if cur > 0 else ZERO
        d = EvseDecision(
            evse_id, cur, cur > 0, ctl, write, paused, 0.0, pause_reason, lreason, reason,
            bmask, load,
        )  # fmt: skip
        if len(_decisions) >= _MEMO_SIZE:
            _decisions.clear()
        _decisions[key] = d
    return d


def _node(key: tuple[int, str, int, int, int, int, int, int]) -> NodeDecision:
    """NodeDecision(id, label, available (None if a0 is -1), allocated), shared."""
    d = _nodes.get(key)
    if d is None:
        gid, label, a0, a1, a2, n0, n1, n2 = key
        d = NodeDecision(
            gid, label, None if a0 < 0 else Phases(a0, a1, a2), Phases(n0, n1, n2)
        )
        if len(_nodes) >= _MEMO_SIZE:
            _nodes.clear()
        _nodes[key] = d
    return d


def charge_of(mem: EvseMemory, now: float) -> float:
    """Current given to the car since it was plugged in (mA·s per phase) until `now`."""
    if not mem.plugged:
        return 0.0
    if mem.charge_rate:
        return mem.charge + mem.charge_rate * (now - mem.charge_at)
    return mem.charge


def _fixed_memory(s: Slot, mem: EvseMemory, now: float, settle_s: float) -> EvseMemory:
    if s.lreason is Limit.OFFLINE:
        return mem  # what it holds is not ours to change; remember as it was
    kept = s.plugged and mem.plugged
    prev_set, set_at = _set_change(mem, s.current, now, settle_s)
    return EvseMemory(
        last_set=s.current,
        plugged=s.plugged,
        plugged_since=s.plugged_since,
        learnt_phases=s.learnt,
        pause_until=mem.pause_until,
        draw=not_offered(mem.draw) if kept else NO_DRAW,
        charge=charge_of(mem, now) if kept else 0.0,
        charge_at=now,
        prev_set=prev_set,
        set_at=set_at,
        lend=mem.lend if kept else NO_LEND,
        urgent=mem.urgent if kept else False,
    )


_UNPLUGGED = EvseMemory(last_set=0)
_NO_PAUSE = PauseReason.NONE
_NO_VEHICLE, _NO_VEHICLE_REASON = EmptySlot.lreason, EmptySlot.reason


def _idle_memory(s: Slot, mem: EvseMemory, now: float, settle_s: float) -> EvseMemory:
    if not s.plugged:
        return _UNPLUGGED
    prev_set, set_at = _set_change(mem, 0, now, settle_s)
    return EvseMemory(
        last_set=0,
        plugged=True,
        plugged_since=s.plugged_since,
        learnt_phases=s.learnt,
        pause_until=mem.pause_until,
        pause_reason=mem.pause_reason if mem.pause_until > 0 else PauseReason.NONE,
        draw=not_offered(mem.draw) if mem.plugged else NO_DRAW,
        charge=charge_of(mem, now),
        charge_at=now,
        prev_set=prev_set,
        set_at=set_at,
        lend=mem.lend if mem.plugged else NO_LEND,
        urgent=mem.urgent if mem.plugged else False,
    )


def _set_change(mem: EvseMemory, current: int, now: float, settle_s: float) -> tuple[int, float]:
    """(prev_set, set_at) after setting `current`: the highest current set within settle_s
    before the new one, and when it changed (see overdraft.given)."""
    last = mem.last_set if mem.last_set > 0 else 0
    if current == last:
        return mem.prev_set, mem.set_at
    if mem.prev_set > last and now - mem.set_at < settle_s:
        return mem.prev_set, now
    return last, now


def _draw_memory(w: Work, s: Slot) -> DrawMemory:
    """The draw memory to carry: a probe starts when a probing car is admitted, and one
    that was not admitted stays due."""
    d = s.dm
    if d is NO_DRAW:
        return d
    if s.admitted and s.probing and d.probe_until is None:
        return replace(d, probe_until=w.now + w.tun.probe_s)
    if not s.admitted and d.probe_until is not None:
        return replace(d, probe_until=None)
    return d


def _candidate_memory(w: Work, s: Slot, mem: EvseMemory) -> EvseMemory:
    # Positional: EvseMemory(last_set, plugged, plugged_since, learnt_phases, waiting_since,
    # pause_until, pause_reason, charging_since, lend_cycles, capped, raised, draw, charge,
    # charge_at, charge_rate, data_pause, prev_set, set_at, lend, urgent).
    now = w.now
    dm = s.dm
    if dm is not NO_DRAW:
        dm = _draw_memory(w, s)
    charge = s.charge
    settle = w.tun.settle_s
    urgent = s.plan == URGENT
    if s.admitted:
        capped = s.cap_kind is Limit.CAR_DRAW and (s.bound == BY_CAP or s.held)
        raised = s.current > mem.last_set
        rate = s.current if s.drawing else 0  # charge counts while the car draws
        if (  # a steady charging car: nothing to remember anew
            s.incumbent
            and mem.charging_since is not None
            and mem.last_set == s.current
            and mem.lend_cycles == s.lend_cycles
            and mem.capped is capped
            and mem.raised is raised
            and mem.learnt_phases == s.learnt
            and mem.plugged_since == s.plugged_since
            and mem.pause_reason is PauseReason.NONE
            and mem.draw is dm
            and mem.charge_rate == rate
            and mem.lend is s.lm
            and not mem.data_pause
            and mem.urgent is urgent
        ):
            return mem
        # A charging spell starts anew when the car starts drawing after being idle, or
        # when a probe starts: rotation counts from then.
        fresh = (mem.draw.idle and not dm.idle) or (
            dm.probe_until is not None and mem.draw.probe_until is None
        )
        prev_set, set_at = _set_change(mem, s.current, now, settle)
        return _memory(
            s.current,
            True,
            s.plugged_since,
            s.learnt,
            None,
            0.0 if mem.data_pause else mem.pause_until,
            PauseReason.NONE,
            mem.charging_since
            if s.incumbent and mem.charging_since is not None and not fresh
            else now,
            s.lend_cycles,
            capped,
            raised,
            dm,
            charge,
            now,
            rate,
            0,
            prev_set,
            set_at,
            s.lm,
            urgent,
        )
    waiting = now if mem.waiting_since is None else mem.waiting_since
    until = mem.pause_until
    since = None
    data_pause = 0
    if s.incumbent:
        if s.data_pause:
            # Stopped only for loads assumed for missing readings: no pause timer, and it
            # keeps its place as a charging car for when they are back.
            data_pause, since = s.data_pause, mem.charging_since
        elif mem.data_pause:
            # The readings are back and it still does not fit: the minimum pause counts
            # from when it stopped.
            until = waiting + w.cfg.min_pause_time
        elif s.drawing or mem.charge_rate > 0 or s.idle:
            # A car that was charging stops now: the minimum pause starts, so it does not
            # flap; so does an idle car's (its current would come and go at the others'
            # expense). A car given current that has not started drawing yet gets none.
            until = now + w.cfg.min_pause_time
    elif mem.data_pause:  # the readings are still missing
        data_pause, since = mem.data_pause, mem.charging_since
    if (  # still paused as it was: nothing to remember anew (charge_at, the one field
        # that would move, counts only while charge_rate is set)
        mem.last_set == 0
        and mem.waiting_since is not None
        and mem.charge_rate == 0
        and mem.pause_until == until
        and mem.pause_reason is s.pause_reason
        and mem.draw is dm
        and mem.charge == charge
        and mem.charging_since == since
        and mem.data_pause == data_pause
        and mem.learnt_phases == s.learnt
        and mem.plugged_since == s.plugged_since
        and mem.lend is s.lm
        and mem.urgent is urgent
        and mem.plugged
        and not mem.lend_cycles
        and not mem.capped
        and not mem.raised
    ):
        return mem
    prev_set, set_at = _set_change(mem, 0, now, settle)
    return _memory(
        0, True, s.plugged_since, s.learnt, waiting, until, s.pause_reason, since, 0, False,
        False, dm, charge, now, 0, data_pause, prev_set, set_at, s.lm, urgent,
    )
