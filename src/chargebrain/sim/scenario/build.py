"""From a validated scenario document to the values the simulator runs on.

`build(shape)` turns a `ScenarioShape` that `checks.validate_scenario` accepted into a
`Scenario` (spec.py): times become seconds since the start of the run, defaults that
depend on other values are filled in (a fault lasts the whole run unless `to` is given;
an appliance without `phases` draws on all three), and the EVSE interface becomes its
name.

This module must never validate (what it is given has been checked) and never read text
or files.
"""

from __future__ import annotations

import json
from dataclasses import replace

from chargebrain.sim.scenario.faults import (
    CarOverdrawFault,
    CarUnderdrawFault,
    EvseOfflineFault,
    FaultBase,
)
from chargebrain.sim.scenario.model import (
    ApplianceShape,
    BatteryShape,
    CarShape,
    EvseShape,
    GroupShape,
    HouseholdShape,
    MeterShape,
    OcppBoxShape,
    PvShape,
    ScenarioShape,
)
from chargebrain.sim.scenario.spec import (
    DAY_S,
    ApplianceSpec,
    BatterySpec,
    CarSpec,
    CloudSpec,
    EvseSpec,
    FaultSpec,
    GroupSpec,
    HouseholdSpec,
    Interface,
    MeterSpec,
    MetersSpec,
    OcppBoxSpec,
    PlanSpec,
    PvSpec,
    Scenario,
    Site,
    SiteLimits,
)

__all__ = ["build"]

ALL_PHASES = 0b111


def _group(g: GroupShape) -> GroupSpec:
    return GroupSpec(id=g.id, max_current_ma=g.max_current_ma, parent=g.parent, prio=g.prio,
                     household=None if g.household is None else _household(g.household),
                     meter=None if g.meter is None else _meter(g.meter))


def _evse(e: EvseShape) -> EvseSpec:
    return EvseSpec(
        id=e.id,
        group=e.group,
        prio=e.prio,
        min_ma=e.min_ma,
        max_ma=e.max_ma,
        phase_rotation=e.phase_rotation,
        used_phases=e.used_phases,
        interface=e.interface.value,
        mode=e.mode.value,
        undercut_s=e.undercut,
        rules_json=json.dumps(e.rules, sort_keys=True) if e.rules is not None else "",
        meter=_meter(e.meter) if e.meter is not None else None,
        ocpp=_ocpp(e.ocpp) if e.interface is Interface.OCPP else None,
        wallbox=e.wallbox or "",
        phase_switching=e.phase_switching,
    )


def _ocpp(o: OcppBoxShape | None) -> OcppBoxSpec:
    if o is None:
        return OcppBoxSpec()
    return OcppBoxSpec(sample_s=o.sample_s, status_delay_s=o.status_delay_s, ramp_s=o.ramp_s,
                       drop_every_s=o.drop_every_s, drop_for_s=o.drop_for_s)


def _car(c: CarShape, start_tod: int) -> CarSpec:
    arrive, leave = c.stay(start_tod)
    announced = c.announced(start_tod)
    plan = None if announced is None else PlanSpec(*announced)
    return CarSpec(
        id=c.id,
        evse=c.evse,
        arrive_s=arrive,
        leave_s=leave,
        need_kwh=c.need_kwh,
        max_ma=c.max_ma,
        phases=c.phases,
        min_start_ma=c.min_start_ma,
        capacity_kwh=c.capacity_kwh,
        soc=c.soc,
        lag_s=float(c.lag_s),
        taper_soc=c.taper_soc,
        sleep_after_s=None if c.sleep_after_s is None else float(c.sleep_after_s),
        wake_after_s=None if c.wake_after_s is None else float(c.wake_after_s),
        plan=plan,
    )


def _appliance(a: ApplianceShape) -> ApplianceSpec:
    mask = 0
    for phase in a.phases:
        mask |= 1 << (phase - 1)
    return ApplianceSpec(
        name=a.name,
        power_w=a.power_w,
        phase_mask=mask or ALL_PHASES,
        duration_s=a.duration,
        at_s=a.at,
        random_count=a.random.count if a.random else 0,
        random_window_s=(a.random.window if a.random and a.random.window else (0, DAY_S)),
        every_s=a.every,
    )


def _household(h: HouseholdShape) -> HouseholdSpec:
    return HouseholdSpec(
        base_w=h.base_w,
        phase_split=h.phase_split,
        noise_pct=h.noise_pct,
        noise_tau_s=float(h.noise_tau_s),
        appliances=tuple(_appliance(a) for a in h.appliances),
    )


def _pv(p: PvShape) -> PvSpec:
    clouds = CloudSpec(
        per_hour=p.clouds.per_hour,
        mean_duration_s=float(p.clouds.mean_duration),
        depth=p.clouds.depth,
        at=p.clouds.at,
    )
    return PvSpec(peak_kw=p.peak_kw, sunrise_s=p.sunrise, sunset_s=p.sunset, clouds=clouds)


def _battery(b: BatteryShape) -> BatterySpec:
    return BatterySpec(capacity_kwh=b.capacity_kwh, max_power_w=b.max_power_w, soc=b.soc)


def _meter(m: MeterShape) -> MeterSpec:
    return MeterSpec(delay_s=m.delay_s, noise_pct=m.noise_pct, energy_step_wh=m.energy_step_wh,
                     dropouts_per_hour=m.dropouts_per_hour, dropout_mean_s=m.dropout_mean,
                     spikes_per_hour=m.spikes_per_hour, spike_factor=m.spike_factor)


def _fault(f: FaultBase, start_tod: int, duration_s: int) -> FaultSpec:
    start, end = f.window(start_tod, duration_s)
    spec = FaultSpec(kind=f.kind, target=f.target, start_s=start, end_s=end)
    if isinstance(f, CarUnderdrawFault):
        return replace(spec, factor=f.factor, offset_ma=f.offset_ma)
    if isinstance(f, CarOverdrawFault):
        return replace(spec, offset_ma=-f.extra_ma)
    if isinstance(f, EvseOfflineFault):
        return replace(spec, fail_safe_ma=f.fail_safe_ma)
    return spec


def build(shape: ScenarioShape) -> Scenario:
    """The scenario a validated document describes."""
    s = shape.site
    limits = SiteLimits(
        max_current_ma=s.max_current_ma,
        reserve_ma=s.reserve_ma,
        max_imbalance_ma=s.max_imbalance_ma,
        max_evse_current_ma=s.max_evse_current_ma,
        voltage_v=s.voltage_v,
    )
    start = shape.start
    return Scenario(
        name=shape.name,
        description=shape.description,
        start_s=start,
        duration_s=shape.duration,
        cycle_s=shape.cycle_s,
        seed=shape.seed,
        site=Site(
            limits,
            tuple(_group(g) for g in shape.groups),
            tuple(_evse(e) for e in shape.evses),
        ),
        cars=tuple(_car(c, start) for c in shape.cars),
        household=None if shape.household is None else _household(shape.household),
        pv=None if shape.pv is None else _pv(shape.pv),
        battery=None if shape.battery is None else _battery(shape.battery),
        meters=MetersSpec(
            grid=_meter(shape.meters.grid),
            pv=_meter(shape.meters.pv),
            evse=_meter(shape.meters.evse),
        ),
        faults=tuple(_fault(f, start, shape.duration) for f in shape.faults),
    )
