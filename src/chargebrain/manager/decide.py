"""Deciding in a control cycle: from the balancer's input to its allocation.

Evaluates the site's limits, lets the charging rules state their wishes, runs the
balancer and keeps its state, then notes what the cycle decided: each EVSE's decision
(and the draw above which a pushed reading of it wakes a cycle), each group's share, the
site's figures, the virtual meters and the wake band of each pushed meter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from chargebrain.clock import Clock
from chargebrain.core.balancer import (
    Allocation,
    BalancerState,
    EvseDecision,
    GroupConfig,
    Measurement,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.formula import DictEvalContext
from chargebrain.core.model import MeterReading
from chargebrain.manager.cascade import MasterLink
from chargebrain.manager.config_pauses import ConfigPauses
from chargebrain.manager.cycle_log import log_cycle
from chargebrain.manager.inputs import (
    LoadHold,
    eval_limit,
    evse_input,
    fill_context,
    fill_devices,
)
from chargebrain.manager.inputs import measurements as measure_loads
from chargebrain.manager.inventory import DeviceInventory
from chargebrain.manager.phase_auto import PhaseAuto
from chargebrain.manager.ports import SiteStore
from chargebrain.manager.pushes import WAKE_EVSE_OVER_MA, meter_bands
from chargebrain.manager.schedules import SITE, ChargeSchedules, minute_of_day
from chargebrain.manager.settings import SiteSettings
from chargebrain.manager.site import SiteSnapshot, expression_reading, virtual_meter_values
from chargebrain.manager.state import DeviceRuntime
from chargebrain.manager.topology import Topology
from chargebrain.powerbrain.controller import PowerBrain

#: Called once a cycle before the balancer: states each EVSE's rule wish (the rules).
WishProvider = Callable[["Decider", DictEvalContext, float], None]

log = logging.getLogger("chargebrain.manager")
_UNMEASURED = Measurement()  # a site without a meter of its load (an immutable value)


def _log_change(rt: DeviceRuntime, old: EvseDecision | None, new: EvseDecision | None) -> None:
    """Say in the log when an EVSE starts, pauses or stops, and why."""
    if new is None:
        return
    was = bool(old and old.charging_enabled and old.current_ma)
    now_on = bool(new.charging_enabled and new.current_ma)
    if was != now_on or (old is not None and old.paused != new.paused):
        what = f"{new.current_ma / 1000:.1f} A" if now_on else (
            "paused" if new.paused else "off")
        log.info("%s (%s): %s (%s)", rt.dev_id, rt.config.name, what, new.reason)



class Decider:
    """Decides each cycle: from the inventory's readings to the balancer's allocation.

    Owns what the balancer carries from cycle to cycle, the cycle's formula context and
    the CM values of the last cycle, and the figures of the last decision (the site
    snapshot, the evaluated limits) that the API and the virtual meters show.
    """

    def __init__(self, clock: Clock, powerbrain: PowerBrain, inventory: DeviceInventory,
                 settings: SiteSettings, store: SiteStore, overdraft_cur: int = 0,
                 schedules: ChargeSchedules | None = None) -> None:
        self.clock = clock
        self.powerbrain = powerbrain
        self.inventory = inventory
        self.devices = inventory.devices  # the same mapping, kept current by the inventory
        self.formulas = inventory.formulas
        self.settings = settings
        self.store = store
        self.balancer_state = BalancerState(overdraft_cur=overdraft_cur)
        self.last_allocation: Allocation | None = None
        self.last_site: SiteSnapshot | None = None
        self.evaluated_max_total_ma = 0
        self.evaluated_max_evse_ma = 0
        # Each group's limit per phase as the last decision evaluated it (None: none).
        self.group_limits: dict[int, int | None] = {}
        self.cm_values: dict[str, float] = {}
        self.ctx = DictEvalContext()
        self.wish_provider: WishProvider | None = None
        self.hold = LoadHold(clock)
        self.cycles = 0  # decisions made so far
        # Limits by time of day from an external energy manager (set_cplan).
        self.schedules = schedules if schedules is not None else ChargeSchedules(None)
        self.phase_auto = PhaseAuto()  # automatic 1/3-phase switching for surplus charging
        self.master = MasterLink()  # the limit a master charging manager sets, if any
        self.config_pauses = ConfigPauses()  # no pause timer for a configuration change
        # The balancer's site and group configurations of the last cycle and what each was
        # made of (reused while that is the same: immutable values, not made again).
        self._site_config: tuple[tuple[object, ...], SiteConfig] | None = None
        self._group_inputs: dict[int, tuple[tuple[object, ...], GroupConfig]] = {}

    def fill_devices(self, ctx: DictEvalContext) -> None:
        """Every device's values into `ctx` (when a formula first asks for one)."""
        fill_devices(ctx, self.devices)

    @property
    def overdraft_cur(self) -> int:
        return self.balancer_state.overdraft_cur

    def reset_overdraft(self) -> None:
        self.balancer_state = replace(self.balancer_state, overdraft_cur=0)
        self.store.save_overdraft(0)

    def forget(self, dev_id: str) -> None:
        """Drop what the balancer remembers of one EVSE (it was reset)."""
        self.config_pauses.forget(dev_id)
        self.balancer_state = replace(
            self.balancer_state,
            evses={k: v for k, v in self.balancer_state.evses.items() if k != dev_id},
        )

    def decide(self, topo: Topology) -> Allocation:
        """Decide on the latest readings; note the decisions and what follows from them."""
        now = self.clock.now()
        mono = self.clock.monotonic()
        site = self.settings.params
        ctx = self.ctx
        formulas = self.formulas
        fill_context(ctx, now, self.powerbrain, self.cm_values, self.fill_devices)
        max_total = eval_limit(formulas, "site.max_total_current", site.max_total_current, ctx)
        max_total = max_total.scale(site.max_total_cur_prc / 100.0)
        max_evse = eval_limit(formulas, "site.max_total_evse_current",
                              site.max_total_evse_current, ctx)
        schedules = self.schedules
        minute = minute_of_day(now, ctx.tz) if schedules else -1
        total_ma = max_total.low()
        scheduled = schedules.limit(SITE, minute) if schedules else None
        if scheduled is not None and scheduled < total_ma:
            total_ma = scheduled  # a charging schedule allows less now
        else:
            scheduled = None
        self.evaluated_max_total_ma = total_ma
        self.evaluated_max_evse_ma = max_evse.low()
        # Under a master charging manager, its limit is one more on the supply line.
        supply, supply_label = self.master.supply(site, mono, max_evse)
        if self.wish_provider is not None:
            self.wish_provider(self, ctx, now)
        measurements, figures, raw = measure_loads(topo, self.hold)
        groups = []
        evses = []
        scheduling = bool(schedules)
        group_inputs = self._group_inputs
        if len(group_inputs) > len(topo.groups_and_evses):
            group_inputs.clear()  # groups were removed
        for rt in topo.groups_and_evses:
            cfg = rt.config
            if rt.evse is None:
                # A configured 0 is no limit of its own; a formula's 0 lets nothing through.
                limit = None if cfg.max_charging_cur == 0 else eval_limit(
                    formulas, f"{cfg.dev_id}.max_charging_cur", cfg.max_charging_cur,
                    ctx).low()
                own = schedules.limit(cfg.dev_id, minute) if scheduling else None
                group_scheduled = own is not None and (limit is None or own < limit)
                number = cfg.group_number
                gkey = (cfg, own if group_scheduled else limit, measurements.get(number),
                        group_scheduled)
                self.group_limits[number] = gkey[1]
                known = group_inputs.get(number)
                if known is not None and known[0] == gkey:
                    groups.append(known[1])  # nothing it is made of changed
                    continue
                made = GroupConfig(
                    id=number, parent=cfg.group, max_current=gkey[1], priority=cfg.prio,
                    load=gkey[2], name=cfg.name or cfg.dev_id, scheduled=group_scheduled)
                group_inputs[number] = (gkey, made)
                groups.append(made)
            else:
                evses.append(evse_input(rt, ctx, mono, now, formulas, schedules.limit(
                    cfg.dev_id, minute) if scheduling else None))
        skey = (site, total_ma, scheduled is not None, supply.low(), supply_label)
        if self._site_config is not None and self._site_config[0] == skey:
            config = self._site_config[1]  # nothing it is made of changed
        else:
            config = SiteConfig(
                max_total_current=total_ma,
                scheduled=scheduled is not None,
                reserve_current=site.reserve_current,
                max_total_evse_current=skey[3],
                max_imbalance_cur=site.max_imbalance_cur,
                imbalance_add=site.imbalance_add,
                min_pause_time=float(site.min_pause_time),
                lb_enabled=site.lb_enabled,
                disable_policy=site.disable_policy,
                supply_label=supply_label,
            )
            self._site_config = (skey, config)
        site_input = SiteInput(config=config, load=measurements.get(0, _UNMEASURED),
                               groups=tuple(groups), evses=tuple(evses))
        alloc = allocate(site_input, self.balancer_state, mono)
        alloc = self.config_pauses.release((topo, site), self.balancer_state, alloc, mono,
                                           float(site.min_pause_time))
        self.master.note_demand(site, site_input, alloc, max_evse, self.balancer_state, mono)
        self.cycles += 1
        log_cycle(site_input, alloc, self.cycles)
        if alloc.overdraft_cur != self.balancer_state.overdraft_cur:
            self.store.save_overdraft(alloc.overdraft_cur)
        self.balancer_state = alloc.state
        self.last_allocation = alloc
        if formulas:
            # Formulas still to be evaluated this cycle see the state it started with.
            ctx.materialize()
        # Decisions come in input order: the EVSEs of `groups_and_evses`, as in `devices`.
        evse_power = 0.0
        for rt, new in zip(topo.evses, alloc.evses, strict=True):
            ev = rt.evse
            assert ev is not None
            old = ev.decision
            if old is None or old.current_ma != new.current_ma or (
                    old.charging_enabled is not new.charging_enabled) or (
                    old.paused is not new.paused):
                _log_change(rt, old, new)
            ev.decision = new
            r = ev.reading
            given = new.current_ma if new.charging_enabled else 0
            if r is not None:
                c = r.currents
                drawn = c.l1 if c.l1 >= c.l2 else c.l2  # max(c.l1, c.l2, c.l3), spelt out
                if c.l3 > drawn:
                    drawn = c.l3
                if not rt.status.com_err:
                    evse_power += r.power_w
            else:
                drawn = 0
            ev.wake_above_ma = (given if given > drawn else drawn) + WAKE_EVSE_OVER_MA
        for node in alloc.nodes:
            if node.id:
                g = self.devices.get(f"E{node.id}")
                if g is not None:
                    g.group_state = node.allocated
        if 0 in topo.grid and 0 not in topo.cons:
            figures["consumed_w"] = max(0.0, figures["grid_w"] - evse_power)
        load = measurements.get(0, _UNMEASURED).current
        surplus = (-figures["grid_w"] + evse_power) if topo.has_grid else (
            figures["produced_w"] - figures["consumed_w"])
        # The surplus the rules use (a surplus formula may replace the built-in one).
        surplus = self.cm_values.get("_surplus", surplus)
        self.last_site = SiteSnapshot(
            available=alloc.available, allocated=alloc.allocated, consumed=alloc.consumed,
            non_evse_load=load, overdraft_applied_ma=alloc.overdraft_applied.peak(),
            grid_w=figures["grid_w"], consumed_w=figures["consumed_w"],
            produced_w=figures["produced_w"], surplus_w=max(0.0, surplus),
            evse_power_w=evse_power)
        self.phase_auto.update(topo.evses, self.last_site.surplus_w, mono,
                               site.phase_switch_delay)
        self._virtual_meters(ctx, topo)
        meter_bands(topo, measurements, raw, formulas.device_ids)
        return alloc

    def _virtual_meters(self, ctx: DictEvalContext, topo: Topology) -> None:
        s = self.last_site
        if s is None or not topo.virtual:
            return
        values = virtual_meter_values(s)
        mono = self.clock.monotonic()
        for rt in topo.virtual:
            if rt.config.dev_type in values:
                currents, power = values[rt.config.dev_type]
                rt.meter = MeterReading(power_w=power, currents=currents, model=rt.dtype.name)
                continue
            formula = self.formulas.get(f"{rt.dev_id}.expr")
            if rt.config.dev_type == "meter_expression" and formula is not None:
                dt = mono - rt.expr_at if rt.expr_at is not None else 0.0
                rt.expr_at = mono
                rt.meter = expression_reading(formula, rt.meter, ctx, rt.dev_id, dt)
