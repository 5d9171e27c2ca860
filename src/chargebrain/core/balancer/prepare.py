"""Turn one cycle's inputs into working numbers, and working numbers into an Allocation.

Everything a policy needs before it decides (group tree, per-phase capacities, fixed loads
of offline and disabled EVSEs, overdraft penalty, which EVSEs compete for current and with
what minimum and maximum) and everything after (rounding, reasons, memory, summaries).
The policies in this package and core/baselines.py share it, so they differ only in how
they choose currents. Pure: no I/O, no clock reads; it must never mutate its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

from chargebrain.core.balancer.data import (
    IEC_MIN_CURRENT,
    NEVER_SEEN,
    NO_DRAW,
    Allocation,
    BalancerState,
    DisablePolicy,
    DrawMemory,
    EvseDecision,
    EvseInput,
    EvseMemory,
    GroupConfig,
    Limit,
    Measurement,
    NodeDecision,
    PauseReason,
    SiteConfig,
    SiteInput,
    Tuning,
)
from chargebrain.core.balancer.drawing import not_offered, observe, probing
from chargebrain.core.model import EvseState
from chargebrain.core.phases import ALL_PHASES_MASK, ZERO, Phases, rotate_mask

INF = 1 << 62  # capacity of a node without a limit of its own
PHASE_NAMES = ("L1", "L2", "L3")
MASK_PHASES: tuple[tuple[int, ...], ...] = tuple(
    tuple(p for p in range(3) if m >> p & 1) for m in range(8)
)

_SHIFT = {0: 0, 120: 1, 240: 2}
_ROTATED = {(m, r): rotate_mask(m, r) for m in range(8) for r in (0, 120, 240)}


def _rot_mask(mask: int, rotation: int) -> int:
    """rotate_mask, looked up (it runs for every EVSE every cycle)."""
    got = _ROTATED.get((mask & ALL_PHASES_MASK, rotation))
    return got if got is not None else rotate_mask(mask, rotation)


_PLUGGED = frozenset(s for s in EvseState if s.plugged)
PAIRS = ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))  # ordered pairs of phases

# How a slot is handled.
FIXED = 0  # counted as load, not controlled by the policy (offline, disabled 1 / -1)
IDLE = 1  # gets 0 and is not paused (no car, rule, override, not authorised, ...)
CANDIDATE = 2  # competes for current

# Why a candidate was not admitted / what froze it (besides a constraint index >= 0).
FITS = -1
BY_CAP = -1
BY_IMBALANCE = -2
BY_TIMER = -3  # would fit, but its pause has not lasted min_pause_time
NOT_SET = -4


@dataclass(frozen=True, slots=True)
class Tree:
    """Nodes: 0 = site, then the groups by id. Paths run from the site down to the node."""

    configs: tuple[GroupConfig | None, ...]  # node index -> group (None for the site)
    group_ids: tuple[int, ...]  # node index -> group id (0 for the site)
    labels: tuple[str, ...]
    parent: tuple[int, ...]  # parent node index (-1 for the site)
    path: tuple[tuple[int, ...], ...]  # node indexes from the site to the node, inclusive
    prio: tuple[tuple[int, ...], ...]  # group priorities along the path (site excluded)
    index: dict[int, int]  # group id -> node index
    depth: int  # longest prio path
    bottom_up: tuple[int, ...]  # node indexes, children before parents


def build_tree(groups: tuple[GroupConfig, ...]) -> Tree:
    """Index the groups; unknown parents and cycles attach to the site (deterministically)."""
    gs = sorted((g for g in groups if g.id != 0), key=lambda g: g.id)
    index = {0: 0}
    for g in gs:
        if g.id in index:
            raise ValueError(f"duplicate group id {g.id}")
        index[g.id] = len(index)
    by_node: list[GroupConfig | None] = [None, *gs]
    n = len(index)
    parent = [-1] * n
    for i, g in enumerate(gs, start=1):
        parent[i] = index.get(g.parent, 0)
    # Break cycles: walking up from a node must reach the site; if it does not, that node
    # hangs on the site instead (nodes are repaired in id order, so this is deterministic).
    for i in range(1, n):
        steps, j = 0, i
        while j > 0 and steps <= n:
            j, steps = parent[j], steps + 1
        if j != 0:
            parent[i] = 0
    paths: list[tuple[int, ...]] = [()] * n
    prios: list[tuple[int, ...]] = [()] * n
    paths[0] = (0,)
    for i in range(1, n):
        chain, j = [], i
        while not paths[j]:
            chain.append(j)
            j = parent[j]
        for k in reversed(chain):
            gk = by_node[k]
            assert gk is not None
            paths[k] = (*paths[parent[k]], k)
            prios[k] = (*prios[parent[k]], gk.priority)
    order = sorted(range(n), key=lambda i: -len(paths[i]))
    labels = ["site"] + [g.label if g else "" for g in by_node[1:]]
    ids = [0] + [g.id if g else 0 for g in by_node[1:]]
    return Tree(
        configs=tuple(by_node),
        group_ids=tuple(ids),
        labels=tuple(labels),
        parent=tuple(parent),
        path=tuple(paths),
        prio=tuple(prios),
        index=index,
        depth=max((len(p) for p in prios), default=0),
        bottom_up=tuple(order),
    )


class Slot:
    """Working record of one EVSE during one cycle (private to a single call).

    Defaults live on the class so that building a thousand of them per cycle stays cheap.
    """

    kind = IDLE
    bmask = 0
    current = 0
    controlled = True
    lreason = Limit.NONE
    reason = ""
    paused = False
    pause_reason = PauseReason.NONE
    plugged = False
    plugged_since: float | None = None
    learnt = 0
    lend_cycles = 0
    min = 0
    want = 0
    max_want = 0  # want before any lending cap
    cap_kind = Limit.EVSE_MAX
    max_kind = Limit.EVSE_MAX  # cap_kind before any lending cap
    cons: tuple[int, ...] = ()
    tier: tuple[float, ...] = ()
    order: tuple[float, ...] = ()
    incumbent = False
    admitted = False
    fail = NOT_SET
    extra = 0
    bound = NOT_SET
    drawn: tuple[int, int, int] = (0, 0, 0)  # what it draws now per building phase
    dm: DrawMemory = NO_DRAW  # draw memory after this cycle's reading
    idle = False  # drawing nothing for a while: served after the others
    probing = False  # idle, and offered more for a while to see whether it starts
    held = False  # its rise waits for other cars to come down (handover.py)
    drawing = False  # it draws at least idle_threshold_ma now
    floor = 0  # its minimum: configured, or the start current it has shown
    hmask = 0  # building phases it may draw on, for the imbalance check (see classify)
    lmask = 0  # building phases it surely draws on, for the imbalance check
    lfree = 0  # of its current, this much is not surely drawn (it draws less)
    charge = 0.0  # current given since plug-in (mA·s per phase), see charge_of

    def __init__(self, e: EvseInput, mem: EvseMemory) -> None:
        self.e = e
        self.mem = mem


class Work:
    """Numbers of one cycle shared by prepare, a policy and finish."""

    __slots__ = (
        "cap",
        "cfg",
        "cons_cache",
        "consumed",
        "ihi",
        "ilo",
        "imb_base",
        "imb_eff",
        "imb_extra",
        "imb_limit",
        "imb_reserve",
        "input_order",
        "load",
        "node_avail",
        "now",
        "overdraft_cur",
        "penalty",
        "penalty_until",
        "root_kind",
        "slots",
        "tree",
        "tun",
    )

    def __init__(self, cfg: SiteConfig, tree: Tree, now: float) -> None:
        self.cfg = cfg
        self.tun: Tuning = cfg.tuning
        self.tree = tree
        self.now = now
        n3 = 3 * len(tree.path)
        self.cap = [INF] * n3  # capacity for controlled EVSEs per node and phase
        self.load = [0] * n3  # committed controlled current per node and phase
        self.node_avail: list[int] = [INF] * n3  # before fixed loads, for reporting
        self.root_kind = [Limit.SITE] * 3  # SITE or SUPPLY, whichever binds per phase
        self.cons_cache: dict[tuple[int, int], tuple[int, ...]] = {}
        self.slots: list[Slot] = []
        self.input_order: list[int] = []
        self.consumed = [0, 0, 0]
        self.imb_base = [0, 0, 0]  # imbalance terms outside controlled EVSEs
        self.imb_limit = 0  # configured limit, 0 = off
        self.imb_eff = 0  # limit the fill keeps to: max(limit, spread after minimums)
        self.imb_extra = [0, 0, 0]  # non-EVSE load counted when imbalance_add is set
        self.imb_reserve = [0] * 9  # per (p, q): remainder closed by a binding tier
        self.ihi = [0, 0, 0]  # controlled EVSE current that may be drawn, per phase
        self.ilo = [0, 0, 0]  # controlled EVSE current that surely is drawn, per phase
        self.penalty = ZERO
        self.penalty_until = (0.0, 0.0, 0.0)
        self.overdraft_cur = 0

    def constraints(self, node: int, bmask: int) -> tuple[int, ...]:
        """Indexes of the limited (node, phase) pairs an EVSE on `node` and `bmask` uses."""
        key = (node, bmask)
        got = self.cons_cache.get(key)
        if got is None:
            cap = self.cap
            got = tuple(
                n * 3 + p
                for n in self.tree.path[node]
                for p in MASK_PHASES[bmask]
                if cap[n * 3 + p] < INF
            )
            self.cons_cache[key] = got
        return got

    def kind_of(self, c: int) -> Limit:
        """The kind of limit constraint `c` stands for."""
        return self.root_kind[c] if c < 3 else Limit.GROUP

    def label_of(self, c: int) -> str:
        """Readable name of constraint `c`, e.g. "site phase L2" or "group E5 phase L1"."""
        if c < 3:
            name = "site" if self.root_kind[c] is Limit.SITE else "wallbox supply"
        else:
            name = self.tree.labels[c // 3]
        return f"{name} phase {PHASE_NAMES[c % 3]}"

    def fits(self, cons: tuple[int, ...], need: int) -> int:
        """FITS if `need` more fits on every constraint, else the first one it breaks."""
        cap, load = self.cap, self.load
        for c in cons:
            if load[c] + need > cap[c]:
                return c
        return FITS

    def imbalance(self) -> int:
        """The spread the imbalance check keeps within its limit: over every pair of
        phases, what may be drawn on one minus what surely is drawn on the other."""
        base, hi, lo = self.imb_base, self.ihi, self.ilo
        return _spread(
            base[0] + hi[0], base[1] + hi[1], base[2] + hi[2],
            base[0] + lo[0], base[1] + lo[1], base[2] + lo[2],
        )

    def imbalance_ok(self, s: Slot, need: int) -> bool:
        """Giving `s` a current of `need` keeps the spread within max(limit, spread now)."""
        if self.imb_limit <= 0 or need <= 0 or not (s.hmask or s.lmask):
            return True
        base, hi, lo = self.imb_base, self.ihi, self.ilo
        h = [base[0] + hi[0], base[1] + hi[1], base[2] + hi[2]]
        low = [base[0] + lo[0], base[1] + lo[1], base[2] + lo[2]]
        allowed = max(self.imb_limit, _spread(*h, *low))
        for p in MASK_PHASES[s.hmask]:
            h[p] += need
        for p in MASK_PHASES[s.lmask]:
            low[p] += need - s.lfree
        return _spread(*h, *low) <= allowed

    def count(self, s: Slot, amount: int, first: bool = False) -> None:
        """Add `amount` of `s`'s current to the imbalance count; `first`: the car's first
        current this cycle (its minimum), of which `lfree` is not surely drawn."""
        hi, lo = self.ihi, self.ilo
        for p in MASK_PHASES[s.hmask]:
            hi[p] += amount
        if first:
            amount = amount - s.lfree if amount > 0 else amount + s.lfree
        for p in MASK_PHASES[s.lmask]:
            lo[p] += amount

    def commit(self, cons: tuple[int, ...], amount: int) -> None:
        load = self.load
        for c in cons:
            load[c] += amount

    def reserve(self, s: Slot, amount: int) -> None:
        """Commit `amount` of current to `s`: on its limits and in the imbalance count."""
        self.commit(s.cons, amount)
        if s.hmask or s.lmask:
            self.count(s, amount, first=True)


def _spread(h0: int, h1: int, h2: int, l0: int, l1: int, l2: int) -> int:
    """max over phases p != q of h[p] - l[q]."""
    return max(h0 - l1, h0 - l2, h1 - l0, h1 - l2, h2 - l0, h2 - l1)


def _assumed_load(m: Measurement | None, full: int, credit_export: bool) -> list[int]:
    """Per-phase non-EVSE load to plan with; stale phases assume the worst case."""
    if m is None:
        return [0, 0, 0]
    if not m.stale:
        c = m.current
        if credit_export:
            return [c.l1, c.l2, c.l3]
        return [c.l1 if c.l1 > 0 else 0, c.l2 if c.l2 > 0 else 0, c.l3 if c.l3 > 0 else 0]
    out = []
    for p in range(3):
        if m.stale >> p & 1:
            v = m.worst_case[p] if m.worst_case is not None else full
        else:
            v = m.current[p]
        out.append(v if credit_export else max(v, 0))
    return out


def worst_mask(e: EvseInput, learnt: int, plugged: bool) -> int:
    """Building phases an uncontrolled EVSE may draw on: configured, learnt, else all."""
    if e.used_phases & ALL_PHASES_MASK:
        return _rot_mask(e.used_phases, e.rotation)
    if plugged and learnt:
        return _rot_mask(learnt, e.rotation)
    return ALL_PHASES_MASK


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
    plugged = mem.plugged if offline else e.state in _PLUGGED
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
    s.bmask = _rot_mask(evse_mask, e.rotation)
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
        s.lmask = s.bmask if known else _rot_mask(1, e.rotation)


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
    tree = build_tree(site.groups)
    w = Work(cfg, tree, now)
    w.imb_limit = max(cfg.max_imbalance_cur, 0)
    tun = w.tun

    evses = site.evses
    order = sorted(range(len(evses)), key=lambda i: evses[i].id)
    if len({e.id for e in evses}) != len(evses):
        ids = [evses[i].id for i in order]
        dup = next(a for a, b in pairwise(ids) if a == b)
        raise ValueError(f"duplicate EVSE id {dup!r}")
    memories = state.evses
    slots = w.slots
    input_order = [0] * len(order)
    consumed = w.consumed
    for pos, i in enumerate(order):
        e = evses[i]
        input_order[i] = pos
        s = Slot(e, memories.get(e.id, NEVER_SEEN))
        classify(w, s)
        slots.append(s)
        # EVSE consumption in building phases, for the overdraft check: what is measured,
        # never what is only assumed for an unreachable EVSE (that would be a phantom
        # overdraw; its real draw, if any, is in the grid reading).
        if s.kind == FIXED and s.lreason is Limit.OFFLINE:
            pass
        elif e.has_meter:
            m = e.measured
            shift = _SHIFT.get(e.rotation % 360, 0)
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
    site_load = _assumed_load(site_m, cfg.max_total_current, tun.credit_export)
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
        gl = _assumed_load(g.load, g.max_current, tun.credit_export)
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
    loads: dict[int, Phases] = {}  # equal values share one object
    for s in w.slots:
        e, mem = s.e, s.mem
        kind = s.kind
        if kind == CANDIDATE and s.admitted:
            # The current above the minimum moves in whole steps.
            s.current = s.min + s.extra - s.extra % step
        cur = s.current
        pause_time = 0.0
        if cur > 0:
            bmask = s.bmask
            lkey = cur * 8 + bmask
            load = loads.get(lkey)
            if load is None:
                load = loads[lkey] = Phases(
                    cur if bmask & 1 else 0, cur if bmask & 2 else 0, cur if bmask & 4 else 0
                )
            base = index.get(e.group, 0) * 3
            for p in MASK_PHASES[bmask]:
                node_alloc[base + p] += cur
                tot[p] += cur
        else:
            load = ZERO
        if kind == FIXED:
            new_mem = _fixed_memory(s, mem, now)
        elif kind == IDLE:
            new_mem = _idle_memory(s, mem, now)
        else:
            new_mem = _candidate_memory(w, s, mem)
            if s.paused and new_mem.waiting_since is not None:
                pause_time = now - new_mem.waiting_since
        if new_mem is not NEVER_SEEN:
            memories[e.id] = new_mem
        offline = kind == FIXED and s.lreason is Limit.OFFLINE
        decisions.append(
            EvseDecision(
                e.id,
                cur,
                cur > 0,
                s.controlled,
                write_ok and not offline,
                s.paused,
                pause_time,
                s.pause_reason,
                s.lreason,
                s.reason,
                s.bmask,
                load,
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
        nodes.append(
            NodeDecision(
                tree.group_ids[n],
                tree.labels[n],
                None
                if a0 >= INF
                else Phases(a0 if a0 > 0 else 0, a1 if a1 > 0 else 0, a2 if a2 > 0 else 0),
                Phases(node_alloc[c], node_alloc[c + 1], node_alloc[c + 2]),
            )
        )
    spread = [tot[p] + w.imb_extra[p] for p in range(3)]
    new_state = BalancerState(
        evses=memories,
        penalty=w.penalty,
        penalty_until=w.penalty_until,
        overdraft_cur=w.overdraft_cur,
        prev_max_total=cfg.max_total_current,
    )
    active_pen = Phases.of([w.penalty[p] if now < w.penalty_until[p] else 0 for p in range(3)])
    return Allocation(
        evses=tuple(decisions[i] for i in w.input_order),
        available=Phases.of([max(v, 0) for v in w.node_avail[:3]]),
        allocated=Phases.of(tot),
        consumed=Phases.of(w.consumed),
        overdraft_applied=active_pen,
        overdraft_cur=w.overdraft_cur,
        imbalance=max(spread) - min(spread),
        observe=not cfg.lb_enabled,
        nodes=tuple(nodes),
        state=new_state,
    )


def charge_of(mem: EvseMemory, now: float) -> float:
    """Current given to the car since it was plugged in (mA·s per phase) until `now`."""
    if not mem.plugged:
        return 0.0
    if mem.charge_rate:
        return mem.charge + mem.charge_rate * (now - mem.charge_at)
    return mem.charge


def _fixed_memory(s: Slot, mem: EvseMemory, now: float) -> EvseMemory:
    if s.lreason is Limit.OFFLINE:
        return mem  # what it holds is not ours to change; remember as it was
    kept = s.plugged and mem.plugged
    return EvseMemory(
        last_set=s.current,
        plugged=s.plugged,
        plugged_since=s.plugged_since,
        learnt_phases=s.learnt,
        pause_until=mem.pause_until,
        draw=not_offered(mem.draw) if kept else NO_DRAW,
        charge=charge_of(mem, now) if kept else 0.0,
        charge_at=now,
    )


_UNPLUGGED = EvseMemory(last_set=0)


def _idle_memory(s: Slot, mem: EvseMemory, now: float) -> EvseMemory:
    if not s.plugged:
        return _UNPLUGGED
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
    )


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
    # charge_at, charge_rate).
    now = w.now
    dm = _draw_memory(w, s)
    charge = s.charge
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
        ):
            return mem
        # A charging spell starts anew when the car starts drawing after being idle, or
        # when a probe starts: rotation counts from then.
        fresh = (mem.draw.idle and not dm.idle) or (
            dm.probe_until is not None and mem.draw.probe_until is None
        )
        return EvseMemory(
            s.current,
            True,
            s.plugged_since,
            s.learnt,
            None,
            mem.pause_until,
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
        )
    if s.incumbent:  # stopped now: the minimum pause starts
        waiting, until = now, now + w.cfg.min_pause_time
    else:
        waiting = now if mem.waiting_since is None else mem.waiting_since
        until = mem.pause_until
    return EvseMemory(
        0, True, s.plugged_since, s.learnt, waiting, until, s.pause_reason, None, 0, False,
        False, dm, charge, now, 0,
    )
