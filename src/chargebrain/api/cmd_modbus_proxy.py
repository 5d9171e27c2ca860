"""`modbus_get` / `modbus_set`: any reachable Modbus device's registers, for testing a
device before writing its definition (admin only).

Parameters, as the vendor names them: `addr` (IP:port, `rtu://IP:port` or `ascii://IP:port`
for a serial gateway, or a serial line `COM3,9600,8,N,1` / `/dev/ttyUSB0,38400,8,E,1`,
with `rtu:` or `ascii:` before it for ASCII framing), `func` (3 or 4 to read, 6 or 16 to
write; 3 and 16 by default), `id` (the unit, 1 by default), `reg` (decimal or `0x` hex),
`val` (what to write), `type` (`w` 16-bit, the default, `d` 32-bit, `f` float, `q` 64-bit,
`s` string), `cnt` (registers of a string; values of another type, 1 by default),
`order` (`hl` high word first, the default, or `lh`), and `timeout` (seconds, 0.1..5,
2 by default).

Answers: a read gives the value as a bare JSON number (16-bit unsigned; 32- and 64-bit
signed, as `cmd=modbus`), a JSON string for `s`, an array when `cnt` asks for several
values; a write answers "ok". Bad parameters are a 400 naming the parameter; a device that
answers with an exception, cannot be reached or does not answer in time a 424 (the
request depended on the device, and it failed), the message naming the device, the
registers and what happened. At most four requests run at once (a fifth: 429).
"""

from __future__ import annotations

import asyncio
import math
import struct
from typing import Any

from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.params import clean, parse_int, parse_number
from chargebrain.devices.defined.decode import decode_registers, encode_value
from chargebrain.devices.defined.links import parse_modbus_link, release_adapter, shared_adapter
from chargebrain.devices.errors import DeviceError, ModbusIOError
from chargebrain.devices.meterdef import ValueType, WordOrder

TYPES = {"w": ValueType.UINT16, "d": ValueType.INT32, "f": ValueType.FLOAT,
         "q": ValueType.INT64, "s": ValueType.STRING}
MAX_AT_ONCE = 4
_running = 0


def _params(req: Request, write: bool) -> dict[str, Any]:
    params = req.params
    address = clean(params.get("addr", ""))
    if not address:
        raise ApiError(400, "addr is required (IP:port or a serial port)")
    try:
        link = parse_modbus_link(address)
    except DeviceError as exc:
        raise ApiError(400, f"addr: {exc}") from None
    func = parse_int(params.get("func", "16" if write else "3"), "func")
    if func not in ((6, 16) if write else (3, 4)):
        raise ApiError(400, f"func must be {'6 or 16' if write else '3 or 4'}, not {func}")
    unit = parse_int(params.get("id", "1"), "id")
    if not 0 <= unit <= 255:
        raise ApiError(400, f"id must be 0..255, not {unit}")
    reg_text = clean(params.get("reg", ""))
    if not reg_text:
        raise ApiError(400, "reg is required")
    try:
        reg = int(reg_text, 16) if reg_text.lower().startswith("0x") else int(reg_text)
    except ValueError:
        raise ApiError(400, f"reg: {reg_text!r} is not a register number") from None
    kind = clean(params.get("type", "w")).lower()
    if kind not in TYPES:
        raise ApiError(400, f"type must be one of {', '.join(TYPES)}, not {kind!r}")
    vtype = TYPES[kind]
    cnt = parse_int(params.get("cnt", "1"), "cnt")
    width = cnt if vtype is ValueType.STRING else vtype.registers * cnt
    if cnt < 1 or width > (123 if write else 125):
        raise ApiError(400, f"cnt: {cnt} asks for {width} registers, more than one request "
                            "may carry")
    if not 0 <= reg <= 0xFFFF or reg + width > 0x10000:
        raise ApiError(400, f"reg: {reg} is out of range 0..65535")
    order_text = clean(params.get("order", "hl")).lower()
    if order_text not in ("hl", "lh"):
        raise ApiError(400, f"order must be hl or lh, not {order_text!r}")
    if write and func == 6 and width != 1:
        raise ApiError(400, "func 6 writes one register; use func 16")
    timeout = parse_number(params.get("timeout", "2"), "timeout")
    if not 0.1 <= timeout <= 5:
        raise ApiError(400, "timeout must be 0.1..5 seconds")
    return {"link": link, "func": func, "unit": unit, "reg": reg, "vtype": vtype, "cnt": cnt,
            "width": width, "order": WordOrder(order_text), "timeout": timeout,
            "where": f"{link} unit {unit} register {reg}"}


def _words(req: Request, a: dict[str, Any]) -> list[int]:
    text = req.params.get("val")
    if text is None:
        raise ApiError(400, "val is required")
    vtype: ValueType = a["vtype"]
    if vtype is ValueType.STRING:
        data = str(text).encode("latin-1", "replace")[: 2 * a["cnt"]].ljust(2 * a["cnt"], b"\0")
        return list(struct.unpack(f">{a['cnt']}H", data))
    value = parse_number(text, "val")
    if vtype is ValueType.UINT16 and -32768 <= value < 0:
        vtype = ValueType.INT16  # a negative 16-bit value is written as its two's complement
    try:
        return encode_value(value, vtype, a["order"])
    except DeviceError as exc:
        raise ApiError(400, f"val: {exc}") from None


async def _run(a: dict[str, Any], words: list[int] | None) -> list[int]:
    global _running
    if _running >= MAX_AT_ONCE:
        raise ApiError(429, "too many Modbus requests at once; try again")
    _running += 1
    try:
        adapter = shared_adapter(a["link"], a["timeout"])
    except ValueError as exc:
        _running -= 1
        raise ApiError(400, f"addr: {exc}") from None
    try:
        if words is None:
            return await adapter.read(a["unit"], a["reg"], a["width"], function_code=a["func"],
                                      timeout=a["timeout"])
        if a["func"] == 6:
            await adapter.write_register(a["unit"], a["reg"], words[0], timeout=a["timeout"])
        else:
            await adapter.write_registers(a["unit"], a["reg"], words, timeout=a["timeout"])
        return words
    except ModbusIOError as exc:
        raise ApiError(424, f"{a['where']}: {exc}") from None
    finally:
        _running -= 1
        await asyncio.shield(release_adapter(adapter))


def _value(words: list[int], a: dict[str, Any]) -> Any:
    vtype: ValueType = a["vtype"]
    if vtype is ValueType.STRING:
        _, text = decode_registers(words, vtype, a["order"])
        return text
    size = vtype.registers
    out: list[Any] = []
    for i in range(a["cnt"]):
        _, value = decode_registers(words[i * size : (i + 1) * size], vtype, a["order"])
        assert isinstance(value, float)
        if vtype is ValueType.FLOAT:
            out.append(value if math.isfinite(value) else None)  # JSON has no NaN
        else:
            out.append(int(value))
    return out[0] if a["cnt"] == 1 else out


@command("modbus_get", Permission.ADMIN, "Read registers of any Modbus device (addr, func, id, "
         "reg, type, cnt, order)")
async def modbus_get(req: Request) -> Any:
    a = _params(req, write=False)
    return _value(await _run(a, None), a)


@command("modbus_set", Permission.ADMIN, "Write registers of any Modbus device (addr, func, id, "
         "reg, val, type, cnt, order)")
async def modbus_set(req: Request) -> Any:
    a = _params(req, write=True)
    await _run(a, _words(req, a))
    return "ok"
