"""Working records of one allocation cycle: a `Slot` per EVSE and the cycle's `Work`
(per-(node, phase) capacities and loads, the imbalance count), shared by prepare, the
policies and finish. Private to a single call: never kept between cycles.
"""

from __future__ import annotations

from chargebrain.core.balancer.data import (
    NO_DRAW,
    NO_LEND,
    DrawMemory,
    EvseInput,
    EvseMemory,
    LendMemory,
    Limit,
    Measurement,
    PauseReason,
    SiteConfig,
    Tuning,
)
from chargebrain.core.balancer.layout import Tree
from chargebrain.core.model import EvseState
from chargebrain.core.phases import ALL_PHASES_MASK, ZERO, Phases, rotate_mask

INF = 1 << 62  # capacity of a node without a limit of its own
PHASE_NAMES = ("L1", "L2", "L3")
MASK_PHASES: tuple[tuple[int, ...], ...] = tuple(
    tuple(p for p in range(3) if m >> p & 1) for m in range(8)
)

PHASE_SHIFT = {0: 0, 120: 1, 240: 2}
_ROOT_NAMES = {Limit.SITE: "site", Limit.SCHEDULE: "site (charging schedule)"}
_ROTATED = {(m, r): rotate_mask(m, r) for m in range(8) for r in (0, 120, 240)}


def rot_mask(mask: int, rotation: int) -> int:
    """rotate_mask, looked up (it runs for every EVSE every cycle)."""
    got = _ROTATED.get((mask & ALL_PHASES_MASK, rotation))
    return got if got is not None else rotate_mask(mask, rotation)


PLUGGED = frozenset(s for s in EvseState if s.plugged)
PAIRS = ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))  # ordered pairs of phases

# How a slot is handled.
FIXED = 0  # counted as load, not controlled by the policy (offline, disabled 1 / -1)
IDLE = 1  # gets 0 and is not paused (no car, rule, override, not authorised, ...)
CANDIDATE = 2  # competes for current

# Why a candidate was not admitted / what froze it (besides a constraint index >= 0).
FITS = -1
BY_CAP = -1
BY_IMBALANCE = -2
#: The reason shown for a car held by its own cap, by what set the cap.
CAP_REASONS = {
    Limit.EVSE_MAX: "EVSE maximum",
    Limit.RULE: "rule",
    Limit.OVERRIDE: "override",
    Limit.CAR_DRAW: "car draw",
    Limit.IMBALANCE: "phases not known yet (phase imbalance)",
    Limit.BACKEND: "OCPP backend",
    Limit.SCHEDULE: "charging schedule",
}
BY_TIMER = -3  # would fit, but its pause has not lasted min_pause_time
NOT_SET = -4
BY_FROZEN = -5  # a meter above it is not fresh: it may not be given more than it had


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
    # (ranking key within its tier, id): what the ranking sorts by (allocate.sort_out)
    rank: tuple[tuple[float, ...], str] = ((), "")
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
    unsure_phases = False  # planned on all phases, not measured yet ("determine")
    hmask = 0  # building phases it may draw on, for the imbalance check (see classify)
    lmask = 0  # building phases it surely draws on, for the imbalance check
    lfree = 0  # of its current, this much is not surely drawn (it draws less)
    sure_draw = -1  # it surely draws at most this (what it draws now); -1: its current
    charge = 0.0  # current given since plug-in (mA·s per phase), see charge_of
    lm: LendMemory = NO_LEND  # lending memory after this cycle's reading (lending.py)
    data_pause = 0  # refused only for loads assumed for missing readings: the largest then
    frozen = -1  # node whose meter reading is not fresh (-1: none): no more than it had
    cap_reason = ""  # reason text when its cap binds, if not the cap kind's usual one
    plan = 0  # its departure plan's class (plans.py: NONE, URGENT, SLACK)
    need = 0  # current per phase its plan needs (mA)
    departure = float(INF)  # when it leaves, by its plan

    def __init__(self, e: EvseInput, mem: EvseMemory) -> None:
        self.e = e
        self.mem = mem


class EmptySlot(Slot):
    """An EVSE that is reachable, enabled and has no car (state WAITING): idle, "no
    vehicle". Its decision never changes, so finish shares one per EVSE id."""

    lreason = Limit.NO_VEHICLE
    reason = "no vehicle"


class Work:
    """Numbers of one cycle shared by prepare, a policy and finish."""

    __slots__ = (
        "cap",
        "cfg",
        "cons_cache",
        "consumed",
        "excess",
        "house_applied",
        "house_penalty",
        "house_until",
        "ihi",
        "ilo",
        "imb_base",
        "imb_eff",
        "imb_extra",
        "imb_limit",
        "imb_reserve",
        "input_order",
        "labels",
        "load",
        "node_avail",
        "now",
        "overdraft_cur",
        "overshoot",
        "pen_applied",
        "penalty",
        "penalty_until",
        "planned",
        "rank_order",
        "root_kind",
        "site_load",
        "slots",
        "soft",
        "tree",
        "tun",
        "unsure",
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
        # SITE, SCHEDULE (a charging schedule sets the site's limit) or SUPPLY, whichever
        # binds per phase
        self.root_kind = [Limit.SITE] * 3
        self.cons_cache: dict[tuple[int, int], tuple[int, ...]] = {}
        self.labels: dict[int, str] = {}  # label_of, once a constraint (prepare is done)
        self.slots: list[Slot] = []
        self.input_order: list[int] = []
        self.planned = False  # some EVSE has a departure plan (prepare)
        self.rank_order: tuple[str, ...] = ()  # BalancerState.rank_order for the next cycle
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
        self.house_penalty = ZERO
        self.house_until = (0.0, 0.0, 0.0)
        self.pen_applied = ZERO  # the penalty in force this cycle, both parts
        self.house_applied = [0, 0, 0]  # of it, the part the rest of the house caused
        # per (node, phase): room a charging car may still keep its minimum in, beyond
        # the capacity (the house's part of the overdraft penalty, overdraft.py)
        self.soft = [0] * n3
        self.site_load: Phases | None = None  # the site's non-EVSE load as measured
        self.overdraft_cur = 0
        self.overshoot = 0  # the largest overshoot measured this cycle
        # per (node, phase): the part of the capacity taken by loads assumed for missing
        # readings (unreachable EVSEs, stale meter phases), not measured
        self.unsure = [0] * n3
        self.excess = [0, 0, 0]  # what EVSEs draw above what they were given, per phase

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
        if c < 3:
            return self.root_kind[c]
        g = self.tree.configs[c // 3]
        return Limit.SCHEDULE if g is not None and g.scheduled else Limit.GROUP

    def label_of(self, c: int) -> str:
        """Readable name of constraint `c`, e.g. "site phase L2", "group E5 phase L1" or
        "site (charging schedule) phase L1". Only after prepare (which sets root_kind):
        remembered for the rest of the cycle."""
        got = self.labels.get(c)
        if got is not None:
            return got
        if c < 3:
            name = self.cfg.supply_label if self.root_kind[c] is Limit.SUPPLY else (
                _ROOT_NAMES[self.root_kind[c]])
        else:
            name = self.tree.labels[c // 3]
            g = self.tree.configs[c // 3]
            if g is not None and g.scheduled:
                name += " (charging schedule)"
        got = self.labels[c] = f"{name} phase {PHASE_NAMES[c % 3]}"
        return got

    def assumed_only(self, cons: tuple[int, ...], need: int) -> int:
        """If `need` more would fit on every constraint but for loads assumed for missing
        readings: the largest such load on them (mA); else 0."""
        cap, load, unsure = self.cap, self.load, self.unsure
        if all(load[c] + need <= cap[c] + unsure[c] for c in cons):
            return max((unsure[c] for c in cons), default=0)
        return 0

    def unsure_on(self, cons: tuple[int, ...]) -> int:
        """The largest load assumed for missing readings on these constraints (mA)."""
        unsure = self.unsure
        return max((unsure[c] for c in cons), default=0)

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
        b0, b1, b2 = base
        h0, h1, h2 = b0 + hi[0], b1 + hi[1], b2 + hi[2]
        l0, l1, l2 = b0 + lo[0], b1 + lo[1], b2 + lo[2]
        allowed = max(self.imb_limit, h0 - l1, h0 - l2, h1 - l0, h1 - l2, h2 - l0, h2 - l1)
        m = s.hmask
        if m & 1:
            h0 += need
        if m & 2:
            h1 += need
        if m & 4:
            h2 += need
        m = s.lmask
        if m:
            d = need - s.lfree
            if 0 <= s.sure_draw < d:
                d = s.sure_draw
            if m & 1:
                l0 += d
            if m & 2:
                l1 += d
            if m & 4:
                l2 += d
        return max(h0 - l1, h0 - l2, h1 - l0, h1 - l2, h2 - l0, h2 - l1) <= allowed

    def count(self, s: Slot, amount: int, first: bool = False) -> None:
        """Add `amount` of `s`'s current to the imbalance count; `first`: the car's first
        current this cycle (its minimum), of which `lfree` is not surely drawn."""
        hi, lo = self.ihi, self.ilo
        for p in MASK_PHASES[s.hmask]:
            hi[p] += amount
        if first:
            amount = amount - s.lfree if amount > 0 else amount + s.lfree
            if 0 <= s.sure_draw < amount:
                amount = s.sure_draw
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


_last_cons: list[tuple[Tree, tuple[bool, ...], dict[tuple[int, int], tuple[int, ...]]]] = []


def cons_cache_of(tree: Tree, cap: list[int]) -> dict[tuple[int, int], tuple[int, ...]]:
    """The memo of `Work.constraints` to use once `cap` is set: its entries depend only on
    the tree and on which (node, phase) pairs are limited, so the last cycle's is kept
    while these stay the same (the memo holds the tree, so an identity is never stale)."""
    limited = tuple([c < INF for c in cap])
    if _last_cons:
        last_tree, last_limited, cache = _last_cons[0]
        if last_tree is tree and last_limited == limited:
            return cache
    cache = {}
    _last_cons[:] = [(tree, limited, cache)]
    return cache


def _spread(h0: int, h1: int, h2: int, l0: int, l1: int, l2: int) -> int:
    """max over phases p != q of h[p] - l[q]."""
    return max(h0 - l1, h0 - l2, h1 - l0, h1 - l2, h2 - l0, h2 - l1)


def assumed_load(m: Measurement | None, full: int, credit_export: bool) -> list[int]:
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
        return rot_mask(e.used_phases, e.rotation)
    if plugged and learnt:
        return rot_mask(learnt, e.rotation)
    return ALL_PHASES_MASK

