"""`cmd=modbus`: the controller's registers over HTTP, exactly as the documentation shows.

A thin view of the register banks: `read=ADDR[d|q|s]`, `count=N`, `read=all`,
`write=ADDR[d|q|s]` with `value=V` or `values=[…]` (several `write=` pairs in one request
are one change). Answers: a bare JSON number, a JSON string, a JSON array, an object keyed
by address plus suffix, or "ok".
"""

from __future__ import annotations

import functools
import json
import logging
import struct
from typing import Any

from aiohttp import web

from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.api.params import clean, parse_int, parse_list
from chargebrain.powerbrain.bank import RegisterBank, RegisterError
from chargebrain.powerbrain.registers import (
    FIRST_ADDRESS,
    LAST_ADDRESS,
    SUFFIX_WORDS,
    Dev,
    Kind,
    int_to_words,
    registers_for,
    str_to_words,
    words_to_signed,
    words_to_str,
)

log = logging.getLogger("chargebrain.http")

BAD_SIZE = "bad modbus register size"
DEVICES = ("evse", "meter1", "meter2")


def _bank(req: Request) -> RegisterBank:
    device = clean(req.params.get("device", ""))
    if device not in DEVICES:
        raise ApiError(400, f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    return req.app.powerbrain.banks[device]


def _split_address(text: str) -> tuple[int, str]:
    s = clean(text).lower()
    suffix = s[-1] if s and s[-1] in "dqs" else ""
    digits = s[:-1] if suffix else s
    try:
        address = int(digits, 0) if digits.startswith("0x") else int(digits)
    except ValueError:
        raise ApiError(400, f"{text!r} is not a register address") from None
    if not 0 <= address <= 0xFFFF:
        raise ApiError(400, f"register address {address} out of range")
    return address, suffix


def _modbus_error(exc: RegisterError) -> ApiError:
    return ApiError(400, exc.message)


def read_all(bank: RegisterBank) -> dict[str, Any]:
    """Every register of the device at its natural width, in address order."""
    words = bank.read_words(FIRST_ADDRESS, LAST_ADDRESS - FIRST_ADDRESS, check=False)
    raw = struct.pack(f">{len(words)}H", *words)
    out: dict[str, Any] = {}
    for key, offset, width, fmt in _layout_for(bank.dev):
        if fmt == "s":
            text = raw[2 * offset : 2 * (offset + width)]
            out[key] = text.lstrip(b"\0").split(b"\0", 1)[0].decode("latin-1")
        elif fmt == "H":
            out[key] = words[offset]
        else:
            out[key] = struct.unpack_from(fmt, raw, 2 * offset)[0]
    return out


def read_all_json(bank: RegisterBank) -> bytes:
    """`read_all` encoded as compact JSON, in one struct unpack and one formatting pass.

    The same bytes as `json.dumps(read_all(bank), separators=(",", ":"),
    ensure_ascii=False)`: the answer every poller of `read=all` asks for, so it is built
    without an intermediate dict.
    """
    unpacker, template, strings = _json_plan(bank.dev)
    words = bank.read_words(FIRST_ADDRESS, LAST_ADDRESS - FIRST_ADDRESS, check=False)
    values: list[Any] = list(unpacker.unpack_from(struct.pack(f">{len(words)}H", *words)))
    for i in strings:
        values[i] = _json_string(values[i])
    return (template % tuple(values)).encode()


@functools.lru_cache(maxsize=256)
def _json_string(raw: bytes) -> str:
    """A string register's bytes as a JSON string (they hardly ever change: names,
    serial numbers, versions)."""
    text = raw.lstrip(b"\0").split(b"\0", 1)[0].decode("latin-1")
    return json.dumps(text, ensure_ascii=False)


@functools.cache
def _json_plan(dev: Dev) -> tuple[struct.Struct, str, tuple[int, ...]]:
    """A struct over the whole register block (gaps skipped), the JSON template with
    every key in address order, and which values are strings."""
    fmt = [">"]
    parts = []
    strings = []
    pos = 0
    for n, (key, offset, width, kind) in enumerate(_layout_for(dev)):
        if offset > pos:
            fmt.append(f"{2 * (offset - pos)}x")
        fmt.append(f"{2 * width}s" if kind == "s" else kind.lstrip(">"))
        pos = offset + width
        parts.append(f'"{key}":%s' if kind == "s" else f'"{key}":%d')
        if kind == "s":
            strings.append(n)
    return struct.Struct("".join(fmt)), "{" + ",".join(parts) + "}", tuple(strings)


@functools.cache
def _layout_for(dev: Dev) -> tuple[tuple[str, int, int, str], ...]:
    """(key, word offset, width, decoding) of each register of a device, precomputed."""
    out = []
    for reg in registers_for(dev):
        fmt = "s" if reg.kind is Kind.STR else {1: "H", 2: ">i", 4: ">q"}[reg.words]
        out.append((f"{reg.address}{reg.suffix}", reg.address - FIRST_ADDRESS, reg.words, fmt))
    return tuple(out)


def _read(bank: RegisterBank, req: Request) -> Any:
    target = req.params["read"]
    if clean(target).lower() == "all":
        return web.Response(body=read_all_json(bank), content_type="application/json")
    address, suffix = _split_address(target)
    count_text = req.params.get("count")
    count = parse_int(count_text, "count") if count_text is not None else None
    if count is not None and not 1 <= count <= 125:
        raise ApiError(400, f"count {count} out of 1..125")
    if suffix == "s":
        if count is None:
            reg = bank.owner(address)
            count = reg.end - address if reg is not None and reg.kind is Kind.STR else 1
        return words_to_str(bank.read_words(address, count))
    width = SUFFIX_WORDS[suffix]
    if count is None:
        words = bank.read_words(address, width)
        return words[0] if width == 1 else words_to_signed(words)
    words = bank.read_words(address, width * count)
    if width == 1:
        return words
    return [words_to_signed(words[i : i + width]) for i in range(0, len(words), width)]


def _words(bank: RegisterBank, address: int, suffix: str, raw_values: list[Any]) -> list[int]:
    """The words one `write=` puts at `address`; ApiError if a value or size is wrong."""
    if not raw_values:
        raise ApiError(400, "values is empty")
    words: list[int] = []
    if suffix == "s":
        reg = bank.owner(address)
        if reg is None or reg.kind is not Kind.STR or reg.address != address:
            raise ApiError(400, BAD_SIZE, body=BAD_SIZE)
        return str_to_words(",".join(clean(str(v)) for v in raw_values), reg.words)
    width = SUFFIX_WORDS[suffix]
    lo, hi = -(1 << (16 * width - 1)), (1 << (16 * width)) - 1
    a = address
    for raw in raw_values:
        value = parse_int(raw, "value")
        if not lo <= value <= hi:
            raise ApiError(400, f"value {value} does not fit {16 * width} bits")
        reg = bank.owner(a)
        if reg is not None and (reg.address != a or reg.words != width):
            raise ApiError(400, BAD_SIZE, body=BAD_SIZE)
        words.extend(int_to_words(value, width))
        a += width
    return words


def _write(bank: RegisterBank, req: Request) -> str:
    if len(req.multi_params.getall("write", [])) > 1:
        return _write_several(bank, req)
    address, suffix = _split_address(req.params["write"])
    if "values" in req.params:
        raw_values = parse_list(req.params["values"])
    elif "value" in req.params:
        raw_values = [req.params["value"]]
    else:
        raise ApiError(400, "write needs value= or values=")
    bank.write_words(address, _words(bank, address, suffix, raw_values))
    return "ok"


def _write_several(bank: RegisterBank, req: Request) -> str:
    """`write=A&value=1&write=B&value=2…`: the n-th `write=` takes the n-th `value=` or
    `values=`, in the order sent. Applied in order as one change: every pair is checked
    first and nothing is written unless all are valid. A pair aimed at a read-only
    register is skipped (a "start charging" button sends `write=8092&value=2` first)."""
    targets: list[str] = []
    values: list[list[Any]] = []
    for key, text in req.multi_params.items():
        if key == "write":
            targets.append(text)
        elif key == "value":
            values.append([text])
        elif key == "values":
            values.append(parse_list(text))
    if len(values) != len(targets):
        raise ApiError(400, f"each write= needs its own value= or values= "
                            f"({len(targets)} writes, {len(values)} values)")
    writes: list[tuple[int, list[int]]] = []
    for target, raw_values in zip(targets, values, strict=True):
        address, suffix = _split_address(target)
        if bank.read_only(address):
            log.info("cmd=modbus: the write to read-only register %d is skipped", address)
            continue
        writes.append((address, _words(bank, address, suffix, raw_values)))
    if writes:
        bank.write_many(writes)
    return "ok"


@command("modbus", Permission.ADMIN, "Read or write the controller's Modbus registers")
async def modbus(req: Request) -> Any:
    bank = _bank(req)
    try:
        if "write" in req.params:
            return _write(bank, req)
        if "read" in req.params:
            return _read(bank, req)
    except RegisterError as exc:
        raise _modbus_error(exc) from None
    raise ApiError(400, "modbus needs read= or write=")
