"""Solar surplus and energy price inputs of the charging rules.

Pure conversions the manager uses each cycle to fill a RuleContext: surplus power from a
grid meter (export plus EVSE consumption), from production minus consumption, or from the
admin's surplus formula (with `CM._org_surplus` = the built-in value); watts to current per
phase; the current price and price level from a fixed price or the `_set_price` /
`_set_price_level` CM variables, and the `_price` / `_price_level` variables formulas see.
This module must never read meters, clocks or tariffs itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from chargebrain.core.formula import NS_CM, EvalContext, Formula, OverlayContext
from chargebrain.core.phases import Phases

NOMINAL_VOLTAGE = 230.0
PRICE_LEVEL_VERY_EXPENSIVE = -2
PRICE_LEVEL_EXPENSIVE = -3
PRICE_LEVEL_NORMAL = -4
PRICE_LEVEL_CHEAP = -5
PRICE_LEVEL_VERY_CHEAP = -6

PRICE_MODEL_FIXED = "fixed"
PRICE_MODEL_CM = "cm"


def surplus_w_from_grid(grid_power_w: float, evse_power_w: float) -> float:
    """Default surplus: -(grid demand) + EVSE consumption. grid_power_w is signed
    (+ import, - export), summed over the phases."""
    return evse_power_w - grid_power_w


def surplus_w_from_balance(production_w: float, consumption_w: float) -> float:
    """Surplus as production minus (non-EVSE) consumption."""
    return production_w - consumption_w


def surplus_w_from_formula(formula: Formula, ctx: EvalContext, org_surplus_w: float) -> float:
    """The admin's surplus formula (surplus_expr), with CM._org_surplus = built-in value."""
    return formula.evaluate(OverlayContext(ctx, {(NS_CM, "", "_org_surplus"): org_surplus_w}))


def power_to_phase_current_ma(power_w: float, phases: int, voltage: float = NOMINAL_VOLTAGE) -> int:
    """Current per phase (mA) carrying `power_w` on `phases` phases (1..3) at `voltage`."""
    n = min(max(phases, 1), 3)
    if not math.isfinite(power_w) or voltage <= 0:
        return 0
    return round(power_w * 1000.0 / (voltage * n))


def surplus_current_ma(surplus_w: float, phases: int, voltage: float = NOMINAL_VOLTAGE) -> int:
    """Surplus per phase (mA) for an EVSE charging on `phases` phases; negative while the
    house imports."""
    return power_to_phase_current_ma(surplus_w, phases, voltage)


def surplus_phases_from_grid(grid_currents: Phases, evse_currents: Phases) -> Phases:
    """Per-phase surplus current: EVSE current minus grid current (grid + = import)."""
    return evse_currents - grid_currents


def resolve_price(
    model: str,
    cm_vars: Mapping[str, float],
    fixed_price: float | None = None,
    fixed_level: int | None = None,
) -> tuple[float | None, int | None]:
    """(price, level) from the configured source; (None, None) when unknown.

    "fixed": the fixed price, level `fixed_level` or -4 (normal).
    "cm": CM variables `_set_price` and `_set_price_level` (names case-insensitive).
    """
    if model == PRICE_MODEL_FIXED:
        if fixed_price is None:
            return None, None
        return float(fixed_price), PRICE_LEVEL_NORMAL if fixed_level is None else fixed_level
    if model == PRICE_MODEL_CM:
        lowered = {k.lower(): v for k, v in cm_vars.items()}
        price = lowered.get("_set_price")
        level = lowered.get("_set_price_level")
        p = float(price) if price is not None and math.isfinite(price) else None
        lv = round(level) if level is not None and math.isfinite(level) else None
        return p, lv
    return None, None


def price_cm_vars(price: float | None, level: int | None) -> dict[str, float]:
    """The `_price` / `_price_level` CM variables to put into the formula context."""
    out: dict[str, float] = {}
    if price is not None:
        out["_price"] = float(price)
    if level is not None:
        out["_price_level"] = float(level)
    return out
