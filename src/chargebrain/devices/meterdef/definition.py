"""What a loaded meter definition is: the immutable values the driver reads a meter with.

`MeterDefinition` and its parts (`Variable`, `InputDef`, `OutputDef`, the settings and the
small enums) are what `parse_definition` produces from a file once it has been checked;
the file's own shape (which keys, which values) is declared in `model.py`. Here every
value is already in the form the driver needs: a Modbus register number, an HTTP method
and path, a compiled query, regex and formula.

This module must never parse text or validate input: it only holds checked values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from chargebrain.devices.meterdef.expressions import Expression, Template
from chargebrain.devices.meterdef.query import Query

__all__ = [
    "CHARGER_PREFIX",
    "CP_STATES",
    "DEV_TYPE_PREFIX",
    "KNOWN_VARIABLES",
    "MAX_INPUT_BITS",
    "MAX_OUTPUTS",
    "MODBUS_MAX_READ",
    "ChargerControl",
    "HttpAddress",
    "InputDef",
    "MType",
    "MeterDefinition",
    "OutputDef",
    "RType",
    "RtuSettings",
    "TcpSettings",
    "ValueType",
    "Variable",
    "WordOrder",
    "WriteStep",
]

DEV_TYPE_PREFIX = "meter_"
CHARGER_PREFIX = "evse_"  # the dev_type prefix of a charger definition (mtype 8)
#: The control-pilot states a charger's `state` variable maps its raw values to.
CP_STATES = ("A", "B", "C", "D", "E", "F")
MODBUS_MAX_READ = 125  # registers per FC3/FC4 request, by the Modbus protocol
MAX_INPUT_BITS = 32
MAX_OUTPUTS = 32

KNOWN_VARIABLES: frozenset[str] = frozenset(
    {
        "type_designation",
        "version",
        "firmware_version",
        "serial",
        "voltage_l1",
        "voltage_l2",
        "voltage_l3",
        "current_l1",
        "current_l2",
        "current_l3",
        "power_w",
        "power_var",
        "power_va",
        "power_w_l1",
        "power_w_l2",
        "power_w_l3",
        "power_var_l1",
        "power_var_l2",
        "power_var_l3",
        "import_wh",
        "export_wh",
        "soc",
    }
)


class RType(IntEnum):
    """How the meter is read."""

    MODBUS = 0
    HTTP = 1
    MQTT = 2


class MType(IntEnum):
    """What the device is."""

    OTHER = 0
    METER = 1
    INVERTER = 2
    BATTERY = 4
    CHARGER = 8  # a wallbox: read and commanded (chargebrain's extension of the format)


class ValueType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT = "float"
    DOUBLE = "double"  # 64-bit IEEE 754
    INT64 = "int64"
    UINT64 = "uint64"
    STRING = "string"

    @property
    def registers(self) -> int:
        """Registers one value occupies (strings: see Variable.register_count)."""
        return _REGISTERS.get(self.value, 4)

    @property
    def signed(self) -> bool:
        return self in (ValueType.INT16, ValueType.INT32, ValueType.INT64, ValueType.FLOAT,
                        ValueType.DOUBLE)


_REGISTERS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float": 2}


class WordOrder(StrEnum):
    HIGH_FIRST = "hl"
    LOW_FIRST = "lh"


@dataclass(frozen=True, slots=True)
class RtuSettings:
    silence_period_ms: int = 0
    silence_same_slave: bool = False
    retries: int = 0
    rcv_timeout_ms: int = 0
    # the serial line's settings when the device's address does not give them
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1


@dataclass(frozen=True, slots=True)
class TcpSettings:
    connect_timeout_ms: int = 0  # 0 = the driver's timeout
    delay_after_connect_ms: int = 0


@dataclass(frozen=True, slots=True)
class HttpAddress:
    """`GET /status` → method GET, path /status. `path` may also be an absolute URL."""

    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Variable:
    """One named value of a meter and where it comes from (fixed, expr or the device)."""

    name: str
    type: ValueType = ValueType.INT16
    resolution: float = 1.0
    order: WordOrder = WordOrder.HIGH_FIRST
    register: int | None = None  # Modbus register number (rtype 0)
    http: HttpAddress | None = None  # HTTP request (rtype 1)
    topic: str | None = None  # MQTT topic (rtype 2)
    length: int | None = None
    query: Query | None = None
    regex: re.Pattern[str] | None = None
    fixed: str | float | None = None
    expr: Expression | None = None
    once: bool = False
    reserved: tuple[int, ...] | None = None  # None: the definition's global list applies
    line: int | None = None
    func: int = 0  # Modbus read function code for this variable; 0: the definition's
    # raw value (an integer as text, or the string) -> value; None: no mapping
    mapping: Mapping[str, str | float] | None = None

    @property
    def is_read(self) -> bool:
        """True if the value comes from the device (not `fixed`, not `expr`)."""
        return self.fixed is None and self.expr is None

    @property
    def is_text(self) -> bool:
        """True if the value is a string (a string type, a text `fixed`, or version format)."""
        if self.fixed is not None:
            return isinstance(self.fixed, str)
        if self.expr is not None:
            return False
        return self.type is ValueType.STRING or self.length is not None

    @property
    def register_count(self) -> int:
        if self.type is ValueType.STRING:
            return self.length or 1
        return self.type.registers

    @property
    def shown_in_tile(self) -> bool:
        return self.name.startswith("*")

    @property
    def is_cm_variable(self) -> bool:
        return self.name[:3].upper() == "CM."


@dataclass(frozen=True, slots=True)
class InputDef:
    """A group of `count` digital inputs (bits, least significant first)."""

    count: int = 1
    register: int | None = None
    http: HttpAddress | None = None
    topic: str | None = None
    query: Query | None = None


@dataclass(frozen=True, slots=True)
class OutputDef:
    """An output (or reset): kept for the output writer, not used for reading.

    `address` and `body` are the texts as written; `address_template` and `body_template`
    hold their `${...}` expressions compiled.
    """

    address: str
    body: str | None = None
    address_template: Template | None = None
    body_template: Template | None = None


@dataclass(frozen=True, slots=True)
class WriteStep:
    """One write of a charger action: a Modbus register (or coil) set to `value`, a
    formula over the command and the last reading, or an HTTP request (`http`, `body`)."""

    register: int | None = None
    value: Expression | None = None
    type: ValueType = ValueType.UINT16
    order: WordOrder = WordOrder.HIGH_FIRST
    func: int = 0  # 5 (coil), 6 or 16; 0: the definition's modbus_write
    http: Template | None = None  # "[METHOD ]path" with ${...}
    body: Template | None = None
    delay_ms: int = 0  # waited before this step


@dataclass(frozen=True, slots=True)
class ChargerControl:
    """How a charger definition commands the wallbox: the steps of each action."""

    set_current: tuple[WriteStep, ...]
    disable: tuple[WriteStep, ...]
    enable: tuple[WriteStep, ...] = ()
    set_phases: tuple[WriteStep, ...] = ()
    wake_up: tuple[WriteStep, ...] = ()
    keepalive: tuple[WriteStep, ...] = ()
    init: tuple[WriteStep, ...] = ()
    keepalive_s: float = 0.0  # run `keepalive` at least this often (0: never)
    min_current_ma: int = 6000
    max_current_ma: int = 32000


@dataclass(frozen=True, slots=True)
class MeterDefinition:
    dev_type: str
    name: str
    rtype: RType
    mtype: MType = MType.METER
    manufacturer: str = ""
    rtu: RtuSettings = field(default_factory=RtuSettings)
    tcp: TcpSettings = field(default_factory=TcpSettings)
    modbus_read: int = 3
    modbus_read_max_registers: int = MODBUS_MAX_READ
    modbus_write: int = 16
    modbus_write_max_registers: int = 123
    modbus_allow_gaps: bool = False
    upd_delay_ms: int = 0
    delay_accumulated: bool = False
    ui_addr: str = ""
    reserved: tuple[int, ...] = ()
    variables: tuple[Variable, ...] = ()
    expr_order: tuple[str, ...] = ()  # names of expr variables, dependencies first
    inputs: tuple[InputDef, ...] = ()
    outputs: tuple[OutputDef, ...] = ()
    resets: tuple[OutputDef, ...] = ()
    ignored_properties: tuple[str, ...] = ()
    framing: str = "rtu"  # Modbus on a serial line: "rtu" or "ascii"
    charger: ChargerControl | None = None  # set for a charger definition (mtype 8)

    @property
    def is_charger(self) -> bool:
        return self.charger is not None

    def variable(self, name: str) -> Variable | None:
        for var in self.variables:
            if var.name == name:
                return var
        return None

    @property
    def variable_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    @property
    def read_max_registers(self) -> int:
        """Registers per read request, capped at the protocol limit of 125."""
        return min(self.modbus_read_max_registers, MODBUS_MAX_READ)

    @property
    def input_count(self) -> int:
        return sum(i.count for i in self.inputs)
