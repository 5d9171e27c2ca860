"""From a definition text to a `MeterDefinition`, or to one error naming line and field.

Steps: decode (UTF-8, BOM allowed, size bound), read the JSON5 (`json5.py`, which keeps
positions), pick the shape by `rtype`, move the variables (the other keys whose values are
objects) under `variables`, validate with the pydantic model (`model.py`), and build the
immutable definition (`definition.py`). Every problem becomes a `MeterDefinitionError`
whose line comes from the reader's positions; among several problems the first in the
file is reported.

This module must never touch files; `files.py` does that.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from chargebrain.devices.meterdef.charger import ACTIONS, CHARGER_SHAPES
from chargebrain.devices.meterdef.definition import (
    CHARGER_PREFIX,
    DEV_TYPE_PREFIX,
    ChargerControl,
    HttpAddress,
    InputDef,
    MeterDefinition,
    MType,
    OutputDef,
    RtuSettings,
    RType,
    TcpSettings,
    Variable,
    WriteStep,
)
from chargebrain.devices.meterdef.errors import MeterDefinitionError
from chargebrain.devices.meterdef.json5 import Positions, is_blank, read_document
from chargebrain.devices.meterdef.model import (
    DEFINITION_SHAPES,
    DefinitionShape,
    OutputShape,
    VariableShape,
)
from chargebrain.shapes import OneOf, Path, Problem, field_name, kind, problems

__all__ = [
    "MAX_DEFINITION_CHARS",
    "MAX_EXPRESSIONS",
    "MAX_EXPRESSION_CHARS",
    "MAX_VARIABLES",
    "parse_definition",
]

log = logging.getLogger("chargebrain.devices.meterdef")

MAX_DEFINITION_CHARS = 512 * 1024
# Compiling a formula costs about 25 µs plus 5 µs per token (the LALR parse), so the
# expressions of one definition are bounded, keeping an upload's compile time in tens of ms.
MAX_EXPRESSIONS = 256
MAX_EXPRESSION_CHARS = 16 * 1024
MAX_VARIABLES = 256
# Keys of the document that are not variables even when their value is an object.
_GLOBAL_KEYS = frozenset(DefinitionShape.model_fields).union(
    *(shape.model_fields for shape in CHARGER_SHAPES.values())) - {"variables"}


def _decode(text: str | bytes) -> str:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MeterDefinitionError(f"not UTF-8 text: {exc}") from None
    if len(text) > MAX_DEFINITION_CHARS:
        raise MeterDefinitionError(
            f"definition too large ({len(text)} characters, at most {MAX_DEFINITION_CHARS})"
        )
    return text


def _document_path(loc: Path) -> Path:
    """A path in the validated model → the same place in the file (variables are top level)."""
    return loc[1:] if loc[:1] == ("variables",) else loc


def _error(problem: Problem, positions: Positions) -> MeterDefinitionError:
    path = _document_path(problem.path)
    return MeterDefinitionError(
        problem.message, line=positions.line(path), field=field_name(path) or None
    )


def _first(found: list[Problem], positions: Positions) -> MeterDefinitionError:
    """The problem that comes first in the file (those of the whole file before all)."""
    errors = [_error(p, positions) for p in found]
    return min(errors, key=lambda e: -1 if e.line is None else e.line)


def _rtype(doc: dict[str, Any], positions: Positions) -> RType:
    if "rtype" not in doc:
        raise MeterDefinitionError(
            "'rtype' is missing (0 Modbus, 1 HTTP/JSON, 2 MQTT)", field="rtype"
        )
    try:
        return RType(OneOf(0, 1, 2).check(doc["rtype"]))
    except ValueError as exc:
        raise MeterDefinitionError(
            str(exc), line=positions.line(("rtype",)), field="rtype"
        ) from None


def _expression_texts(variables: dict[str, Any], doc: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    for name, value in variables.items():
        text = value.get("expr")
        if isinstance(text, str):
            yield (name, "expr"), text
    for key in ("outputs", "resets"):
        items = doc.get(key)
        for i, item in enumerate(items if isinstance(items, list) else ()):
            for part in ("address", "body"):
                text = item.get(part) if isinstance(item, dict) else None
                if isinstance(text, str) and "${" in text:
                    yield (key, i, part), text


def _check_budget(variables: dict[str, Any], doc: dict[str, Any], positions: Positions) -> None:
    """Refuse more expressions than may be compiled for one definition, before compiling."""
    count = chars = 0
    for path, text in _expression_texts(variables, doc):
        count += 1
        chars += len(text)
        if count > MAX_EXPRESSIONS:
            message = f"more than {MAX_EXPRESSIONS} expressions in one definition"
        elif chars > MAX_EXPRESSION_CHARS:
            message = f"expressions longer than {MAX_EXPRESSION_CHARS} characters in all"
        else:
            continue
        raise MeterDefinitionError(message, line=positions.line(path), field=field_name(path))


def _variable(shape: VariableShape, name: str, line: int | None) -> Variable:
    # A fixed or expr variable has no address, query or regex (they were dropped).
    address = getattr(shape, "address", None)
    return Variable(
        name=name,
        type=shape.type,
        resolution=shape.resolution,
        order=shape.order,
        register=address if isinstance(address, int) else None,
        http=address if isinstance(address, HttpAddress) else None,
        topic=address if isinstance(address, str) else None,
        length=shape.length,
        query=getattr(shape, "query", None),
        regex=getattr(shape, "regex", None),
        fixed=shape.fixed,
        expr=shape.expr,
        once=shape.once,
        reserved=shape.reserved,
        line=line,
        func=getattr(shape, "func", 0),
        mapping=shape.map,
    )


def _steps(items: Any) -> tuple[WriteStep, ...]:
    out: list[WriteStep] = []
    for item in items:
        if hasattr(item, "value"):
            out.append(WriteStep(register=item.address, value=item.value, type=item.type,
                                 order=item.order, func=item.func, delay_ms=item.delay_ms))
        else:
            out.append(WriteStep(http=item.address, body=item.body, delay_ms=item.delay_ms))
    return tuple(out)


def _control(shape: DefinitionShape) -> ChargerControl | None:
    if shape.mtype != 8:
        return None
    steps = {a: _steps(getattr(shape, a)) for a in ACTIONS}
    return ChargerControl(
        **steps,
        keepalive_s=float(getattr(shape, "keepalive_s", 0)),
        min_current_ma=int(getattr(shape, "min_charging_current", 6000)),
        max_current_ma=int(getattr(shape, "max_charging_current", 32_000)),
    )


def _output(shape: OutputShape) -> OutputDef:
    body = shape.body
    return OutputDef(
        address=shape.address.text,
        body=None if body is None else body.text,
        address_template=shape.address,
        body_template=body,
    )


def _build(shape: DefinitionShape, positions: Positions, ignored: list[str]) -> MeterDefinition:
    raw_dev_type = shape.dev_type
    prefix = CHARGER_PREFIX if shape.mtype == 8 else DEV_TYPE_PREFIX
    dev_type = raw_dev_type if raw_dev_type.startswith(prefix) else prefix + raw_dev_type
    inputs = tuple(
        InputDef(
            count=i.count,
            register=i.address if isinstance(i.address, int) else None,
            http=i.address if isinstance(i.address, HttpAddress) else None,
            topic=i.address if isinstance(i.address, str) else None,
            query=i.query,
        )
        for i in shape.inputs
    )
    return MeterDefinition(
        dev_type=dev_type,
        name=(shape.name or "").strip() or raw_dev_type,
        rtype=RType(shape.rtype),
        mtype=MType(shape.mtype),
        manufacturer=shape.manufacturer,
        rtu=RtuSettings(
            silence_period_ms=shape.rtu.silence_period,
            silence_same_slave=shape.rtu.silence_same_slave,
            retries=shape.rtu.retries,
            rcv_timeout_ms=shape.rtu.rcv_timeout,
            baudrate=shape.rtu.baudrate,
            bytesize=shape.rtu.bytesize,
            parity=shape.rtu.parity,
            stopbits=shape.rtu.stopbits,
        ),
        tcp=TcpSettings(
            connect_timeout_ms=shape.tcp.connect_timeout,
            delay_after_connect_ms=shape.tcp.delay_after_connect,
        ),
        modbus_read=shape.modbus_read,
        modbus_read_max_registers=shape.modbus_read_max_registers,
        modbus_write=shape.modbus_write,
        modbus_write_max_registers=shape.modbus_write_max_registers,
        modbus_allow_gaps=shape.modbus_allow_gaps,
        upd_delay_ms=shape.upd_delay,
        delay_accumulated=shape.delay_accumulated,
        ui_addr=shape.ui_addr,
        reserved=shape.reserved,
        variables=tuple(
            _variable(var, name, positions.line((name,))) for name, var in shape.variables.items()
        ),
        expr_order=shape.expression_order(),
        inputs=inputs,
        outputs=tuple(_output(o) for o in shape.outputs),
        resets=tuple(_output(o) for o in shape.resets),
        ignored_properties=tuple(ignored),
        framing=shape.framing,
        charger=_control(shape),
    )


def _definition(text: str) -> MeterDefinition:
    if is_blank(text):
        raise MeterDefinitionError("definition is empty")
    doc, positions = read_document(text)
    if not isinstance(doc, dict):
        raise MeterDefinitionError(
            f"a meter definition is one JSON object, not {kind(doc)}", line=1
        )
    rtype = _rtype(doc, positions)
    shape_type: type[DefinitionShape] = DEFINITION_SHAPES[rtype]
    if doc.get("mtype") == 8:
        if rtype not in CHARGER_SHAPES:
            raise MeterDefinitionError("a charger definition is read over Modbus (rtype 0) "
                                       "or HTTP (rtype 1)", line=positions.line(("rtype",)),
                                       field="rtype")
        shape_type = CHARGER_SHAPES[rtype]
    data: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in doc.items():
        if key in _GLOBAL_KEYS:
            data[key] = value
        elif isinstance(value, dict):
            if len(variables) == MAX_VARIABLES:
                raise MeterDefinitionError(
                    f"more than {MAX_VARIABLES} variables", line=positions.line((key,)), field=key
                )
            variables[key] = value
        else:
            ignored.append(key)
    data["variables"] = variables
    _check_budget(variables, doc, positions)
    try:
        shape = shape_type.model_validate(data)
    except ValidationError as exc:
        raise _first(problems(exc), positions) from None
    if ignored:
        log.info("meter definition %s: ignoring unknown properties %s", shape.dev_type, ignored)
    return _build(shape, positions, ignored)


def parse_definition(text: str | bytes, *, source: str | None = None) -> MeterDefinition:
    """Parse and validate one definition text; raises MeterDefinitionError."""
    try:
        return _definition(_decode(text))
    except MeterDefinitionError as exc:
        if source and not exc.source:
            raise exc.with_source(source) from None
        raise
