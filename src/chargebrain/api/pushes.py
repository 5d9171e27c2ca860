"""What HTTP-input devices push: set_ajax_meter and set_ajax_evse values to readings.

The values come as query parameters (every value a string, lists as `230,231,229`) or as
a JSON object; both are read leniently (api/params.py). A value no meter can show is a
400 naming the key. This module only turns values into readings; it never touches a
device.
"""

from __future__ import annotations

from typing import Any

from chargebrain.api.errors import ApiError
from chargebrain.api.params import clean, parse_bool, parse_list, parse_number
from chargebrain.core.model import PLAUSIBLE_LIMIT, EvseReading, EvseState, MeterReading
from chargebrain.core.phases import Phases


def _pushed(value: Any, name: str) -> float:
    """A pushed number: no meter shows more than PLAUSIBLE_LIMIT of anything."""
    number = parse_number(value, name)
    if not -PLAUSIBLE_LIMIT <= number <= PLAUSIBLE_LIMIT:
        raise ApiError(400, f"{name}: {number:g} out of range "
                            f"{-PLAUSIBLE_LIMIT:g}..{PLAUSIBLE_LIMIT:g}")
    return number


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    values = [_pushed(v, name) for v in parse_list(value, name)]
    if len(values) != 3:
        raise ApiError(400, f"{name}: three values are required")
    return values[0], values[1], values[2]


def meter_reading(fields: dict[str, Any]) -> MeterReading:
    currents = Phases(0, 0, 0)
    if "current" in fields:
        a, b, c = _triple(fields["current"], "current")
        currents = Phases(round(a), round(b), round(c))
    voltages = (230.0, 230.0, 230.0)
    if "voltage" in fields:
        voltages = _triple(fields["voltage"], "voltage")
    is_va = parse_bool(fields["is_va"], "is_va") if "is_va" in fields else False
    if "power_w" in fields:
        power = _pushed(fields["power_w"], "power_w")
    elif "power_va" in fields:
        power = _pushed(fields["power_va"], "power_va")
        is_va = is_va or "power_w" not in fields
    else:
        power = _pushed(sum(c / 1000.0 * v for c, v in zip(currents, voltages, strict=True)),
                        "power_w (of current and voltage)")
    imp = 0.0
    for key in ("import_wh", "import_vah"):
        if key in fields:
            imp = _pushed(fields[key], key)
    exp = _pushed(fields["export_wh"], "export_wh") if "export_wh" in fields else 0.0
    soc = _pushed(fields["soc"], "soc") if "soc" in fields else None
    if imp < 0 or exp < 0:
        raise ApiError(400, "energy counters cannot be negative")
    model = str(fields.get("model", ""))[:100]
    return MeterReading(power_w=power, currents=currents, voltages=voltages, import_wh=imp,
                        export_wh=exp, model=model, is_va=is_va, soc=soc)


def evse_reading(fields: dict[str, Any]) -> EvseReading:
    state = EvseState.WAITING
    if "state" in fields:
        number = parse_number(fields["state"], "state")
        if number not in (1, 2, 3, 4, 5):
            raise ApiError(400, "state must be 1..5")
        state = EvseState(int(number))
    currents = Phases(0, 0, 0)
    if "current" in fields:
        a, b, c = _triple(fields["current"], "current")
        currents = Phases(round(a), round(b), round(c))
    max_ma = None
    if "max_charging_current" in fields:
        max_ma = round(_pushed(fields["max_charging_current"], "max_charging_current"))
        if max_ma < 0:
            raise ApiError(400, "max_charging_current cannot be negative")
    energy = _pushed(fields["total_energy"], "total_energy") if "total_energy" in fields else 0
    if energy < 0:
        raise ApiError(400, "total_energy cannot be negative")
    power = _pushed(fields["power_w"], "power_w") if "power_w" in fields else sum(
        c / 1000.0 * 230.0 for c in currents)
    return EvseReading(
        state=state, currents=currents, power_w=power, total_energy_wh=energy,
        has_meter="current" in fields or "total_energy" in fields,
        energy_known="total_energy" in fields, max_current_ma=max_ma,
        rfid=clean(str(fields.get("rfid", "")))[:64], model=str(fields.get("model", ""))[:100])
