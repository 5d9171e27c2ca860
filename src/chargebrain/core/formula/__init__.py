"""The formula language of the charging manager (C-like expressions over device values).

Compile once with `compile_formula(text)`, evaluate many times with
`Formula.evaluate(ctx)` against an `EvalContext` (usually a `DictEvalContext` filled by the
manager each cycle). See docs/formulas.md for the language as implemented.
This package must never do I/O, read a clock, or run Python eval/exec.
"""

from chargebrain.core.formula.cache import (
    compile_formula,
    prepare_formulas,
    prepared,
    validate_formula,
)
from chargebrain.core.formula.compiler import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_TOTAL_LENGTH,
    RESULT_LIMIT,
    Formula,
    compile_uncached,
    parse_name,
    unknown_devices,
)
from chargebrain.core.formula.context import (
    DATE_FIELDS,
    NS_CM,
    NS_DATE,
    NS_DEVICE,
    NS_GM,
    NS_PB,
    NS_SELF,
    DictEvalContext,
    EvalContext,
    OverlayContext,
    VarRef,
    date_fields,
)
from chargebrain.core.formula.errors import FormulaError
from chargebrain.core.formula.nodes import FUNCTIONS
from chargebrain.core.formula.prices import PriceSchedule, PriceSlot, price_extreme

__all__ = [
    "DATE_FIELDS",
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_TOTAL_LENGTH",
    "NS_CM",
    "NS_DATE",
    "NS_DEVICE",
    "NS_GM",
    "NS_PB",
    "NS_SELF",
    "RESULT_LIMIT",
    "DictEvalContext",
    "EvalContext",
    "Formula",
    "FormulaError",
    "OverlayContext",
    "PriceSchedule",
    "PriceSlot",
    "VarRef",
    "compile_formula",
    "compile_uncached",
    "date_fields",
    "parse_name",
    "prepare_formulas",
    "prepared",
    "price_extreme",
    "unknown_devices",
    "validate_formula",
]
