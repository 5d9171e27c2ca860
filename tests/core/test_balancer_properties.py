"""Invariants of the allocation core, checked on generated sites (hypothesis).

Limits are recomputed here from the inputs, independently of the implementation, and
cars are assumed to draw what they are given on the phases they are given.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargebrain.core.balancer import (
    IEC_MIN_CURRENT,
    Allocation,
    BalancerState,
    EvseDecision,
    EvseInput,
    GroupConfig,
    Limit,
    Measurement,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.baselines import equal_split, fcfs_priority
from chargebrain.core.model import EvseState
from chargebrain.core.phases import ZERO, Phases, rotate_mask

A = 1000
STEP = 100
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

amps = st.integers(0, 30).map(lambda a: a * A)


@st.composite
def measurements(draw: st.DrawFn, allow_stale: bool = True) -> Measurement:
    cur = Phases(draw(amps), draw(amps), draw(amps))
    stale = draw(st.sampled_from([0] * 8 + [1, 2, 4, 7])) if allow_stale else 0
    worst = None
    if stale and draw(st.booleans()):
        worst = Phases(draw(amps), draw(amps), draw(amps))
    return Measurement(cur, stale, worst)


@st.composite
def evses(draw: st.DrawFn, i: int, n_groups: int) -> EvseInput:
    min_a = draw(st.integers(6, 10))
    max_a = draw(st.sampled_from([0, min_a, 16, 32, 32]) | st.integers(min_a, 32))
    rule = draw(st.sampled_from([None, None, None, 0]) | st.integers(1, 32).map(lambda a: a * A))
    offline = draw(st.sampled_from([None] * 6 + [0.0, 400.0]))
    return EvseInput(
        id=f"E{i:02d}",
        group=draw(st.integers(0, n_groups + 1)),  # n_groups + 1 is an unknown group
        priority=draw(st.integers(1, 3)),
        min_current=min_a * A,
        max_current=max_a * A,
        rotation=draw(st.sampled_from([0, 120, 240])),
        used_phases=draw(st.sampled_from([1, 1, 2, 4, 3, 7, 7])),
        state=draw(
            st.sampled_from([EvseState.CHARGING] * 6 + [EvseState.EV_PRESENT, EvseState.WAITING])
        ),
        has_meter=draw(st.booleans()),
        rule_current=rule,
        override_current=draw(st.one_of(st.none(), st.none(), st.none(), st.just(10 * A))),
        enabled=draw(st.sampled_from([True] * 7 + [False])),
        offline_since=offline,
        fail_safe_current=draw(st.sampled_from([0, 1, 6 * A, 16 * A])),
        needs_auth=draw(st.sampled_from([False, False, False, True])),
        authorised=draw(st.sampled_from([True, True, False])),
        plugged_since=draw(st.floats(0, 100)),
        fcfs=draw(st.sampled_from([False, False, False, True])),
    )


@st.composite
def sites(draw: st.DrawFn, max_evses: int = 10) -> SiteInput:
    n_groups = draw(st.integers(0, 4))
    groups = tuple(
        GroupConfig(
            id=g,
            parent=draw(st.integers(0, g - 1)),
            max_current=draw(st.one_of(st.none(), st.integers(6, 60).map(lambda a: a * A))),
            priority=draw(st.integers(1, 3)),
            load=draw(st.one_of(st.none(), measurements())),
        )
        for g in range(1, n_groups + 1)
    )
    n = draw(st.integers(1, max_evses))
    cfg = SiteConfig(
        max_total_current=draw(st.integers(6, 80)) * A,
        reserve_current=draw(st.integers(0, 5)) * A,
        max_total_evse_current=draw(st.one_of(st.just(0), st.integers(6, 80).map(lambda a: a * A))),
        max_imbalance_cur=draw(st.sampled_from([0, 6 * A, 10 * A, 20 * A, 20 * A])),
        imbalance_add=draw(st.booleans()),
        disable_policy=draw(st.sampled_from([-1, 0, 1])),
    )
    return SiteInput(
        cfg,
        draw(measurements()),
        groups,
        tuple(draw(evses(i, n_groups)) for i in range(n)),
    )


# --- an independent model of the limits ------------------------------------------------------


def assumed(m: Measurement | None, full: int) -> list[int]:
    if m is None:
        return [0, 0, 0]
    out = []
    for p in range(3):
        if m.stale >> p & 1:
            out.append(m.worst_case[p] if m.worst_case is not None else full)
        else:
            out.append(max(m.current[p], 0))
    return out


def is_fixed(d: EvseDecision) -> bool:
    return d.lreason in (Limit.OFFLINE, Limit.DISABLED) and d.current_ma > 0


def check_limits(s: SiteInput, a: Allocation, now: float = 500.0) -> None:
    """Every limit holds. The part of the overdraft penalty that the rest of the house
    caused (docs/load-management.md, "The overdraft penalty") may only keep cars that
    were charging at their minimum: no more of it is used than such cars take."""
    cfg = s.config
    parents = {g.id: g.parent for g in s.groups}
    by = a.by_id()

    def chain(group: int) -> list[int]:
        out = [0]
        g = group if group in parents else 0
        while g:
            out.append(g)
            g = parents[g]
        return out

    load = {0: [0, 0, 0]}
    fixed = {0: [0, 0, 0]}
    for g in s.groups:
        load[g.id], fixed[g.id] = [0, 0, 0], [0, 0, 0]
    for e in s.evses:
        d = by[e.id]
        for node in chain(e.group):
            target = fixed if is_fixed(d) else load
            for p in range(3):
                target[node][p] += d.load[p]
    site_load = assumed(s.load, cfg.max_total_current)
    st = a.state
    for p in range(3):
        house = st.house_penalty[p] if now < st.house_until[p] else 0
        cap = cfg.max_total_current - cfg.reserve_current - site_load[p]
        hard = cap - (a.overdraft_applied[p] - house)
        cap -= a.overdraft_applied[p]
        if cfg.max_total_evse_current:
            cap = min(cap, cfg.max_total_evse_current)
            hard = min(hard, cfg.max_total_evse_current)
        assert load[0][p] <= max(0, hard - fixed[0][p]), ("site", p)
        beyond = load[0][p] - max(0, cap - fixed[0][p])
        if beyond > 0:
            # Only cars kept at their minimum may stand in the house's part.
            kept = sum(
                by[e.id].current_ma
                for e in s.evses
                if by[e.id].load[p] and not is_fixed(by[e.id])
                and by[e.id].lreason is not Limit.OFFLINE
                and by[e.id].current_ma == max(e.min_current, IEC_MIN_CURRENT)
            )
            assert beyond <= kept, ("site, beyond the house's penalty", p)
    for g in s.groups:
        if g.max_current is None:
            continue
        gl = assumed(g.load, g.max_current)
        for p in range(3):
            cap = g.max_current - gl[p]
            assert load[g.id][p] <= max(0, cap - fixed[g.id][p]), (g.id, p)


def check_currents(s: SiteInput, a: Allocation) -> None:
    by = a.by_id()
    for e in s.evses:
        d = by[e.id]
        assert d.current_ma >= 0
        assert d.load == (Phases.on_mask(d.current_ma, d.phases) if d.current_ma else ZERO)
        if is_fixed(d) or d.lreason is Limit.OFFLINE:
            continue
        minimum = max(e.min_current, IEC_MIN_CURRENT)
        assert d.current_ma == 0 or d.current_ma >= minimum, d
        assert d.current_ma <= e.max_current or d.current_ma == 0
        if d.paused:
            assert d.current_ma == 0


@dataclasses.dataclass
class Watch:
    """How the phase-imbalance check counts each car, followed from readings and decisions
    alone (docs/load-management.md, "Phase imbalance"): on the phases it may draw on for
    the heavy side of a pair, on those it surely draws on for the light side. A car whose
    phases are not known (it has not drawn more than 2 A on any) surely draws only on its
    L1; one offered current that has drawn less than 0.5 A for 6 s (or, until it draws
    again, once for 60 s) surely draws nowhere; one on three known phases counts nowhere."""

    offered: dict[str, int] = dataclasses.field(default_factory=dict)
    quiet_since: dict[str, float] = dataclasses.field(default_factory=dict)
    idle: set[str] = dataclasses.field(default_factory=set)
    learnt: dict[str, int] = dataclasses.field(default_factory=dict)

    def see(self, s: SiteInput, now: float) -> None:
        """Take this cycle's readings (before the allocation)."""
        for e in s.evses:
            if not e.state.plugged or e.offline_since is not None:
                for d in (self.offered, self.quiet_since, self.learnt):
                    d.pop(e.id, None)
                self.idle.discard(e.id)
                continue
            offered = self.offered.get(e.id, 0)
            if e.has_meter:
                draw = e.measured.peak()
                if not e.used_phases:
                    self.learnt[e.id] = self.learnt.get(e.id, 0) | e.measured.mask(2 * A)
            else:
                draw = offered if e.state.charging else 0
            if draw >= 500:
                self.quiet_since.pop(e.id, None)
                self.idle.discard(e.id)
            elif offered > 0:
                since = self.quiet_since.setdefault(e.id, now)
                if now - since >= 60:
                    self.idle.add(e.id)
            else:
                self.quiet_since.pop(e.id, None)

    def decided(self, a: Allocation) -> None:
        self.offered = {d.id: d.current_ma for d in a.evses}

    def counted(self, e: EvseInput, d: EvseDecision, now: float) -> tuple[Phases, Phases]:
        """(may draw, surely draws) per phase for a controlled EVSE."""
        known = e.used_phases & 7 or not e.has_meter or self.learnt.get(e.id, 0)
        if not d.current_ma or (known and d.phases == 7):
            return ZERO, ZERO
        since = self.quiet_since.get(e.id)
        if e.id in self.idle or (since is not None and now - since >= 6):
            return d.load, ZERO
        surely = d.phases if known else rotate_mask(1, e.rotation)
        return d.load, Phases.on_mask(d.current_ma, surely)


def check_imbalance(
    s: SiteInput, a: Allocation, watch: Watch | None = None, now: float = 0.0
) -> None:
    cfg = s.config
    if cfg.max_imbalance_cur <= 0:
        return
    extra = assumed(s.load, cfg.max_total_current) if cfg.imbalance_add else [0, 0, 0]
    base = list(extra)
    total = list(extra)
    by = a.by_id()
    watch = watch or Watch()
    for e in s.evses:
        d = by[e.id]
        for p in range(3):
            total[p] += d.load[p]
            if is_fixed(d) or d.lreason is Limit.OFFLINE:
                base[p] += d.load[p]
    hi, lo = list(base), list(base)
    for e in s.evses:
        d = by[e.id]
        if is_fixed(d) or d.lreason is Limit.OFFLINE:
            continue
        may, surely = watch.counted(e, d, now)
        for p in range(3):
            hi[p] += may[p]
            lo[p] += surely[p]
    allowed = max(cfg.max_imbalance_cur, max(base) - min(base))
    assert max(hi[p] - lo[q] for p in range(3) for q in range(3) if p != q) <= allowed
    assert a.imbalance == max(total) - min(total)


def feed(s: SiteInput, a: Allocation, rnd: random.Random | None = None) -> SiteInput:
    """Cars draw what they were given (sometimes less, when `rnd` is given)."""
    by = a.by_id()
    out = []
    for e in s.evses:
        got: tuple[int, ...] = by[e.id].load.as_tuple()
        if rnd is not None and rnd.random() < 0.3:
            got = tuple(v * rnd.randint(0, 10) // 10 for v in got)
        shift = {0: 0, 120: 1, 240: 2}[e.rotation]
        out.append(
            dataclasses.replace(e, measured=Phases.of([got[(i + shift) % 3] for i in range(3)]))
        )
    return dataclasses.replace(s, evses=tuple(out))


# --- properties ---------------------------------------------------------------------------------


@SETTINGS
@given(sites())
def test_no_limit_is_exceeded_and_no_current_is_below_minimum(s: SiteInput) -> None:
    a = allocate(s, BalancerState(), 500.0)
    check_limits(s, a)
    check_currents(s, a)
    check_imbalance(s, a)


@SETTINGS
@given(sites(), st.integers(0, 2**32 - 1))
def test_invariants_hold_over_many_cycles_with_changing_readings(s: SiteInput, seed: int) -> None:
    rnd = random.Random(seed)
    state = BalancerState()
    watch = Watch()
    now = 0.0
    for _ in range(25):
        watch.see(s, now)
        a = allocate(s, state, now)
        check_limits(s, a, now)
        check_currents(s, a)
        check_imbalance(s, a, watch, now)
        watch.decided(a)
        state = a.state
        s = feed(s, a, rnd)
        if rnd.random() < 0.3:  # the house load changes
            cur = Phases(rnd.randint(0, 20) * A, rnd.randint(0, 20) * A, rnd.randint(0, 20) * A)
            s = dataclasses.replace(
                s, load=Measurement(cur, s.load.stale if rnd.random() < 0.5 else 0)
            )
        now += rnd.choice([1.0, 3.0, 3.0, 60.0, 400.0])


@SETTINGS
@given(sites())
def test_deterministic_and_independent_of_input_order(s: SiteInput) -> None:
    a = allocate(s, BalancerState(), 500.0)
    b = allocate(s, BalancerState(), 500.0)
    assert a == b
    shuffled = dataclasses.replace(s, evses=tuple(reversed(s.evses)))
    c = allocate(shuffled, BalancerState(), 500.0)
    assert a.by_id() == c.by_id()
    assert a.state == c.state
    # Same again with a carried state.
    s2 = feed(s, a)
    assert allocate(s2, a.state, 503.0) == allocate(s2, a.state, 503.0)


def want_of(e: EvseInput) -> int:
    minimum = max(e.min_current, IEC_MIN_CURRENT)
    wish = e.override_current if e.override_current is not None else e.rule_current
    want = e.max_current if wish is None or wish >= e.max_current else max(wish, minimum)
    return minimum + (want - minimum) // STEP * STEP


@st.composite
def contended(draw: st.DrawFn) -> SiteInput:
    """Cars of mixed priority on few phases, in one group, under a tight limit."""
    in_group = draw(st.booleans())
    groups = (GroupConfig(1, max_current=draw(st.integers(6, 40)) * A),) if in_group else ()
    cars = tuple(
        EvseInput(
            f"E{i}",
            group=1 if in_group else 0,
            priority=draw(st.integers(1, 3)),
            max_current=draw(st.sampled_from([10, 16, 32])) * A,
            used_phases=draw(st.sampled_from([1, 7])),
            state=EvseState.CHARGING,
            rule_current=draw(st.sampled_from([None, None, None, 12 * A])),
        )
        for i in range(draw(st.integers(2, 8)))
    )
    cfg = SiteConfig(
        max_total_current=draw(st.integers(6, 60)) * A,
        max_imbalance_cur=draw(st.sampled_from([0, 10 * A, 20 * A])),
    )
    return SiteInput(cfg, groups=groups, evses=cars)


@SETTINGS
@given(st.one_of(sites(max_evses=8), contended()))
def test_higher_priority_never_gets_less_than_a_lower_one_that_wants_more(s: SiteInput) -> None:
    # Plain competitors: same minimum, no FCFS, all online, enabled and authorised.
    evs = tuple(
        dataclasses.replace(
            e, min_current=6 * A, fcfs=False, offline_since=None, enabled=True, needs_auth=False
        )
        for e in s.evses
    )
    s = dataclasses.replace(s, evses=evs)
    a = allocate(s, BalancerState(), 500.0)
    by = a.by_id()
    for h in evs:
        for lo in evs:
            dh, dl = by[h.id], by[lo.id]
            same = h.group == lo.group and dh.phases == dl.phases and dh.phases
            if not same or h.priority <= lo.priority or dh.lreason is Limit.RULE:
                continue
            if dh.paused:
                assert dl.current_ma == 0 or not dl.charging_enabled, (dh, dl)
            elif dh.charging_enabled and dh.current_ma < want_of(h) and dl.charging_enabled:
                assert dl.current_ma <= max(dh.current_ma, 6 * A), (dh, dl)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 7),
    phases=st.sampled_from([1, 7]),
    headroom=st.integers(6, 40),
    dt=st.sampled_from([3.0, 10.0, 30.0]),
)
def test_every_waiting_car_charges_within_a_bounded_time(
    n: int, phases: int, headroom: int, dt: float
) -> None:
    """Cars of equal priority that cannot all charge take turns; none starves."""
    cars = tuple(
        EvseInput(f"E{i}", used_phases=phases, state=EvseState.CHARGING, plugged_since=float(i))
        for i in range(n)
    )
    cfg = SiteConfig(max_total_current=headroom * A, max_imbalance_cur=0)
    s = SiteInput(cfg, evses=cars)
    slots = max(1, (headroom * A) // (6 * A + 500))
    if headroom * A < 6 * A + 500:
        return  # not even one car fits: nothing can charge
    rounds = -(-n // slots) + 1
    bound = rounds * (cfg.tuning.rotation_time_s + cfg.min_pause_time) + 10 * dt
    state = BalancerState()
    charged: dict[str, float] = {}
    now = 0.0
    while now <= bound:
        a = allocate(s, state, now)
        assert a.allocated.peak() <= headroom * A
        for d in a.evses:
            if d.current_ma > 0:
                charged.setdefault(d.id, now)
        if len(charged) == n:
            break
        state, s = a.state, feed(s, a)
        now += dt
    assert len(charged) == n, (charged, bound)


@SETTINGS
@given(sites())
def test_baselines_keep_every_limit_and_the_minimum(s: SiteInput) -> None:
    for policy in (equal_split, fcfs_priority):
        a = policy(s, BalancerState(), 500.0)
        check_limits(s, a)
        check_currents(s, a)


@SETTINGS
@given(sites())
def test_observe_mode_decides_the_same_but_writes_nothing(s: SiteInput) -> None:
    a = allocate(s, BalancerState(), 500.0)
    o = allocate(
        dataclasses.replace(s, config=dataclasses.replace(s.config, lb_enabled=False)),
        BalancerState(),
        500.0,
    )
    assert [d.current_ma for d in a.evses] == [d.current_ma for d in o.evses]
    assert o.observe and not any(d.write for d in o.evses)


@st.composite
def priority_sites(draw: st.DrawFn) -> SiteInput:
    """Three-phase cars of several priorities on one connection, nothing else binding."""
    n = draw(st.integers(2, 8))
    evses = tuple(
        EvseInput(f"E{i}", state=EvseState.CHARGING, priority=draw(st.integers(1, 3)),
                  used_phases=0b111, has_meter=False,
                  max_current=draw(st.integers(6, 32)) * A)
        for i in range(n)
    )
    limit = draw(st.integers(0, 120)) * A
    return SiteInput(SiteConfig(limit, max_imbalance_cur=0), evses=evses)


@SETTINGS
@given(priority_sites())
def test_a_lower_priority_charges_only_when_every_higher_one_has_all_it_wants(
        s: SiteInput) -> None:
    """The vendor's priorities: a higher priority gets all it can use first."""
    by = allocate(s, BalancerState(), 0.0).by_id()
    for lo in s.evses:
        if by[lo.id].current_ma == 0:
            continue
        for hi in s.evses:
            if hi.priority > lo.priority:
                assert by[hi.id].current_ma == hi.max_current, (hi.id, lo.id, by)
