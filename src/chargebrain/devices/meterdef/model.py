"""The shape of a meter definition file, declared once as pydantic models.

One model per kind of file (`ModbusDefinition`, `HttpDefinition`, `MqttDefinition`, chosen
by `rtype`) with the global properties, the `rtu`/`tcp` settings, the variables, inputs
and outputs as fields. Field types say what a value may be (`Integer(0, 0xFFFF)`, an HTTP
address, a query, a formula), so validation, error messages naming the field, and the JSON
Schema of the format all come from here. Rules that tie several fields together (a Modbus
string needs a length, expressions may only read the definition's own variables, at most
32 input bits) are model validators that report the field they concern.

The definition's variables are its other keys whose values are objects; `parse.py` puts
them under `variables` before validating, and turns the result into a `MeterDefinition`.

This module must never read text or files; it only declares and checks shapes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import ConfigDict, Field, model_validator

from chargebrain.devices.meterdef.definition import (
    MAX_INPUT_BITS,
    MAX_OUTPUTS,
    MODBUS_MAX_READ,
    HttpAddress,
    ValueType,
    WordOrder,
)
from chargebrain.devices.meterdef.errors import MeterDefinitionError
from chargebrain.devices.meterdef.expressions import (
    Expression,
    ExpressionProblem,
    Template,
    expression_order,
    parse_expression,
    parse_template,
)
from chargebrain.devices.meterdef.query import Query, parse_query
from chargebrain.devices.meterdef.values import mapping as _map
from chargebrain.devices.meterdef.values import word as _word
from chargebrain.shapes import (
    Boolean,
    Integer,
    Lowered,
    Number,
    OneOf,
    Parsed,
    Shape,
    Text,
    problem_at,
)
from chargebrain.shapes import kind as _kind

__all__ = [
    "DEFINITION_SHAPES",
    "DefinitionShape",
    "HttpDefinition",
    "ModbusDefinition",
    "MqttDefinition",
    "VariableShape",
    "json_schema",
]

_DEV_TYPE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HTTP_METHOD_RE = re.compile(r"(?i)^(GET|POST|PUT)\s+(\S.*)$")


# -- values that are parsed, not just checked ------------------------------------------------


def _dev_type(value: Any) -> str:
    if not isinstance(value, str) or not _DEV_TYPE_RE.fullmatch(value):
        raise ValueError("must be 1..64 characters of letters, digits, '_' or '-'")
    return value


def _http_address(value: Any) -> HttpAddress:
    if not isinstance(value, str) or not value.strip():
        raise ValueError('an HTTP address must be a path like "/status" or "GET /emeter/0"')
    text = value.strip()
    method = "GET"
    match = _HTTP_METHOD_RE.match(text)
    if match:
        method, text = match.group(1).upper(), match.group(2).strip()
    if not (text.startswith("/") or re.match(r"(?i)https?://", text)):
        raise ValueError(
            f"HTTP address {value!r} must start with '/' (optionally after GET or POST) "
            "or be an http:// URL"
        )
    return HttpAddress(method=method, path=text)


def _topic(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("an MQTT address must be a topic string")
    return value.strip()


def _query(value: Any) -> Query:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_kind(value)}")
    try:
        return parse_query(value)
    except MeterDefinitionError as exc:
        raise ValueError(exc.message) from None


def _regex(value: Any) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_kind(value)}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"bad regular expression: {exc}") from None
    except (RecursionError, OverflowError):  # the compiler recurses per group, for one
        raise ValueError("bad regular expression: nested too deeply or too large") from None


def _fixed(value: Any) -> str | float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"must be a string or a number, not {_kind(value)}")
    return value if isinstance(value, str) else float(value)


def _expr(value: Any) -> Expression:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_kind(value)}")
    return parse_expression(value)


def _order(value: Any) -> WordOrder:
    if isinstance(value, str) and value.lower() in ("hl", "lh"):
        return WordOrder(value.lower())
    raise ValueError(f'order must be "hl" or "lh", not {value!r}')


def _reserved_value(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return int(value)


def _reserved(value: Any) -> tuple[int, ...]:
    """A list of raw values, or one raw value alone."""
    items = value if isinstance(value, list) else [value]
    out: list[int] = []
    for i, item in enumerate(items):
        number = _reserved_value(item)
        if number is None:
            message = f"reserved values must be integers, not {_kind(item)}"
            if isinstance(value, list):
                raise problem_at((i,), message, item)
            raise ValueError(message)
        out.append(number)
    return tuple(out)


def _template(value: Any) -> Template:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_kind(value)}")
    return parse_template(value)


def _only_http(key: str) -> Parsed:
    def refuse(_value: Any) -> None:
        raise ValueError(f"'{key}' is for HTTP and MQTT meters only")

    return Parsed(refuse, "null")


Reserved = Annotated[tuple[int, ...], Parsed(_reserved, "array")]


# -- settings, inputs, outputs -----------------------------------------------------------


class RtuShape(Shape):
    """Serial line timing (validated; serial lines are not read, use a TCP gateway)."""

    model_config = ConfigDict(extra="ignore")
    unknown_key: ClassVar[str | None] = None  # as global properties: newer keys are ignored

    silence_period: Annotated[int, Integer(0, 60_000)] = 0
    """Milliseconds of silence before a request."""
    silence_same_slave: Annotated[bool, Boolean()] = False
    """Keep the silence also between requests to the same unit."""
    retries: Annotated[int, Integer(0, 100)] = 0
    rcv_timeout: Annotated[int, Integer(0, 600_000)] = 0
    """Milliseconds to wait for an answer."""
    baudrate: Annotated[int, Integer(300, 4_000_000)] = 9600
    """Serial line speed when the device's address gives none."""
    bytesize: Annotated[int, OneOf(7, 8)] = 8
    parity: Annotated[str, Parsed(lambda v: _word(v, "N", "E", "O"))] = "N"
    stopbits: Annotated[int, OneOf(1, 2)] = 1


class TcpShape(Shape):
    """TCP connection timing (Modbus TCP and HTTP)."""

    model_config = ConfigDict(extra="ignore")
    unknown_key: ClassVar[str | None] = None

    connect_timeout: Annotated[int, Integer(0, 600_000)] = 0
    """Milliseconds to connect; 0: the driver's timeout."""
    delay_after_connect: Annotated[int, Integer(0, 60_000)] = 0
    """Milliseconds to wait after connecting before the first Modbus request."""


class OutputShape(Shape):
    """An output or reset: `address` (and `body`) with `${...}` expressions."""

    address: Annotated[Template, Parsed(_template)] = Field(
        default_factory=lambda: Template("", ())
    )
    """`[METHOD ]URL`; `${expr}`, `${if expr`yes`no}`, `${address}`, `${id}` are replaced."""
    body: Annotated[Template | None, Parsed(_template)] = None
    """The request body, with the same replacements."""


Outputs = Annotated[tuple[OutputShape, ...], Field(max_length=MAX_OUTPUTS)]


class ModbusInput(Shape):
    unknown_key: ClassVar[str | None] = "unknown input property {key!r}"
    address: Annotated[int, Integer(0, 0xFFFF)]
    count: Annotated[int, Integer(1, 16)] = 1
    query: Annotated[None, _only_http("query")] = None


class HttpInput(Shape):
    unknown_key: ClassVar[str | None] = "unknown input property {key!r}"
    address: Annotated[HttpAddress, Parsed(_http_address)]
    count: Annotated[int, Integer(1, MAX_INPUT_BITS)] = 1
    query: Annotated[Query | None, Parsed(_query)] = None


class MqttInput(Shape):
    unknown_key: ClassVar[str | None] = "unknown input property {key!r}"
    address: Annotated[str, Parsed(_topic)]
    count: Annotated[int, Integer(1, MAX_INPUT_BITS)] = 1
    query: Annotated[Query | None, Parsed(_query)] = None


# -- variables -------------------------------------------------------------------------------


class VariableShape(Shape):
    """What every variable may carry; the subclasses add where it is read from."""

    unknown_key: ClassVar[str | None] = "unknown variable property {key!r} (known: {known})"

    fixed: Annotated[str | float | None, Parsed(_fixed, "string")] = None
    """A constant (string or number); the variable is not read."""
    expr: Annotated[Expression | None, Parsed(_expr)] = None
    """A formula over this definition's other variables; the variable is not read."""
    type: Annotated[ValueType, Lowered(ValueType, "type")] = ValueType.INT16
    """How the raw value is encoded (int16 for Modbus, a number for HTTP by default)."""
    resolution: Annotated[float, Number(nonzero=True)] = 1.0
    """Multiplier applied to the value; negative inverts."""
    once: Annotated[bool, Boolean()] = False
    """Read only on the first successful reading."""
    order: Annotated[WordOrder, Parsed(_order)] = WordOrder.HIGH_FIRST
    """"hl": high word first, "lh": low word first."""
    length: Annotated[int | None, Integer(1, 0xFFFF)] = None
    """Strings: registers; numbers: 2 formats as a.b, 4 as a.b.c.d."""
    reserved: Reserved | None = None
    """Raw values that read as 0 (replaces the definition's list)."""
    map: Annotated[dict[str, str | float] | None, Parsed(_map, "object")] = None
    """Raw value (decimal number or string) -> value; a raw value not listed is an error."""

    @model_validator(mode="before")
    @classmethod
    def _computed_values_are_not_read(cls, data: Any) -> Any:
        # `fixed` and `expr` variables are never read: where they would be read from is
        # ignored, as the vendor does (its own example gives `fixed` an `address`).
        if isinstance(data, dict) and ("fixed" in data or "expr" in data):
            return {k: v for k, v in data.items() if k not in ("address", "query", "regex")}
        return data

    @model_validator(mode="after")
    def _length_formats_numbers(self) -> VariableShape:
        number = self.type is not ValueType.STRING
        if self.length is not None and number and self.length not in (2, 4):
            raise problem_at(
                ("length",),
                "for numbers, length formats a version and must be 2 (a.b) or 4 (a.b.c.d)",
                self.length,
            )
        if self.fixed is None and self.expr is None and getattr(self, "address", None) is None:
            raise problem_at((), "needs an 'address' (or 'fixed' or 'expr')")
        return self

    @property
    def is_text(self) -> bool:
        if self.fixed is not None:
            return isinstance(self.fixed, str)
        if self.expr is not None:
            return False
        return self.type is ValueType.STRING or self.length is not None


class ModbusVariable(VariableShape):
    """A variable of a Modbus meter: read from registers."""

    address: Annotated[int | None, Integer(0, 0xFFFF)] = None
    """Register number."""
    func: Annotated[int, OneOf(0, 1, 2, 3, 4)] = 0
    """Read function code: 1 coil, 2 discrete input, 3 holding, 4 input; 0 the definition's."""
    query: Annotated[None, _only_http("query")] = None
    regex: Annotated[None, _only_http("regex")] = None

    @property
    def register_count(self) -> int:
        if self.type is ValueType.STRING:
            return self.length or 1
        return self.type.registers

    @model_validator(mode="after")
    def _registers_fit(self) -> ModbusVariable:
        if self.address is None or self.fixed is not None or self.expr is not None:
            return self
        if self.type is ValueType.STRING and self.length is None:
            raise problem_at((), "a Modbus string needs 'length' (number of registers)")
        if self.address + self.register_count > 0x10000:
            raise problem_at(("address",), "registers run past 65535", self.address)
        return self


class HttpVariable(VariableShape):
    """A variable of an HTTP meter: taken from an answer by query and/or regex."""

    type: Annotated[ValueType, Lowered(ValueType, "type")] = ValueType.FLOAT
    address: Annotated[HttpAddress | None, Parsed(_http_address)] = None
    """`/path`, `GET /path`, `POST /path` or an http:// URL."""
    query: Annotated[Query | None, Parsed(_query)] = None
    """JSON query selecting the value, e.g. `emeters[0].power`."""
    regex: Annotated[re.Pattern[str] | None, Parsed(_regex)] = None
    """Regular expression; the value is group 1, or the whole match."""


class MqttVariable(VariableShape):
    """A variable of an MQTT meter (parsed, not read)."""

    type: Annotated[ValueType, Lowered(ValueType, "type")] = ValueType.FLOAT
    address: Annotated[str | None, Parsed(_topic)] = None
    query: Annotated[Query | None, Parsed(_query)] = None
    regex: Annotated[re.Pattern[str] | None, Parsed(_regex)] = None


# -- the definition ----------------------------------------------------------------------


class DefinitionShape(Shape):
    """The global properties every definition has; see the subclasses for the rest."""

    rtype: Annotated[int, OneOf(0, 1, 2)]
    """0 Modbus TCP, 1 HTTP/JSON, 2 MQTT."""
    dev_type: Annotated[str, Parsed(_dev_type)]
    """Identifier; `meter_` is prefixed unless already there."""
    name: Annotated[str | None, Text()] = None
    """Display name (default: the dev_type as written)."""
    manufacturer: Annotated[str, Text()] = ""
    mtype: Annotated[int, OneOf(0, 1, 2, 4, 8)] = 1
    """0 other, 1 meter, 2 inverter, 4 battery storage, 8 charging station (docs/chargers.md)."""
    framing: Annotated[str, Parsed(lambda v: _word(v, "rtu", "ascii"))] = "rtu"
    """Modbus framing on a serial line."""
    rtu: RtuShape = Field(default_factory=RtuShape)
    tcp: TcpShape = Field(default_factory=TcpShape)
    modbus_read: Annotated[int, OneOf(3, 4)] = 3
    """Read function code: 3 holding, 4 input registers."""
    modbus_read_max_registers: Annotated[int, Integer(1, 65535)] = MODBUS_MAX_READ
    """Registers per read request (capped at 125, the protocol's limit)."""
    modbus_write: Annotated[int, OneOf(6, 16)] = 16
    modbus_write_max_registers: Annotated[int, Integer(1, 65535)] = 123
    modbus_allow_gaps: Annotated[bool, Boolean()] = False
    """One request may span registers no variable uses."""
    upd_delay: Annotated[int, Integer(0, 3_600_000)] = 0
    """Least milliseconds between two readings."""
    delay_accumulated: Annotated[bool, Boolean()] = False
    """Read import_wh and export_wh at most every 3 s."""
    ui_addr: Annotated[str, Text()] = ""
    """The meter's web UI address, if different."""
    reserved: Reserved = ()
    """Raw values that read as 0, for variables without their own list."""
    outputs: Outputs = ()
    resets: Outputs = ()
    """Outputs written when the device is deactivated."""

    # Declared by each subclass with its own variable and input shapes.
    variables: Any
    inputs: Any

    @property
    def read_max_registers(self) -> int:
        return min(self.modbus_read_max_registers, MODBUS_MAX_READ)

    def expression_order(self) -> tuple[str, ...]:
        """Expression variables, dependencies first; raises a problem at the `expr`."""
        if not any(var.expr is not None for var in self.variables.values()):
            return ()
        named = [_Named(name, var) for name, var in self.variables.items()]
        try:
            return expression_order(named)
        except ExpressionProblem as exc:
            value = self.variables[exc.name].expr
            raise problem_at(("variables", exc.name, "expr"), exc.message, value) from None

    @model_validator(mode="after")
    def _fits_together(self) -> DefinitionShape:
        limit = self.read_max_registers
        for name, var in self.variables.items():
            if var.length is not None and var.length > limit:
                path = ("variables", name, "length")
                raise problem_at(path, f"{var.length} is out of range 1..{limit}", var.length)
            count = getattr(var, "register_count", 0)
            if var.address is not None and count > limit:  # (computed ones have no address)
                raise problem_at(
                    ("variables", name),
                    f"spans {count} registers, more than the {limit} one request may read",
                )
        if sum(i.count for i in self.inputs) > MAX_INPUT_BITS:
            raise problem_at(("inputs",), f"more than {MAX_INPUT_BITS} input bits")
        self.expression_order()
        return self


class _Named:
    """A variable as `expression_order` sees it."""

    __slots__ = ("expr", "is_text", "name")

    def __init__(self, name: str, var: VariableShape) -> None:
        self.name = name
        self.expr = var.expr
        self.is_text = var.is_text


class ModbusDefinition(DefinitionShape):
    variables: dict[str, ModbusVariable] = Field(default_factory=dict)
    inputs: tuple[ModbusInput, ...] = ()


class HttpDefinition(DefinitionShape):
    variables: dict[str, HttpVariable] = Field(default_factory=dict)
    inputs: tuple[HttpInput, ...] = ()


class MqttDefinition(DefinitionShape):
    variables: dict[str, MqttVariable] = Field(default_factory=dict)
    inputs: tuple[MqttInput, ...] = ()


def json_schema(rtype: int, shape: type[DefinitionShape] | None = None) -> dict[str, Any]:
    """JSON Schema of a definition file of this rtype (or of `shape`: a charger's), for
    forms and editors.

    In the file, the variables are the definition's other keys (other values are ignored),
    so the model's `variables` property becomes `additionalProperties`.
    """
    schema = (shape or DEFINITION_SHAPES[rtype]).model_json_schema()
    variables = schema["properties"].pop("variables")
    schema["additionalProperties"] = {
        "anyOf": [variables["additionalProperties"], {"not": {"type": "object"}}]
    }
    return schema


DEFINITION_SHAPES: dict[int, type[DefinitionShape]] = {
    0: ModbusDefinition,
    1: HttpDefinition,
    2: MqttDefinition,
}
