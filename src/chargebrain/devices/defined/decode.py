"""Raw device data to values and back: registers, words, scaling, HTTP answers.

Pure helpers of the drivers that follow a definition: which register reads cover the
variables (`plan_register_reads`), a register run decoded by type and word order
(`decode_registers`) and a value encoded for a write (`encode_value`), the resolution
applied (`scale`), a version number formatted (`format_version`), and an HTTP or MQTT
answer parsed as JSON only when a query needs it (`Answer`, `as_number`, `as_text`).

This module must never do I/O.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from chargebrain.devices.errors import DeviceError
from chargebrain.devices.meterdef import QueryMiss, ValueType, WordOrder

__all__ = [
    "Answer",
    "as_number",
    "as_text",
    "bits",
    "decode_registers",
    "encode_value",
    "format_version",
    "plan_register_reads",
    "scale",
]


def plan_register_reads(
    spans: Iterable[tuple[int, int]], max_registers: int, allow_gaps: bool
) -> list[tuple[int, int]]:
    """Group (start, count) spans into as few (start, count) reads as the limits allow.

    Without `allow_gaps` only touching or overlapping spans share a read, so registers
    nobody asked for are never requested.
    """
    ordered = sorted({(s, s + c) for s, c in spans if c > 0}, key=lambda se: (se[0], -se[1]))
    blocks: list[list[int]] = []
    for start, end in ordered:
        if blocks:
            block = blocks[-1]
            if end <= block[1]:
                continue
            joinable = allow_gaps or start <= block[1]
            if joinable and end - block[0] <= max_registers:
                block[1] = end
                continue
        blocks.append([start, end])
    return [(s, e - s) for s, e in blocks]


def decode_registers(
    words: Sequence[int], vtype: ValueType, order: WordOrder
) -> tuple[int, float | str]:
    """Raw unsigned bits and decoded value of a register run (strings: raw is 0)."""
    if vtype is ValueType.STRING:
        data = b"".join(int(w & 0xFFFF).to_bytes(2, "big") for w in words)
        return 0, data.decode("latin-1").replace("\x00", " ").strip()
    ordered = list(words) if order is WordOrder.HIGH_FIRST else list(reversed(words))
    raw = 0
    for word in ordered:
        raw = (raw << 16) | (word & 0xFFFF)
    bits_ = 16 * len(ordered)
    if vtype is ValueType.FLOAT:
        return raw, float(struct.unpack(">f", raw.to_bytes(4, "big"))[0])
    if vtype is ValueType.DOUBLE:
        return raw, float(struct.unpack(">d", raw.to_bytes(8, "big"))[0])
    value = raw
    if vtype.signed and raw >= 1 << (bits_ - 1):
        value = raw - (1 << bits_)
    return raw, float(value)


def encode_value(value: float, vtype: ValueType, order: WordOrder) -> list[int]:
    """The registers that hold `value` as `vtype` (integers rounded; out of range: a
    DeviceError, never a value that wraps around)."""
    count = vtype.registers
    if vtype is ValueType.FLOAT:
        raw = int.from_bytes(struct.pack(">f", value), "big")
    elif vtype is ValueType.DOUBLE:
        raw = int.from_bytes(struct.pack(">d", value), "big")
    else:
        number = round(value)
        bits_ = 16 * count
        lo, hi = (-(1 << (bits_ - 1)), (1 << (bits_ - 1)) - 1) if vtype.signed \
            else (0, (1 << bits_) - 1)
        if not lo <= number <= hi:
            raise DeviceError(f"{number} does not fit a {vtype.value} register")
        raw = number & ((1 << bits_) - 1)
    words = [(raw >> (16 * (count - 1 - i))) & 0xFFFF for i in range(count)]
    return words if order is WordOrder.HIGH_FIRST else list(reversed(words))


def scale(value: float, resolution: float) -> float:
    """`value * resolution`, dividing for decimal fractions so 2305 * 0.1 gives 230.5."""
    if 0 < abs(resolution) < 1:
        divisor = round(1 / resolution)
        if divisor and abs(1 / divisor - resolution) <= 1e-12 * abs(resolution):
            return value / divisor
    return value * resolution


def format_version(raw: int, parts: int) -> str:
    return ".".join(str((raw >> (8 * i)) & 0xFF) for i in reversed(range(parts)))


def bits(value: int, count: int) -> list[int]:
    return [(value >> i) & 1 for i in range(count)]


class Answer:
    """One HTTP answer (or MQTT message), parsed as JSON only when a query needs it."""

    def __init__(self, where: str, text: str) -> None:
        self.where = where
        self.text = text
        self._doc: Any = None
        self._parsed = False
        self._json_error = ""

    def _parse(self) -> None:
        if not self._parsed:
            self._parsed = True
            try:
                self._doc = json.loads(self.text)
            except ValueError as exc:
                self._json_error = str(exc)

    def document(self) -> Any:
        self._parse()
        if self._json_error:
            raise DeviceError(f"{self.where}: answer is not JSON ({self._json_error})")
        return self._doc

    def document_or_text(self) -> Any:
        self._parse()
        return self.text.strip() if self._json_error else self._doc

    def select(self, apply: Callable[[Any], Any], where: str) -> Any:
        try:
            return apply(self.document())
        except QueryMiss as exc:
            raise DeviceError(f"{where}: {exc}") from None
        except RecursionError:
            raise DeviceError(f"{where}: answer nested too deeply") from None


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def as_number(value: Any, where: str) -> float:
    if value is None:
        return 0.0  # JSON null: the device has no value right now
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise DeviceError(f"{where}: {str(value)[:40]} is too large") from None
        return number if math.isfinite(number) else 0.0
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise DeviceError(f"{where}: {value[:40]!r} is not a number") from None
    raise DeviceError(f"{where}: selects {type(value).__name__}, not a number")
