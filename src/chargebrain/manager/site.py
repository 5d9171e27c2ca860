"""Site-level figures of a cycle and the meters the manager computes from them.

Virtual meters (consumed, produced, available and remaining EVSE power, EVSE power,
surplus, grid demand) show the site snapshot; an expression meter's formula gives its
power, and its energy is integrated from that. Pure: no I/O, time comes in as `dt`.
"""

from __future__ import annotations

from dataclasses import dataclass

from chargebrain.core.formula import DictEvalContext, Formula
from chargebrain.core.model import MeterReading
from chargebrain.core.phases import ZERO, Phases

VOLTAGE = 230.0


@dataclass(frozen=True)
class SiteSnapshot:
    """Site-level figures of the last cycle, for the API and the virtual meters."""

    available: Phases
    allocated: Phases
    consumed: Phases
    non_evse_load: Phases
    overdraft_applied_ma: int
    grid_w: float
    consumed_w: float
    produced_w: float
    surplus_w: float
    evse_power_w: float


def virtual_meter_values(s: SiteSnapshot) -> dict[str, tuple[Phases, float]]:
    """(currents, power W) of every virtual meter type for a site snapshot."""
    v = VOLTAGE / 1000.0
    available = s.available.clamp_low(0)
    remaining = (s.available - s.allocated).clamp_low(0)
    return {
        "meter_virtual_consumed_power": (s.non_evse_load.clamp_low(0), s.consumed_w),
        "meter_virtual_produced_power": (ZERO, s.produced_w),
        "meter_virtual_available_evse_power": (available, available.total() * v),
        "meter_virtual_remaining_evse_power": (remaining, remaining.total() * v),
        "meter_virtual_evse_power": (s.consumed, s.evse_power_w),
        "meter_virtual_surplus": (ZERO, s.surplus_w),
        "meter_virtual_grid_demand": (ZERO, s.grid_w),
    }


def expression_reading(
    formula: Formula, prev: MeterReading | None, ctx: DictEvalContext, dev_id: str, dt: float
) -> MeterReading:
    """The next reading of an expression meter whose formula gives its power."""
    prev = prev or MeterReading()
    local = ctx.derive(self_device=dev_id, self_values={
        "dt": dt, "power_w": prev.power_w, "import_wh": prev.import_wh,
        "export_wh": prev.export_wh})
    value = formula.evaluate(local)
    imp = prev.import_wh + max(0.0, value) * dt / 3600.0
    exp = prev.export_wh + max(0.0, -value) * dt / 3600.0
    amps = round(value / VOLTAGE * 1000)
    return MeterReading(power_w=value, currents=Phases.on_mask(amps, 1),
                        import_wh=imp, export_wh=exp, model="Expression")
