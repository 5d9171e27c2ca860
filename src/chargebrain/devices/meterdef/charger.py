"""The shape of a charger definition: a meter definition of `mtype` 8 that also says how
to command the wallbox.

A charger definition reads like a meter definition (variables, `rtype` 0 Modbus or 1
HTTP/JSON) and has, besides, a `state` variable whose `map` turns the wallbox's raw state
into a control-pilot state (A..F), and actions: arrays of write steps run when the
charging manager commands it (`set_current`, `enable`, `disable`, `set_phases`,
`wake_up`), now and then to keep its fail-safe fed (`keepalive` every `keepalive_s`), and
once when it is first reached (`init`). A Modbus step writes `value`, a formula, to a
register or a coil; an HTTP step requests an address with `${...}` parts. The formulas
read the command (`current_ma`, `current_a`, `amps` the current in whole A rounded down,
`enabled`, `phases`) and the definition's
variables as last read. The checks that tie these together report the field they concern.

This module must never read text or files; it only declares and checks shapes.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, model_validator

from chargebrain.devices.meterdef.definition import CP_STATES, ValueType, WordOrder
from chargebrain.devices.meterdef.expressions import Expression, Template, parse_expression
from chargebrain.devices.meterdef.model import (
    HttpDefinition,
    ModbusDefinition,
    _order,
    _template,
    json_schema,
)
from chargebrain.shapes import Integer, Lowered, OneOf, Parsed, Shape, problem_at
from chargebrain.shapes import kind as _kind

__all__ = [
    "ACTIONS",
    "CHARGER_SHAPES",
    "COMMAND_NAMES",
    "HttpChargerDefinition",
    "ModbusChargerDefinition",
    "charger_json_schema",
]

#: What an action's formulas read besides the definition's variables.
COMMAND_NAMES = ("current_ma", "current_a", "amps", "enabled", "phases")
ACTIONS = ("set_current", "enable", "disable", "set_phases", "wake_up", "keepalive", "init")
MAX_STEPS = 16


def _value(value: Any) -> Expression:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"must be a formula or a number, not {_kind(value)}")
    return parse_expression(str(value))


class ModbusWriteShape(Shape):
    """One Modbus write: `value` (a formula) to the register (or coil) at `address`."""

    unknown_key: ClassVar[str | None] = "unknown write property {key!r} (known: {known})"

    address: Annotated[int, Integer(0, 0xFFFF)]
    """Register (or coil) number."""
    value: Annotated[Expression, Parsed(_value)]
    """Formula over the command (current_ma, current_a, amps, enabled, phases) and the
    variables."""
    type: Annotated[ValueType, Lowered(ValueType, "type")] = ValueType.UINT16
    """How the value is encoded (not string)."""
    order: Annotated[WordOrder, Parsed(_order)] = WordOrder.HIGH_FIRST
    func: Annotated[int, OneOf(0, 5, 6, 16)] = 0
    """5 coil, 6 one register, 16 registers; 0 the definition's modbus_write."""
    delay_ms: Annotated[int, Integer(0, 60_000)] = 0
    """Milliseconds waited before this write."""

    @model_validator(mode="after")
    def _fits(self) -> ModbusWriteShape:
        if self.type is ValueType.STRING:
            raise problem_at(("type",), "a write cannot be a string", self.type.value)
        if self.func in (5, 6) and self.type.registers != 1:
            raise problem_at(("func",), f"function {self.func} writes one register, but "
                             f"{self.type.value} takes {self.type.registers}", self.func)
        return self


class HttpWriteShape(Shape):
    """One HTTP request: `address` ("[METHOD ]path", `${...}` replaced) and `body`."""

    unknown_key: ClassVar[str | None] = "unknown write property {key!r} (known: {known})"

    address: Annotated[Template, Parsed(_template)]
    body: Annotated[Template | None, Parsed(_template)] = None
    delay_ms: Annotated[int, Integer(0, 60_000)] = 0


ModbusSteps = Annotated[tuple[ModbusWriteShape, ...], Field(max_length=MAX_STEPS)]
HttpSteps = Annotated[tuple[HttpWriteShape, ...], Field(max_length=MAX_STEPS)]


def _check_charger(shape: ModbusDefinition | HttpDefinition, rtype: int) -> None:
    """The checks every charger definition shares."""
    actions: dict[str, tuple[Any, ...]] = {a: getattr(shape, a) for a in ACTIONS}
    mtype = shape.mtype
    if mtype != 8:
        raise problem_at(("mtype",), "a charger definition has mtype 8", mtype)
    state = shape.variables.get("state")
    if state is None:
        raise problem_at((), "a charger definition needs a 'state' variable")
    if state.map is None:
        raise problem_at(("variables", "state"), "'state' needs a 'map' from the raw "
                         "values to the control-pilot states A..F")
    for raw, cp in state.map.items():
        if cp not in CP_STATES:
            raise problem_at(("variables", "state", "map", raw),
                             f"must be one of {', '.join(CP_STATES)}", cp)
    if not actions["set_current"]:
        raise problem_at(("set_current",), "a charger definition needs 'set_current'")
    if not actions["disable"]:
        raise problem_at(("disable",), "a charger definition needs 'disable'")
    known = {n.lower() for n in shape.variables} | set(COMMAND_NAMES)
    for name, steps in actions.items():
        for i, step in enumerate(steps):
            texts: list[tuple[str, Any]] = []
            if rtype == 0:
                texts.append(("value", [step.value.formula]))
            else:
                texts.append(("address", step.address.formulas))
                if step.body is not None:
                    texts.append(("body", step.body.formulas))
            for part, formulas in texts:
                for formula in formulas:
                    for ref in formula.refs:
                        if ref.text.lower() not in known:
                            raise problem_at(
                                (name, i, part),
                                f"{ref.text!r} is neither a variable of this definition "
                                f"nor one of {', '.join(COMMAND_NAMES)}", ref.text)


class _ChargerSettings(Shape):
    """The settings of a charger definition other than its steps."""

    keepalive_s: Annotated[int, Integer(0, 3600)] = 0
    """Seconds between keepalive writes; 0 never."""
    min_charging_current: Annotated[int, Integer(0, 80_000)] = 6000
    """Least current the wallbox takes (mA); a smaller command is raised to it."""
    max_charging_current: Annotated[int, Integer(1000, 80_000)] = 32_000
    """Most current the wallbox takes (mA); a larger command is lowered to it."""


class ModbusChargerDefinition(ModbusDefinition, _ChargerSettings):
    """A wallbox over Modbus (TCP, RTU or ASCII)."""

    set_current: ModbusSteps = ()
    """Writes that set the current limit (current_ma, current_a)."""
    enable: ModbusSteps = ()
    """Writes that allow charging; without them, set_current does."""
    disable: ModbusSteps = ()
    """Writes that stop charging."""
    set_phases: ModbusSteps = ()
    """Writes that switch to `phases` (1 or 3)."""
    wake_up: ModbusSteps = ()
    """Writes that interrupt the control pilot once to wake a sleeping car."""
    keepalive: ModbusSteps = ()
    """Writes repeated every keepalive_s (the wallbox's watchdog or fail-safe)."""
    init: ModbusSteps = ()
    """Writes made once when the wallbox is first reached (and after a lost connection)."""

    @model_validator(mode="after")
    def _charger(self) -> ModbusChargerDefinition:
        _check_charger(self, 0)
        return self


class HttpChargerDefinition(HttpDefinition, _ChargerSettings):
    """A wallbox over HTTP/JSON."""

    set_current: HttpSteps = ()
    enable: HttpSteps = ()
    disable: HttpSteps = ()
    set_phases: HttpSteps = ()
    wake_up: HttpSteps = ()
    keepalive: HttpSteps = ()
    init: HttpSteps = ()

    @model_validator(mode="after")
    def _charger(self) -> HttpChargerDefinition:
        _check_charger(self, 1)
        return self


CHARGER_SHAPES: dict[int, type[ModbusChargerDefinition] | type[HttpChargerDefinition]] = {
    0: ModbusChargerDefinition,
    1: HttpChargerDefinition,
}


def charger_json_schema(rtype: int) -> dict[str, Any]:
    """JSON Schema of a charger definition file (mtype 8) of this rtype (0 or 1)."""
    return json_schema(rtype, CHARGER_SHAPES[rtype])
