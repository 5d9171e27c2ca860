"""Feeds the charging rules every cycle: the manager's `wish_provider`.

Called by `Decider.decide` (manager.decide) after the formula context is filled and before the
balancer runs. It measures the site's solar production and surplus from the meter roles
(or the admin's `surplus_expr`), resolves the energy price from `price_model`, publishes
the predefined CM variables (`_surplus`, `_price`, `_num_charging`, …), evaluates the CM
variables, and then — in load-management mode only — evaluates each EVSE's rules together
with those of the user authorised at it, carrying the undercut memory from cycle to cycle.
The outcome is written to each EVSE's `rule_wish` (mA, 0 = pause, None = no rules) and
`rule_source`. Rules are compiled only when an EVSE's or user's rules change.

This module must never do I/O in the cycle, never write to devices, and never decide
currents itself: the rules engine in core/rules decides the wish, the balancer the current.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chargebrain.core.formula import DictEvalContext, Formula, FormulaError, compile_formula
from chargebrain.core.formula.prices import PriceSchedule
from chargebrain.core.model import EvseState
from chargebrain.core.phases import mask_count
from chargebrain.core.rules import (
    LIST_USER,
    NO_RULES,
    PRICE_MODEL_CM,
    PRICE_MODEL_FIXED,
    CompiledRules,
    LocalClock,
    RuleContext,
    RuleResult,
    RuleState,
    compile_rules,
    evaluate_all,
    power_to_phase_current_ma,
    price_cm_vars,
    resolve_price,
    share_pool,
    surplus_w_from_formula,
)
from chargebrain.devices.ajax import AjaxEvse
from chargebrain.manager import config as C
from chargebrain.manager.cm_vars import CmVars, sync_cm_values
from chargebrain.manager.state import (
    OVERRIDE_NO_EVSE_RULES,
    OVERRIDE_NO_USER_RULES,
    DeviceRuntime,
)
from chargebrain.manager.surplus_groups import claim_of, pool_inputs
from chargebrain.manager.topology import Topology

if TYPE_CHECKING:
    from chargebrain.manager.decide import Decider
    from chargebrain.manager.users import UserDirectory

log = logging.getLogger("chargebrain.rules")

#: `price_model` codes of set_params (our numbering; see docs/rules.md).
PRICE_MODEL_NONE_CODE = 0
PRICE_MODEL_FIXED_CODE = 1
PRICE_MODEL_CM_CODE = 2
PRICE_MODELS = {PRICE_MODEL_FIXED_CODE: PRICE_MODEL_FIXED, PRICE_MODEL_CM_CODE: PRICE_MODEL_CM}

OBSERVE_SOURCE = "observe mode (rules not evaluated)"
#: Users' compiled rules kept beyond those of the users at an EVSE (a user's rules may
#: hold 32 KiB of formulas, about 1.5 MB compiled).
USER_RULES_KEPT = 64
_CHARGING = frozenset(s for s in EvseState if s.charging)

#: user id -> that user's rules (a classic list, a rule-set object) or None.
UserRules = Callable[[str], object]


def local_zone() -> tzinfo:
    """The wall-clock zone rules and `date.*` use: $TZ, else the system zone, else UTC."""
    name = os.environ.get("TZ", "").strip().lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("TZ=%s is not a known time zone", name)
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


@dataclass(frozen=True)
class SiteEnergy:
    """The site's power figures of one cycle as the rules see them (W; grid + = import)."""

    grid_w: float  # measured, or estimated from consumption and production
    has_grid_meter: bool
    has_production_meter: bool
    produced_w: float
    consumed_w: float
    evse_w: float
    org_surplus_w: float  # the built-in surplus (`CM._org_surplus`)
    surplus_w: float  # after `surplus_expr` (`CM._surplus`)
    solar_w: float
    num_charging: int


def measure(mgr: Decider) -> SiteEnergy:
    """Built-in surplus from the site's (group 0) meters.

    With a grid meter: EVSE consumption − grid power − discharge of role-5 storage (home
    storage does not feed cars). Without one: production + discharge of role-6 storage −
    consumption − storage charging. Meters without a current reading count nothing; a
    grid meter without one makes the surplus 0.
    """
    grid_w = produced = consumed = home_discharge = all_discharge = charging = 0.0
    has_grid = grid_ok = has_production = False
    topo = mgr.inventory.topology()
    for rt in topo.site_meters:
        cfg = rt.config
        ok = rt.meter is not None and not rt.status.com_err
        power = rt.meter.power_w if rt.meter is not None else 0.0
        if cfg.role == C.ROLE_GRID:
            has_grid = True
            if ok:
                grid_ok = True
                grid_w += power
        elif not ok:
            continue
        elif cfg.role == C.ROLE_PRODUCTION:
            has_production = True
            produced += abs(power)
        elif cfg.role == C.ROLE_CONSUMPTION:
            consumed += abs(power)
        elif cfg.role in (C.ROLE_STORAGE_HOME, C.ROLE_STORAGE_ALL):
            if power >= 0:
                charging += power
            elif cfg.role == C.ROLE_STORAGE_HOME:
                home_discharge += -power
            else:
                all_discharge += -power
    evse_w = 0.0
    num_charging = 0
    for rt in topo.evses:
        ev = rt.evse
        if ev is None or ev.reading is None or rt.status.com_err:
            continue
        evse_w += ev.reading.power_w
        if ev.reading.state in _CHARGING:
            num_charging += 1
    if has_grid:
        org = (evse_w - grid_w - home_discharge) if grid_ok else 0.0
    else:
        org = produced + all_discharge - consumed - charging
        grid_w = consumed + charging + evse_w - produced - all_discharge
    return SiteEnergy(
        grid_w=grid_w, has_grid_meter=has_grid, has_production_meter=has_production,
        produced_w=produced, consumed_w=consumed,
        evse_w=evse_w, org_surplus_w=org, surplus_w=org,
        solar_w=produced if has_production else max(0.0, org), num_charging=num_charging)


def predicted_phases(rt: DeviceRuntime) -> int:
    """Phases an EVSE charges on: configured, else one while its 1-phase contactor is
    selected, else measured while charging, else the phases the balancer counted it on,
    else 3."""
    configured = rt.config.used_phases & 7
    if configured:
        return mask_count(configured)
    ev = rt.evse
    if ev is not None:
        r = ev.reading
        if r is not None and r.one_phase and r.phase_switching:
            return 1  # its 1-phase contactor is selected
        if r is not None and r.state.charging and not rt.status.com_err:
            measured = mask_count(r.currents.mask(1000))
            if measured:
                return measured
        if ev.decision is not None and ev.decision.phases:
            return mask_count(ev.decision.phases)
    return 3


class RulesRuntime:
    """The manager's wish provider (install with `install(manager)`)."""

    def __init__(
        self,
        cm_vars: CmVars | None = None,
        user_rules: UserRules | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self.cm_vars = cm_vars
        self.user_rules = user_rules
        self.tz: tzinfo = tz or UTC
        self.state = RuleState()
        self.results: dict[str, RuleResult] = {}
        self.energy: SiteEnergy | None = None
        self.price: float | None = None
        self.price_level: int | None = None
        self._evse_rules: dict[str, tuple[object, CompiledRules]] = {}
        # The rules of each EVSE's configuration object (while that object is the same,
        # its rules are).
        self._evse_cfg: dict[str, tuple[object, CompiledRules]] = {}
        self._user_rules: dict[str, tuple[object, CompiledRules]] = {}
        self._user_at: dict[str, CompiledRules | None] = {}
        self._plugged: dict[str, bool] = {}
        self._formulas: dict[str, Formula | None] = {}
        self._schedule: PriceSchedule | None = None
        self._last_mono: float | None = None
        self._topo: Topology | None = None  # the manager's topology when last looked at

    def install(self, decider: Decider) -> None:
        """Become the decider's wish provider; formulas see wall-clock time in this zone."""
        decider.wish_provider = self
        decider.ctx.set_now(decider.ctx.now, self.tz)

    # --- the cycle -------------------------------------------------------------------

    def __call__(self, mgr: Decider, ctx: DictEvalContext, now: float) -> None:
        mono = mgr.clock.monotonic()
        dt = 0.0 if self._last_mono is None else max(0.0, mono - self._last_mono)
        self._last_mono = mono
        ctx.set_now(now, self.tz)
        site = mgr.settings.params
        energy = measure(mgr)
        predefined: dict[str, float] = {
            "_num_charging": float(energy.num_charging),
            "_num_charging1": float(max(1, energy.num_charging)),
            "_max_total_current": float(mgr.evaluated_max_total_ma),
            "_max_total_evse_current": float(mgr.evaluated_max_evse_ma),
            "_dt": dt,
            "_org_surplus": energy.org_surplus_w,
            "_max_total_current_prc": float(site.max_total_cur_prc),
        }
        ctx.update_cm(predefined)
        surplus_w = energy.org_surplus_w
        formula = self._formula(site.surplus_expr)
        if formula is not None:
            surplus_w = surplus_w_from_formula(formula, ctx, energy.org_surplus_w)
        if surplus_w != energy.org_surplus_w:
            solar = energy.solar_w if energy.has_production_meter else max(0.0, surplus_w)
            energy = replace(energy, surplus_w=surplus_w, solar_w=solar)
        predefined["_surplus"] = surplus_w
        ctx.set_cm("_surplus", surplus_w)
        variables = self.cm_vars.evaluate(ctx) if self.cm_vars is not None else {}
        model = PRICE_MODELS.get(site.price_model, "")
        price, level = resolve_price(model, variables, site.fixed_price)
        self._set_schedule(ctx, price if model == PRICE_MODEL_FIXED else None)
        values = {k.lower(): v for k, v in predefined.items()}
        values.update((k.lower(), v) for k, v in variables.items())
        values.update(price_cm_vars(price, level))
        sync_cm_values(mgr, ctx, values)
        self.energy, self.price, self.price_level = energy, price, level
        self._forget_removed(mgr)
        if not site.lb_enabled:
            for rt in mgr.devices.values():
                if rt.evse is not None:
                    rt.evse.rule_wish = None
                    rt.evse.rule_source = OBSERVE_SOURCE
                    rt.evse.rule_surplus = False
            self.results = {}
            return
        self._evaluate(mgr, ctx, now, energy, price, level)

    def _evaluate(
        self,
        mgr: Decider,
        ctx: DictEvalContext,
        now: float,
        energy: SiteEnergy,
        price: float | None,
        level: int | None,
    ) -> None:
        clock: LocalClock | None = None
        items: list[tuple[CompiledRules | None, CompiledRules | None, RuleContext]] = []
        targets: list[DeviceRuntime] = []
        plugged_at, evse_cfg, user_at = self._plugged, self._evse_cfg, self._user_at
        for rt in mgr.inventory.evses_in_order():
            ev = rt.evse
            if ev is None:
                continue
            cfg = rt.config
            dev_id = cfg.dev_id
            if ev.plugged is not plugged_at.get(dev_id):
                self._track_plug(dev_id, ev.plugged)
            same = evse_cfg.get(dev_id)  # `_compiled_evse`, spelt out
            evse_rules = same[1] if same is not None and same[0] is cfg else (
                self._compiled_evse(rt))
            user_id = ev.user_id
            # Nobody authorised now nor before: no user rules (and no user list to forget).
            user_rules = self._compiled_user(dev_id, user_id) if user_id or (
                user_at.get(dev_id) is not None) else None
            if (user_rules is None or _empty(user_rules)) and _empty(evse_rules):
                # No rules at all: no wish, and nothing worth building a context for.
                ev.rule_wish, ev.rule_source, ev.rule_surplus = None, "no rules", False
                continue
            ev.rule_surplus = bool(
                (evse_rules.follows_surplus and not ev.overrides & OVERRIDE_NO_EVSE_RULES)
                or (user_rules is not None and user_rules.follows_surplus
                    and not ev.overrides & OVERRIDE_NO_USER_RULES))
            if clock is None:
                clock = LocalClock.at(now, self.tz)
            rctx = self._rule_context(rt, ctx, clock, energy, price, level,
                                      energy.surplus_w, energy.solar_w)
            items.append((evse_rules, user_rules, rctx))
            targets.append(rt)
        if not items:
            self.results = {}
            return
        results, state = evaluate_all(items, self.state, now)
        sharing = [i for i, rt in enumerate(targets) if results[rt.dev_id].surplus]
        if len(sharing) > 1 and (energy.surplus_w > 0 or energy.solar_w > 0):
            # Several EVSEs charge from the surplus: each is given its share, not the
            # whole (core/rules/sharing.py), within their groups' room, a group's own
            # surplus first (manager/surplus_groups.py); their rules run again with it.
            claims = [claim_of(mgr, targets[i], items[i][2]) for i in sharing]
            caps, local, made = pool_inputs(mgr, claims)
            surplus = share_pool(claims, energy.surplus_w, caps=caps, local_w=local)
            solar = share_pool(claims, energy.solar_w, caps=caps, local_w=made)
            items = list(items)
            for i in sharing:
                rt = targets[i]
                assert clock is not None
                items[i] = (items[i][0], items[i][1], self._rule_context(
                    rt, ctx, clock, energy, price, level, surplus[rt.dev_id],
                    solar[rt.dev_id]))
            results, state = evaluate_all(items, self.state, now)
        self.state = state
        self.results = results
        for rt in targets:
            ev = rt.evse
            assert ev is not None
            result = results[rt.dev_id]
            ev.rule_wish = result.wish_ma
            ev.rule_source = result.source

    def _rule_context(self, rt: DeviceRuntime, ctx: DictEvalContext, clock: LocalClock,
                      energy: SiteEnergy, price: float | None, level: int | None,
                      surplus_w: float, solar_w: float) -> RuleContext:
        """What one EVSE's rules see, with `surplus_w` and `solar_w` as its surplus and
        solar power (the site's, or its share of them)."""
        ev = rt.evse
        assert ev is not None
        phases = predicted_phases(rt)
        surplus_ma = power_to_phase_current_ma(surplus_w, phases)
        lb_cur = ev.decision.current_ma if ev.decision is not None else 0
        return RuleContext(
            dev_id=rt.config.dev_id,
            evse_max_ma=self._evse_max(rt, ctx),
            evse_min_ma=rt.config.min_charging_cur,
            phases=phases,
            solar_ma=power_to_phase_current_ma(solar_w, phases),
            surplus_ma=surplus_ma,
            grid_import_ma=power_to_phase_current_ma(max(0.0, energy.grid_w), phases),
            grid_export_ma=power_to_phase_current_ma(max(0.0, -energy.grid_w), phases),
            price=price,
            price_level=level,
            formula=ctx.derive(self_device=rt.config.dev_id, self_values={
                "lb_cur": float(lb_cur), "surplus_pcur": float(surplus_ma),
                "pphases": float(phases)}),
            tz=self.tz,
            clock=clock,
            override_evse_rules=bool(ev.overrides & OVERRIDE_NO_EVSE_RULES),
            override_user_rules=bool(ev.overrides & OVERRIDE_NO_USER_RULES),
        )

    # --- inputs ----------------------------------------------------------------------

    def _set_schedule(self, ctx: DictEvalContext, fixed_price: float | None) -> None:
        """A fixed price is a schedule covering all time (for min_price() and friends);
        a schedule set by anything else is left alone."""
        if fixed_price is not None:
            if self._schedule is None or self._schedule.slots[0].price != fixed_price:
                self._schedule = PriceSchedule.fixed(fixed_price)
            ctx.prices = self._schedule
        elif self._schedule is not None:
            if ctx.prices is self._schedule:
                ctx.prices = None
            self._schedule = None

    def _formula(self, text: str | int) -> Formula | None:
        if not isinstance(text, str) or not text.strip():
            return None
        if text not in self._formulas:
            if len(self._formulas) > 256:
                self._formulas.clear()
            try:
                self._formulas[text] = compile_formula(text)
            except FormulaError as exc:
                log.error("formula %r cannot be used: %s", text, exc)
                self._formulas[text] = None
        return self._formulas[text]

    def _evse_max(self, rt: DeviceRuntime, ctx: DictEvalContext) -> int:
        limit = rt.config.max_charging_cur
        if isinstance(limit, int):
            value = limit
        else:
            formula = self._formula(limit)
            if formula is None:
                return 0
            own = ctx.derive(self_device=rt.dev_id)
            value = min(max(0, round(formula.evaluate(own.derive(phase=p)))) for p in (1, 2, 3))
        ev = rt.evse
        if (ev is not None and ev.reading is not None and ev.reading.max_current_ma
                and isinstance(rt.driver, AjaxEvse)):
            # An HTTP-input EVSE's own maximum; others report the current they signal now,
            # which is no limit of the rules (the balancer reads it alike, inputs.py).
            value = min(value, ev.reading.max_current_ma)
        return max(0, value)

    def _compiled_evse(self, rt: DeviceRuntime) -> CompiledRules:
        cfg = rt.config
        same = self._evse_cfg.get(rt.dev_id)
        if same is not None and same[0] is cfg:
            return same[1]
        compiled = self._compile_evse(rt)
        self._evse_cfg[rt.dev_id] = (cfg, compiled)
        return compiled

    def _compile_evse(self, rt: DeviceRuntime) -> CompiledRules:
        cfg = rt.config
        raw: object = cfg.crule_set if isinstance(cfg.crule_set, Mapping) else cfg.charging_rules
        cached = self._evse_rules.get(rt.dev_id)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            if cached[0] is not raw:
                self._evse_rules[rt.dev_id] = (raw, cached[1])
            return cached[1]
        compiled = compile_rules(raw) if raw else NO_RULES
        for problem in compiled.errors:
            log.warning("%s: charging rule ignored: %s", rt.dev_id, problem)
        self._evse_rules[rt.dev_id] = (raw, compiled)
        if cached is not None:
            self.state = self.state.without_device(rt.dev_id)
        return compiled

    def _compiled_user(self, dev_id: str, user_id: str) -> CompiledRules | None:
        compiled: CompiledRules | None = None
        if user_id and self.user_rules is not None:
            raw = self.user_rules(user_id)
            if raw is not None:
                cached = self._user_rules.get(user_id)
                if cached is not None and (cached[0] is raw or cached[0] == raw):
                    compiled = cached[1]
                else:
                    compiled = compile_rules(raw) if raw else NO_RULES
                    for problem in compiled.errors:
                        log.warning("user rules ignored at %s: %s", dev_id, problem)
                    self._user_rules[user_id] = (raw, compiled)
        if self._user_at.get(dev_id) is not compiled:
            # Another user, or changed rules: the user list's undercut memory is stale.
            stale = {k: None for k in self.state.entries if k[0] == dev_id and k[1] == LIST_USER}
            self.state = self.state.with_changes(stale)
            self._user_at[dev_id] = compiled
        return compiled

    def _track_plug(self, dev_id: str, plugged: bool) -> None:
        if self._plugged.get(dev_id) and not plugged:
            self.state = self.state.without_device(dev_id)
        self._plugged[dev_id] = plugged

    def _forget_removed(self, mgr: Decider) -> None:
        topo = mgr.inventory.topology()
        # Devices are removed only with a change of the topology (a new object).
        gone = [] if topo is self._topo else [d for d in self._evse_rules
                                               if d not in mgr.devices]
        self._topo = topo
        for dev_id in gone:
            self._evse_rules.pop(dev_id, None)
            self._evse_cfg.pop(dev_id, None)
            self._user_at.pop(dev_id, None)
            self._plugged.pop(dev_id, None)
            self.state = self.state.without_device(dev_id)
        if len(self._user_rules) > USER_RULES_KEPT:
            # Keep the compiled rules of the users at an EVSE now; others compile again.
            in_use = {id(c) for c in self._user_at.values() if c is not None}
            self._user_rules = {u: entry for u, entry in self._user_rules.items()
                                if id(entry[1]) in in_use}


def _empty(rules: CompiledRules | None) -> bool:
    return rules is None or not (rules.classic or rules.program or rules.errors)


def user_rules_of(directory: UserDirectory) -> UserRules:
    """The lookup of the rules of the user directory's users (None for unknown users)."""

    def lookup(user_id: str) -> object:
        user = directory.get(user_id)
        return None if user is None else user.charging_rules

    return lookup
