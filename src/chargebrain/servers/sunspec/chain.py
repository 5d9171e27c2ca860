"""The two SunSpec chains of the charging manager, built from its state.

At the unit id: model 1, seven model-213 meters of the site's figures (grid, consumers,
producers, PV surplus, EVSE power used, EVSE power available, error power), the custom
models 60000 (limits), 60001 (flags) and 60002 (CM variables), the end marker. At unit
id + 1: model 1, then every EVSE that is published (`publish_sunspec`) as model 113 with
its state and number, and every published meter as model 213 with its role and number.

A `Chain` is the register image from 40000 and where its writable points lie; it is
built afresh when read (servers/sunspec/server.py caches it per control cycle). The
site's figures are the decider's last cycle (`SiteSnapshot`), as get_params shows them.
Never writes anything: the server applies writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from chargebrain import package_version
from chargebrain.core.balancer import Limit
from chargebrain.core.phases import ZERO, Phases
from chargebrain.manager import config as C
from chargebrain.manager.cm_vars import CmVars
from chargebrain.manager.runtime import ChargingManager
from chargebrain.manager.site import VOLTAGE, virtual_meter_values
from chargebrain.manager.state import DeviceRuntime
from chargebrain.servers.sunspec.layout import (
    BASE_ADDRESS,
    COMMON,
    DEVICE_METER,
    END_MODEL,
    EVSE,
    FLAG_COUNT,
    FLAGS,
    LIMITS,
    MARKER,
    METER,
    VARIABLES,
    Model,
    Point,
    Value,
    encode_model,
)

MANUFACTURER = "chargebrain"
#: The seven meters of the site chain, in order: (what they show, virtual meter type).
SITE_METERS = (
    ("grid", "meter_virtual_grid_demand"),
    ("consumers", "meter_virtual_consumed_power"),
    ("producers", "meter_virtual_produced_power"),
    ("PV surplus", "meter_virtual_surplus"),
    ("used EVSE power", "meter_virtual_evse_power"),
    ("available EVSE power", "meter_virtual_available_evse_power"),
    ("error power", ""),
)
LAST_ADDRESS = 0x10000


@dataclass(frozen=True)
class Writable:
    """A writable point of a chain: which model instance and which point."""

    model: int
    point: Point
    address: int  # of its first register
    index: int = 0  # the instance of a repeating group (60002: the variable)
    key: str = ""  # what it stands for (the variable's name)


@dataclass
class Chain:
    """A register image from `BASE_ADDRESS` and the writable points in it."""

    words: list[int] = field(default_factory=list)
    writable: dict[int, Writable] = field(default_factory=dict)  # by each register
    models: list[tuple[int, int]] = field(default_factory=list)  # (model id, address)
    left_out: int = 0  # devices that did not fit below 65536

    @property
    def end(self) -> int:
        return BASE_ADDRESS + len(self.words)

    def add(self, model: Model, values: Mapping[str, Value],
            repeats: Sequence[Mapping[str, Value]] = (), keys: Sequence[str] = ()) -> bool:
        """Append a model; False (nothing added) when it would not fit below 65536."""
        words = encode_model(model, values, repeats)
        address = self.end
        if address + len(words) + 2 > LAST_ADDRESS:
            self.left_out += 1
            return False
        self.models.append((model.id, address))
        self.words.extend(words)
        offset = address + 2
        for p in (*model.points, *model.extra):
            if p.access == "RW":
                self._mark(Writable(model.id, p, offset))
            offset += p.size
        for i, _ in enumerate(repeats):
            for p in model.repeat:
                if p.access == "RW":
                    self._mark(Writable(model.id, p, offset, i, keys[i] if keys else ""))
                offset += p.size
        return True

    def _mark(self, w: Writable) -> None:
        for a in range(w.address, w.address + w.point.size):
            self.writable[a] = w

    def close(self) -> None:
        self.words.extend((END_MODEL, 0))


def _new_chain() -> Chain:
    return Chain(words=list(MARKER))


def _common(mgr: ChargingManager, unit: int, what: str) -> dict[str, Value]:
    return {"Mn": MANUFACTURER, "Md": what, "Opt": "", "Vr": package_version(),
            "SN": mgr.serial, "DA": unit}


def _amps(ma: float) -> float:
    return ma / 1000.0


def _meter_values(currents: Phases | None, power_w: float | None,
                  voltages: Sequence[float] | None = None,
                  import_wh: float | None = None, export_wh: float | None = None,
                  ) -> dict[str, Value]:
    """Model 213 values: currents in A per phase (their sum as A), power, voltages and
    energy where known; everything else not implemented."""
    out: dict[str, Value] = {"Evt": 0}
    if currents is not None:
        out.update(A=_amps(currents.l1 + currents.l2 + currents.l3), AphA=_amps(currents.l1),
                   AphB=_amps(currents.l2), AphC=_amps(currents.l3))
    if power_w is not None:
        out["W"] = float(power_w)
    if voltages is not None:
        out.update(PhV=sum(voltages) / 3, PhVphA=voltages[0], PhVphB=voltages[1],
                   PhVphC=voltages[2])
    if import_wh is not None:
        out["TotWhImp"] = float(import_wh)
    if export_wh is not None:
        out["TotWhExp"] = float(export_wh)
    return out


def _site_grid(mgr: ChargingManager) -> tuple[Phases | None, list[float] | None]:
    """The site's grid meters together (currents), and the first one's voltages."""
    total: Phases | None = None
    volts: list[float] | None = None
    for rt in mgr.devices.values():
        cfg = rt.config
        if (cfg.role != C.ROLE_GRID or cfg.group != 0 or rt.meter is None or rt.evse
                is not None or not cfg.device_enabled or rt.status.com_err):
            continue
        total = rt.meter.currents if total is None else total + rt.meter.currents
        if volts is None:
            volts = list(rt.meter.voltages)
    return total, volts


def _error_load(mgr: ChargingManager) -> Phases:
    """What unreachable EVSEs are counted at (the vendor's "error" power)."""
    alloc = mgr.decider.last_allocation
    total = ZERO
    if alloc is not None:
        for d in alloc.evses:
            if d.lreason is Limit.OFFLINE:
                total = total + d.load
    return total


def site_chain(mgr: ChargingManager, cm_vars: CmVars, unit: int) -> Chain:
    """The chain at the unit id: the site's figures, limits, flags and variables."""
    chain = _new_chain()
    chain.add(COMMON, _common(mgr, unit, "Charging Manager"))
    snapshot = mgr.decider.last_site
    figures = virtual_meter_values(snapshot) if snapshot is not None else {}
    grid_currents, grid_volts = _site_grid(mgr)
    for what, dev_type in SITE_METERS:
        if what == "grid":
            power = snapshot.grid_w if snapshot is not None else None
            values = _meter_values(grid_currents, power, grid_volts)
        elif not dev_type:
            load = _error_load(mgr)
            values = _meter_values(load, load.total() * VOLTAGE / 1000.0)
        elif dev_type in figures:
            currents, power = figures[dev_type]
            shown = currents if dev_type not in (
                "meter_virtual_produced_power", "meter_virtual_surplus") else None
            values = _meter_values(shown, power)
        else:
            values = _meter_values(None, None)
        chain.add(METER, values)
    site = mgr.site
    decider = mgr.decider
    evse_limit = site.max_total_evse_current
    chain.add(LIMITS, {
        "MaxTotCur": site.max_total_current if isinstance(site.max_total_current, int)
        else decider.evaluated_max_total_ma,
        "ResCur": site.reserve_current,
        "Overdraft": decider.overdraft_cur,
        "MaxEvseCur": evse_limit if isinstance(evse_limit, int)
        else decider.evaluated_max_evse_ma,
        "MaxImb": site.max_imbalance_cur,
        "LbEna": 1 if site.lb_enabled else 0,
        "ImbAdd": 1 if site.imbalance_add else 0,
        "TotCurPct": site.max_total_cur_prc,
    })
    chain.add(FLAGS, {f"Flag{i}": 1 if _var_value(cm_vars, f"_flag{i}") else 0
                      for i in range(1, FLAG_COUNT + 1)})
    variables = cm_vars.all()
    chain.add(VARIABLES, {}, [{"Name": v.name, "Val": _var_value(cm_vars, v.name)}
                              for v in variables], [v.name for v in variables])
    chain.close()
    return chain


def _var_value(cm_vars: CmVars, name: str) -> float:
    """A CM variable's value as the last cycle left it (a number set since: that number;
    not defined: 0)."""
    var = cm_vars.get(name)
    if var is None:
        return 0.0
    if var.constant is not None:
        return var.constant
    value = cm_vars.value(name)
    return 0.0 if value is None else value


def _dev_number(dev_id: str) -> int:
    digits = dev_id[1:]
    return int(digits) if digits.isdigit() else 0


def _evse_values(rt: DeviceRuntime) -> dict[str, Value]:
    ev = rt.evse
    assert ev is not None
    r = ev.reading
    state = 6 if (r is None or rt.status.com_err) else int(r.state)
    out: dict[str, Value] = {"EvseState": state, "DevNo": _dev_number(rt.dev_id),
                             "Evt1": 0, "WH": ev.total_energy_wh}
    if r is not None:
        c = r.currents
        out.update(A=_amps(c.l1 + c.l2 + c.l3), AphA=_amps(c.l1), AphB=_amps(c.l2),
                   AphC=_amps(c.l3), W=float(r.power_w), StVnd=state)
    return out


def device_chain(mgr: ChargingManager, unit: int) -> Chain:
    """The chain at unit id + 1: every published EVSE and meter, in configured order."""
    chain = _new_chain()
    chain.add(COMMON, _common(mgr, unit, "Charging Manager devices"))
    for rt in mgr.inventory.devices_in_order():
        cfg = rt.settings
        if not cfg.publish_sunspec or rt.fault:
            continue
        if rt.evse is not None:
            chain.add(EVSE, _evse_values(rt))
        elif rt.dtype.kind.value in ("meter", "virtual"):
            m = rt.meter
            values = _meter_values(None, None) if m is None or rt.status.com_err else (
                _meter_values(m.currents, m.power_w, m.voltages, m.import_wh, m.export_wh))
            values.update(Role=cfg.role, DevNo=-_dev_number(rt.dev_id))
            chain.add(DEVICE_METER, values)
    chain.close()
    return chain
