"""Immutable inputs, carried state and outputs of the load-management core.

Units: current in mA, time in seconds (the caller's clock, passed in as `now`), three-phase
values as `Phases` in building phase order unless a field says "EVSE phase order".
This module only declares values; it must never compute allocations, read clocks or do I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from chargebrain.core.model import EvseState
from chargebrain.core.phases import ZERO, Phases

#: IEC 61851 minimum charging current; a configured minimum below it is raised to it.
IEC_MIN_CURRENT = 6000


class Limit(IntEnum):
    """`lreason`: what bounds an EVSE's current, or why it is 0 when it is not paused.

    While an EVSE is paused for lack of current, `lreason` is NONE (as the real firmware
    reports) and `pause_reason` says why.
    """

    NONE = 0
    EVSE_MAX = 1
    RULE = 2
    OVERRIDE = 3
    CAR_DRAW = 4
    SITE = 5
    SUPPLY = 6
    GROUP = 7
    IMBALANCE = 8
    NOT_AUTHORISED = 9
    DISABLED = 10
    OFFLINE = 11
    NO_VEHICLE = 12
    BACKEND = 13  # the charging profile of an OCPP backend the EVSE reports to
    SCHEDULE = 14  # a charging schedule (set_cplan): the EVSE's own, the site's or a group's


class PauseReason(IntEnum):
    """`pause_reason`: why an EVSE that wants to charge gets nothing."""

    NONE = 0
    ROTATION = 1  # yielded its slot to a car that had waited longer (round robin)
    SHORTAGE = 2  # its minimum current does not fit under some limit
    IMBALANCE = 3  # its minimum current would push the phase imbalance over the limit


class DisablePolicy(IntEnum):
    """`disable_policy`: what a disabled EVSE gets."""

    FREE = -1  # no limit written; its maximum current counts as load
    OFF = 0  # charging disabled
    MINIMUM = 1  # held at its minimum current, which counts as load


@dataclass(frozen=True, slots=True)
class Tuning:
    """Knobs of the algorithm where the reference is silent (see docs/load-management.md)."""

    restart_margin_ma: int = 500  # a paused car restarts only if min + this fits
    # ... and only if its minimum plus this keeps the phase imbalance within its limit (a
    # charging car keeps its minimum up to the limit): the imbalance's hysteresis
    imbalance_margin_ma: int = 1500
    rotation_time_s: float = 3600.0  # a car charging this long may yield to a waiting one ...
    rotation_gap_mah: int = 12000  # ... that has been given this much less charge (or none)
    lend_threshold_ma: int = 1000  # "draws clearly less": below offer minus this
    lend_after_cycles: int = 2  # ... for this many cycles in a row
    lend_margin_ma: int = 2000  # a lending car keeps draw + this (and ramps by this)
    lend_probe_after_s: float = 60.0  # a lending car is first offered its share again then
    idle_threshold_ma: int = 500  # a car drawing less than this (every phase) draws nothing
    idle_after_s: float = 60.0  # offered current but drawing nothing this long: the car is idle
    quiet_after_s: float = 6.0  # ... this long: it no longer balances the phases (imbalance)
    probe_s: float = 30.0  # an idle car is offered more for this long (a probe) ...
    probe_every_s: float = 600.0  # ... this long after its last probe failed,
    probe_max_every_s: float = 3600.0  # doubling after each failure up to this
    start_step_ma: int = 2000  # each probe offers this much more than the last (up to the max)
    learn_threshold_ma: int = 2000  # a phase drawing more than this counts as used
    settle_s: float = 10.0  # a car may still draw its previous current this long (overdraft)
    house_penalty_s: float = 120.0  # an overshoot the rest of the house caused counts this long
    # Departure plans (plans.py): a car whose plan needs no more than this share of its
    # minimum can wait (it is served after the others); one needing more is urgent.
    plan_slack_share: float = 1.0
    plan_margin: float = 1.5  # an urgent car is first given this much of what it needs ...
    plan_reserve_s: float = 2700.0  # ... counting its time left this much shorter
    plan_together_s: float = 3600.0  # urgent cars leaving this close to each other share alike
    current_step_ma: int = 100  # allocations are rounded down to this step
    credit_export: bool = False  # let negative non-EVSE load (export) add headroom


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """Site-wide limits, already evaluated to numbers for this cycle."""

    max_total_current: int  # per phase, mA
    reserve_current: int = 0
    max_total_evse_current: int = 0  # per phase for all EVSEs together; 0 = none
    max_imbalance_cur: int = 20000  # 0 = not checked
    imbalance_add: bool = False  # imbalance includes the non-EVSE load
    min_pause_time: float = 300.0
    lb_enabled: bool = True  # False = observe: decide, but nothing may be written
    disable_policy: int = DisablePolicy.OFF
    overdraft_penalty_time: float = 300.0
    com_timeout: float = 180.0  # after this, an unreachable EVSE counts max(last, fail-safe)
    voltage: float = 230.0  # phase voltage: a departure plan's energy as current
    scheduled: bool = False  # max_total_current is what a charging schedule allows now
    tuning: Tuning = Tuning()
    supply_label: str = "wallbox supply"  # the EVSE supply line's name in reasons


@dataclass(frozen=True, slots=True)
class Measurement:
    """Non-EVSE load on a node per building phase (mA; negative = export).

    `stale` is a mask of phases (bit0 = L1) whose reading is unknown this cycle. For those
    the core assumes `worst_case` if the caller knows a provable upper bound (for example
    the sum of the house's other circuit breakers), otherwise the node's whole limit.
    `fresh` is False when the reading is older than the EVSE readings it was combined with
    (a meter that has gone quiet but is not stale yet): no EVSE under the node is then given
    more than it had.
    """

    current: Phases = ZERO
    stale: int = 0
    worst_case: Phases | None = None
    fresh: bool = True


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """An EVSE group (device E<id>); group 0 is the site itself and is not listed."""

    id: int
    parent: int = 0
    max_current: int | None = None  # per phase; None = no limit of its own (0: nothing)
    priority: int = 1  # ranks the group against its siblings (higher first)
    load: Measurement | None = None  # the group's own non-EVSE load, if metered
    name: str = ""  # shown in reasons; default "E<id>"
    scheduled: bool = False  # max_current is what the group's charging schedule allows now

    @property
    def label(self) -> str:
        return f"group {self.name or f'E{self.id}'}"


@dataclass(frozen=True, slots=True)
class EvseInput:
    """One EVSE this cycle: configuration already evaluated, plus its latest reading."""

    id: str
    group: int = 0
    priority: int = 1
    min_current: int = IEC_MIN_CURRENT
    max_current: int = 16000
    rotation: int = 0  # 0 / 120 / 240 degrees
    used_phases: int = 0  # EVSE phase mask; 0 = determine from measured currents
    state: EvseState = EvseState.WAITING
    measured: Phases = ZERO  # EVSE phase order
    has_meter: bool = True
    rule_current: int | None = None  # None = no rule (maximum); 0 = rules say pause
    backend_current: int | None = None  # an OCPP backend's limit; None = none (lower wins)
    override_current: int | None = None  # replaces the rule wish; 0 = stop
    override_disable: bool = False
    # What a charging schedule (set_cplan) allows it now (None: no limit): a limit like
    # its maximum, never exceeded; below the minimum it does not charge.
    schedule_current: int | None = None
    enabled: bool = True
    offline_since: float | None = None
    fail_safe_current: int = IEC_MIN_CURRENT  # 1 = its minimum current
    # Unreachable: counted at this from the start (None: its last current, never set: its
    # maximum; after com_timeout at least its fail-safe current).
    offline_current: int | None = None
    # Another charging manager (a cascade's slave): it shares its current among its own
    # cars and lends what they leave itself, and its draw follows a lower offer only after
    # its own cycle and its cars'. Lending here too would cap it at a lagging draw again and
    # again, so it is never lent from (its maximum is what its cars want).
    own_lending: bool = False
    needs_auth: bool = False
    authorised: bool = False
    plugged_since: float | None = None
    fcfs: bool = False  # first come first served within its priority
    # A departure plan (plans.py): when the car leaves (the caller's clock, as `now`) and
    # the energy it still wants until then (Wh); None / 0 = no plan.
    departure: float | None = None
    need_wh: float = 0.0
    # Its 1-phase contactor is selected (a wallbox that switches phases): the car draws on
    # its L1 only, once it is seen to draw nowhere else.
    one_phase: bool = False


@dataclass(frozen=True, slots=True)
class SiteInput:
    """Everything one cycle's allocation depends on, apart from the carried state."""

    config: SiteConfig
    load: Measurement = Measurement()
    groups: tuple[GroupConfig, ...] = ()
    evses: tuple[EvseInput, ...] = ()


@dataclass(frozen=True, slots=True)
class DrawMemory:
    """What a car has shown about drawing current since it was plugged in.

    Some cars need more than 6 A to start; a done or sleeping car draws nothing at any
    current. A car offered current that draws nothing for `idle_after_s` is *idle*: it is
    served after the cars that draw or wait, and now and then it is offered more for a
    while (a *probe*). A car that starts during a probe has shown the current it needs:
    that becomes its minimum (`start_min`) until it is unplugged.
    """

    quiet_since: float | None = None  # offered current but drawing nothing since then
    idle: bool = False
    start_min: int = 0  # the current it started at after drawing nothing below it; 0 = none
    probe_ma: int = 0  # the minimum offered at the next (or the running) probe
    probe_at: float = 0.0  # the next probe is due then (while idle)
    probe_until: float | None = None  # end of the running probe
    probe_gap: float = 0.0  # wait after the next failed probe
    failed: int = 0  # probes that ended without a start since it turned idle


NO_DRAW = DrawMemory()


@dataclass(frozen=True, slots=True)
class LendMemory:
    """What lending has learnt about a car that draws less than it is offered.

    Such a car is capped near its draw and the rest goes to the others (lending). Now and
    then it is offered its share again for a while (an upward probe): a car whose draw
    rises with its offer (it draws a share or a fixed amount below its offer) is not lent
    from, since capping it only lowers its draw; `ref_offer`/`ref_draw` are the offer and
    the draw the probe saw. It is lent from again once it draws clearly less than that.
    """

    probe_at: float = 0.0  # the next upward probe is due then (while lent from)
    probe_until: float | None = None  # end of the running probe
    probe_gap: float = 0.0  # wait after the next probe that shows nothing
    before: int = 0  # what it drew (highest phase) when the running probe started
    offered: int = 0  # the offer when the running probe started
    ref_offer: int = 0  # a probe saw it draw `ref_draw` at this offer; 0 = none
    ref_draw: int = 0


NO_LEND = LendMemory()


@dataclass(frozen=True, slots=True)
class EvseMemory:
    """What the core remembers about one EVSE between cycles."""

    last_set: int = -1  # mA decided last cycle; -1 = never decided
    plugged: bool = False
    plugged_since: float | None = None
    learnt_phases: int = 0  # EVSE phase mask seen drawing since plug-in
    waiting_since: float | None = None  # wants current but gets none since then
    pause_until: float = 0.0  # earliest restart after we stopped it
    pause_reason: PauseReason = PauseReason.NONE
    charging_since: float | None = None  # start of the current charging spell
    lend_cycles: int = 0
    capped: bool = False  # its current was bound by what the car draws
    raised: bool = False  # last decision raised its current
    draw: DrawMemory = NO_DRAW  # idle, probes and learnt start current of this plug-in
    charge: float = 0.0  # current given while it drew, plug-in to charge_at (mA·s per phase)
    charge_at: float = 0.0
    charge_rate: int = 0  # mA given from charge_at on (0 while it does not draw)
    # Paused only because of loads assumed for missing readings: the largest such load on
    # its limits then (mA; 0 = not). Once it is smaller, it starts again as a charging car.
    data_pause: int = 0
    prev_set: int = 0  # the highest current set within settle_s before last_set (overdraft)
    set_at: float = 0.0  # when last_set last changed
    lend: LendMemory = NO_LEND  # upward probes of a car lent from, see LendMemory
    urgent: bool = False  # its departure plan has made it urgent this plug-in (plans.py)


NEVER_SEEN = EvseMemory()


@dataclass(frozen=True, slots=True)
class BalancerState:
    """Carried from one cycle to the next: pass `Allocation.state` to the next call.

    `overdraft_cur` is the largest overshoot seen (mA); the caller resets it by passing
    `dataclasses.replace(state, overdraft_cur=0)`. The mapping is never mutated.
    """

    evses: Mapping[str, EvseMemory] = field(default_factory=dict)
    penalty: Phases = ZERO  # overshoot the EVSEs caused, until penalty_until (overdraft.py)
    penalty_until: tuple[float, float, float] = (0.0, 0.0, 0.0)
    house_penalty: Phases = ZERO  # overshoot the rest of the house caused, until house_until
    house_until: tuple[float, float, float] = (0.0, 0.0, 0.0)
    overdraft_cur: int = 0
    prev_max_total: int | None = None  # last cycle's max_total_current
    prev_load: Phases | None = None  # last cycle's non-EVSE load at the site (overdraft.py)
    # The ids of last cycle's competing EVSEs in the order they were ranked: where this
    # cycle's ranking starts from, so that its sorts see an almost sorted list. A hint
    # only: the ranking keys order every car, so it never changes a result.
    rank_order: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class EvseDecision:
    """What one EVSE gets this cycle and why."""

    id: str
    current_ma: int  # 0 or >= its minimum
    charging_enabled: bool
    controlled: bool  # False: free charging or offline (no limit is ours to write)
    write: bool  # the caller may write this decision to the device
    paused: bool
    pause_time: float  # seconds paused so far (0 when not paused)
    pause_reason: PauseReason
    lreason: Limit
    reason: str
    phases: int  # building phases mask its current is counted on
    load: Phases  # its counted current per building phase


@dataclass(frozen=True, slots=True)
class NodeDecision:
    """Per-node summary: the site (id 0) or a group."""

    id: int
    label: str
    available: Phases | None  # for EVSEs under this node; None = no limit of its own
    allocated: Phases  # EVSE current counted under this node


@dataclass(frozen=True, slots=True)
class Allocation:
    """The decisions of one cycle and the state to carry into the next."""

    evses: tuple[EvseDecision, ...]  # in input order
    available: Phases  # for all EVSEs, after reserve, non-EVSE load and penalty
    allocated: Phases  # EVSE current counted (controlled and fixed)
    consumed: Phases  # EVSE current measured (or assumed where unmetered)
    overdraft_applied: Phases
    overdraft_cur: int
    imbalance: int  # spread of EVSE current over the building phases after allocation
    observe: bool  # lb_enabled was False: nothing may be written
    nodes: tuple[NodeDecision, ...]
    state: BalancerState
    overshoot: int = 0  # largest overshoot of the connection limit measured this cycle (mA)

    def by_id(self) -> dict[str, EvseDecision]:
        return {d.id: d for d in self.evses}


#: The shape every allocation policy (the balancer and the baselines) shares.
Policy = Callable[[SiteInput, BalancerState, float], Allocation]
