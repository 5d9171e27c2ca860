"""Running a charger definition's write steps: Modbus registers and coils, HTTP requests.

A step's formulas (`value`, the `${...}` parts of an HTTP address or body) are evaluated
in a context of the command (`current_ma`, `current_a`, `amps`, `enabled`, `phases`) and the
definition's numeric variables as last read. A Modbus value is rounded and encoded by
the step's type and word order, written with function code 5 (coil), 6 or 16 (the
definition's `modbus_write` unless the step says); a value that does not fit its type is
a `DeviceError`, never a number that wraps around. An HTTP step's address may start with
a method (`GET` by default). Steps run in order, each after its `delay_ms`.

This module must never decide what to write; it carries out the steps it is given.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence

from chargebrain.devices.defined.decode import encode_value
from chargebrain.devices.defined.reader import DefinitionReader, Value
from chargebrain.devices.errors import DeviceError, ModbusIOError
from chargebrain.devices.meterdef import DefinitionValues, RType, WriteStep

__all__ = ["command_context", "run_steps"]

_METHOD_RE = re.compile(r"(?i)^(GET|POST|PUT)\s+(\S.*)$")


def command_context(values: Mapping[str, Value], current_ma: int, enabled: bool,
                    phases: int) -> DefinitionValues:
    """The formulas' context: the numeric variables and the command."""
    ctx = DefinitionValues({k: v for k, v in values.items() if isinstance(v, float)})
    ctx.set("current_ma", float(current_ma))
    ctx.set("current_a", current_ma / 1000)
    ctx.set("amps", float(current_ma // 1000))
    ctx.set("enabled", 1.0 if enabled else 0.0)
    ctx.set("phases", float(phases))
    return ctx


async def run_steps(reader: DefinitionReader, steps: Sequence[WriteStep],
                    ctx: DefinitionValues, action: str) -> None:
    """Carry out `steps` in order; the first failure is a DeviceError naming the action."""
    for i, step in enumerate(steps):
        if step.delay_ms:
            await asyncio.sleep(step.delay_ms / 1000)
        where = f"{reader.where()}: {action}[{i}]"
        if reader.definition.rtype is RType.MODBUS:
            await _modbus(reader, step, ctx, where)
        else:
            await _http(reader, step, ctx, where)


async def _modbus(reader: DefinitionReader, step: WriteStep, ctx: DefinitionValues,
                  where: str) -> None:
    assert step.register is not None and step.value is not None
    value = step.value.formula.evaluate(ctx)
    if not math.isfinite(value):
        raise DeviceError(f"{where}: the value is not a number")
    func = step.func or reader.definition.modbus_write
    adapter = reader.adapter()
    try:
        if func == 5:
            await adapter.write_coil(reader.unit, step.register, value != 0)
            return
        try:
            words = encode_value(value, step.type, step.order)
        except DeviceError as exc:
            raise DeviceError(f"{where}: {exc}") from None
        if func == 6:
            await adapter.write_register(reader.unit, step.register, words[0])
        else:
            await adapter.write_registers(reader.unit, step.register, words)
    except ModbusIOError as exc:
        raise ModbusIOError(f"{where}: {exc}", exc.exception_code) from exc


async def _http(reader: DefinitionReader, step: WriteStep, ctx: DefinitionValues,
                where: str) -> None:
    assert step.http is not None
    fields = {"address": reader.address, "id": str(reader.unit)}
    text = step.http.render(ctx, fields).strip()
    if not text:
        return  # an address that renders empty is skipped, as an output's
    method = "POST" if step.body is not None else "GET"
    match = _METHOD_RE.match(text)
    if match:
        method, text = match.group(1).upper(), match.group(2).strip()
    body = step.body.render(ctx, fields) if step.body is not None else None
    try:
        await reader.fetch(method, reader.url(text), body)
    except DeviceError as exc:
        raise DeviceError(f"{where}: {exc}") from None
