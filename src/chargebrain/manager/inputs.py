"""What a control cycle gives the balancer, built from the manager's state.

The formula context of the cycle (device values filled when a formula first asks for
one), limits that are formulas, the non-EVSE load per node from the meter roles (a fall
believed only after the peak hold), and each EVSE's input (reused while nothing it
depends on changed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from chargebrain.clock import Clock
from chargebrain.core.balancer import EvseInput, Measurement
from chargebrain.core.formula import DictEvalContext
from chargebrain.core.hold import DEFAULT_HOLD_S, held_peak, prune
from chargebrain.core.model import EvseState
from chargebrain.core.phases import ZERO, Phases
from chargebrain.devices.ajax import AjaxEvse
from chargebrain.devices.cm_slave import CmSlaveEvse, SlaveReading
from chargebrain.manager import config as C
from chargebrain.manager.config import Limit
from chargebrain.manager.formulas import FormulaTable
from chargebrain.manager.plans import balancer_plan, plan_of
from chargebrain.manager.state import OVERRIDE_DISABLE_CHARGING, DeviceRuntime
from chargebrain.manager.topology import Topology
from chargebrain.powerbrain.controller import PowerBrain

_UNIFORM: dict[int, Phases] = {}


def eval_limit(formulas: FormulaTable, key: str, value: Limit, ctx: DictEvalContext) -> Phases:
    """A limit per phase: the number, or its formula (`key`) evaluated for each phase."""
    if isinstance(value, int):
        if type(value) is not int:
            return Phases.uniform(value)
        # One shared (immutable) value per limit: the same limits come every cycle.
        made = _UNIFORM.get(value)
        if made is None:
            if len(_UNIFORM) > 1024:
                _UNIFORM.clear()
            made = _UNIFORM[value] = Phases.uniform(value)
        return made
    formula = formulas.get(key)
    if formula is None:
        return Phases.uniform(0)
    return Phases(*(max(0, round(formula.evaluate(ctx.derive(phase=p)))) for p in (1, 2, 3)))


def fill_context(ctx: DictEvalContext, now: float, powerbrain: PowerBrain,
                 cm_values: dict[str, float],
                 filler: Callable[[DictEvalContext], None]) -> None:
    """Make `ctx` this cycle's formula context. The device values are filled (`filler`)
    when a formula first asks for one, from the state at the start of the decision."""
    ctx.set_now(now)
    ctx.defer_devices(filler)
    banks = powerbrain.banks
    bits = banks["evse"].get("s0_inputs")
    ctx.set_pb("input1", float(bits & 1))
    ctx.set_pb("input2", float((bits >> 1) & 1))
    ctx.update_cm(cm_values)


def fill_devices(ctx: DictEvalContext, devices: Mapping[str, DeviceRuntime]) -> None:
    """Every device's values as formulas read them (`M1.power_w`, `E2.state`, ...)."""
    for rt in devices.values():
        com_err = rt.status.com_err
        values: dict[str, float] = {"com_err": 1.0 if com_err else 0.0}
        m = rt.meter
        if m is not None:
            c = m.currents
            values.update(power_w=float(m.power_w), import_wh=float(m.import_wh),
                          export_wh=float(m.export_wh), current_l1=float(c.l1),
                          current_l2=float(c.l2), current_l3=float(c.l3))
            if m.soc is not None:
                values["soc"] = float(m.soc)
        ev = rt.evse
        if ev is not None:
            r = ev.reading
            if r is not None:
                c = r.currents
                values.update(power_w=float(r.power_w), current_l1=float(c.l1),
                              current_l2=float(c.l2), current_l3=float(c.l3),
                              state=float(int(r.state) if not com_err else 6),
                              import_wh=float(ev.total_energy_wh))
            d = ev.decision
            plan = plan_of(ev)
            values.update(offered=float(d.current_ma if d else 0),
                          min_current=float(rt.config.min_charging_cur),
                          txn_energy=float(ev.transaction_energy_wh),
                          charging_dur=float(ev.charging_secs),
                          departure=plan.departure or 0.0, req_energy=plan.energy_wh or 0.0)
        ctx.set_device_values(rt.dev_id, values)


#: A meter's reading counts as fresh beside EVSE readings taken up to this much later
#: (seconds): the reads of one cycle, and pushes meant for the same moment, are not taken
#: at exactly the same instant. A grid meter that has gone quiet is older than this after
#: one missed report.
FRESH_SKEW_S = 0.5


#: A fall of a node's non-EVSE load is believed only when it is larger than this many
#: times the load's own mean change from one cycle to the next (per phase): meter noise
#: then moves no offer, a real fall does.
FALL_BAND_JITTERS = 3.0
_JITTER_WEIGHT = 0.1  # of the newest change in the running mean of the changes


class LoadHold:
    """The non-EVSE load of each node as the balancer is given it: a rise at once, a fall
    only after `hold_s` and only when it stands out of the load's own jitter; and the
    last load derived from readings that were fresh (held while a meter is quiet)."""

    def __init__(self, clock: Clock, hold_s: float = DEFAULT_HOLD_S) -> None:
        self.clock = clock
        self.hold_s = hold_s
        self.fall_band = FALL_BAND_JITTERS  # 0: every fall is believed after hold_s
        # Recent non-EVSE load per node (0 = site, else group number).
        self._history: dict[int, list[tuple[float, Phases]]] = {}
        self._fresh: dict[int, Phases] = {}
        self._used: dict[int, Phases] = {}  # what the last decision was given
        self._last: dict[int, Phases] = {}  # the last load before the hold
        self._jitter: dict[int, tuple[float, float, float]] = {}  # mean change per cycle

    def held(self, node: int, load: Phases) -> Phases:
        mono = self.clock.monotonic()
        samples = self._history.setdefault(node, [])
        samples.append((mono, load))
        prune(samples, mono, self.hold_s)
        peak = held_peak(samples, mono, self.hold_s)
        last = self._last.get(node)
        jitter = self._jitter.get(node, (0.0, 0.0, 0.0))
        if last is not None:
            w = _JITTER_WEIGHT
            jitter = (
                (1 - w) * jitter[0] + w * abs(load.l1 - last.l1),
                (1 - w) * jitter[1] + w * abs(load.l2 - last.l2),
                (1 - w) * jitter[2] + w * abs(load.l3 - last.l3),
            )
            self._jitter[node] = jitter
        self._last[node] = load
        used = self._used.get(node)
        if used is not None and (
                peak.l1 < used.l1 or peak.l2 < used.l2 or peak.l3 < used.l3):
            band = self.fall_band
            peak = Phases(
                *(p if p >= u or u - p > band * j else u
                  for p, u, j in zip(peak, used, jitter, strict=True)))
        self._used[node] = peak
        return peak

    def fresh(self, node: int, load: Phases, fresh: bool) -> Phases:
        """`load` if it was derived from fresh readings (and remember it), else the last
        one that was (`load` if there is none)."""
        if fresh:
            self._fresh[node] = load
            return load
        return self._fresh.get(node, load)


def _unreachable_draw(rt: DeviceRuntime) -> Phases | None:
    """What an unreachable EVSE drew when last read (building phases), at most what the
    balancer counts for it: that much of a grid reading is taken to be its draw."""
    ev = rt.evse
    if ev is None or ev.reading is None:
        return None
    d = ev.decision
    counted = d.load if d is not None else ZERO
    return ev.building_currents.min(counted)


def measurements(
    topo: Topology, hold: LoadHold
) -> tuple[dict[int, Measurement], dict[str, float], dict[int, Phases]]:
    """Non-EVSE load per node (0 = site, else group number), from the meter roles;
    the site's power figures; and the load per node before the peak hold.

    A node's load is fresh when each of its meters' readings was taken no more than
    FRESH_SKEW_S before the newest change of an EVSE reading under it (the first reading
    with the EVSE's present currents: one that repeats itself tells the meter nothing
    new); otherwise the load derived when it last was is held, and the Measurement says
    it is not fresh (nobody under it is raised). An unreachable EVSE under a grid meter is
    taken to draw there what it drew when last read (at most what the balancer counts for
    it), so that its current is not counted both as its own load and as part of the rest
    of the house.
    """
    grid, cons = topo.grid, topo.cons
    under: dict[int, list[int]] = {}
    newest: dict[int, float] = {}  # per node: the newest EVSE reading under it
    if grid or cons:
        for rt, nodes, summed in topo.evse_nodes:
            ev = rt.evse
            if ev is None or not ev.reading:
                continue
            if rt.status.com_err:
                bc = _unreachable_draw(rt)
                if bc is None:
                    continue
            else:
                bc = ev.building_currents
                taken = ev.changed_at
                if taken is not None:
                    for node in nodes:
                        if taken > newest.get(node, taken - 1.0):
                            newest[node] = taken
            for node in summed:  # the nodes with a grid meter
                acc = under.get(node)
                if acc is None:
                    under[node] = [bc.l1, bc.l2, bc.l3]
                else:
                    acc[0] += bc.l1
                    acc[1] += bc.l2
                    acc[2] += bc.l3
    out: dict[int, Measurement] = {}
    raw: dict[int, Phases] = {}
    figures = {"grid_w": 0.0, "consumed_w": 0.0, "produced_w": 0.0}
    for node in set(grid) | set(cons):
        stale = 0
        load = ZERO
        oldest: float | None = None  # the oldest meter reading of the node
        meters = grid[node] if node in grid else cons[node]
        for rt in meters:
            if rt.status.com_err or rt.meter is None:
                stale |= 7
                continue
            taken = rt.taken_at
            if taken is not None and (oldest is None or taken < oldest):
                oldest = taken
            if node in grid:
                load = load + rt.meter.currents
                if node == 0:
                    figures["grid_w"] += rt.meter.power_w
            else:
                currents = rt.meter.currents
                if rt.config.role == C.ROLE_PRODUCTION:  # production lowers the load
                    load = load - currents
                    if node == 0:
                        figures["produced_w"] += abs(rt.meter.power_w)
                else:
                    load = load + currents
                    if node == 0:
                        figures["consumed_w"] += abs(rt.meter.power_w)
        acc = under.get(node)
        if acc is not None:
            load = load - Phases(acc[0], acc[1], acc[2])
        latest = newest.get(node)
        fresh = oldest is None or latest is None or oldest >= latest - FRESH_SKEW_S
        for rt in meters:
            rt.awaited = not fresh
        raw[node] = load
        used = hold.fresh(node, load, fresh)
        out[node] = Measurement(current=hold.held(node, used), stale=stale, fresh=fresh)
    return out, figures, raw


def evse_input(rt: DeviceRuntime, ctx: DictEvalContext, mono: float, now: float,
               formulas: FormulaTable, schedule_ma: int | None = None) -> EvseInput:
    """The balancer's input for one EVSE (the last one while nothing it depends on
    changed); `schedule_ma`: what its charging schedule allows now (None: no limit)."""
    cfg = rt.config
    ev = rt.evse
    assert ev is not None
    r = ev.reading
    status = rt.status
    # What moves from cycle to cycle (time, the rules' wish, the communication state).
    offline = status.error_since if status.com_err else None
    plugged_since = None
    departure: float | None = None
    need_wh = 0.0  # `balancer_plan` without a car
    if ev.plugged:
        if ev.plugged_at is not None:
            plugged_since = mono - max(0.0, now - ev.plugged_at)
        departure, need_wh = balancer_plan(ev, now, mono)
    moving = (status.com_err, offline, ev.rule_wish, plugged_since, departure, need_wh,
              schedule_ma)
    seen, last = ev.input_seen, ev.input
    if seen is not None and last is not None and ev.input_cfg is cfg and seen[0] is r and (
            seen[1] is rt.driver) and seen[2] == ev.marks and ev.input_key[1] == moving:
        # Its reading, settings, driver and the marked fields are the same, and so is
        # what moves: the rest of the key is too, without making it. A limit that is a
        # formula is evaluated anew (`input_seen` is kept only for a number).
        return last
    limit = cfg.max_charging_cur
    if isinstance(limit, int):
        max_cur = limit
    else:
        max_cur = eval_limit(formulas, f"{cfg.dev_id}.max_charging_cur", limit,
                             ctx.derive(self_device=cfg.dev_id)).low()
    if r is not None and r.max_current_ma and isinstance(rt.driver, AjaxEvse):
        max_cur = min(max_cur, r.max_current_ma)
    offline_current = None
    cascade = isinstance(rt.driver, CmSlaveEvse)
    if cascade:
        # Another charging manager: at most what its EVSEs want together, within its wiring
        # limit; unreachable, counted at its wiring limit (before any answer: its maximum).
        offline_current = max_cur
        if isinstance(r, SlaveReading):
            wiring = r.max_current_ma if r.max_current_ma is not None else max_cur
            max_cur = min(max_cur, wiring, r.demand_ma)
            offline_current = wiring
    key = ((max_cur, r, ev.ov_cur, ev.overrides, ev.needs_auth, ev.authorised,
            ev.backend_ma), moving)
    # What the key was made of, for the test above (only for a limit that is a number).
    marked = (r, rt.driver, ev.marks) if isinstance(limit, int) else None
    if ev.input is not None and ev.input_cfg is cfg and ev.input_key == key:
        ev.input_seen = marked
        return ev.input
    state = r.state if r is not None else EvseState.WAITING
    if status.com_err:
        state = EvseState.OFFLINE
    made = EvseInput(
        id=cfg.dev_id,
        group=cfg.group,
        priority=cfg.prio,
        min_current=cfg.min_charging_cur,
        max_current=max_cur,
        rotation=cfg.phase_rotation,
        used_phases=cfg.used_phases,
        state=state,
        measured=r.currents if r is not None else ZERO,
        has_meter=bool(r and r.has_meter),
        rule_current=ev.rule_wish,
        backend_current=ev.backend_ma,
        override_current=ev.ov_cur,
        override_disable=bool(ev.overrides & OVERRIDE_DISABLE_CHARGING),
        enabled=cfg.device_enabled,
        offline_since=offline,
        needs_auth=ev.needs_auth,
        authorised=ev.authorised,
        plugged_since=plugged_since,
        departure=departure,
        need_wh=need_wh,
        schedule_current=schedule_ma,
        one_phase=bool(r is not None and r.one_phase and r.phase_switching),
        offline_current=offline_current,
        own_lending=cascade,
    )
    ev.input, ev.input_key, ev.input_cfg, ev.input_seen = made, key, cfg, marked
    return made
