"""The controller's Modbus application layer: one request PDU in, one answer PDU out.

A logical device (EVSE or S0 meter) answers function codes 3 (read holding registers),
6 (write single register) and 16 (write multiple registers) from its register bank;
every other function code gets exception 01 (illegal function). A count outside the
protocol's limits (FC3 1..125, FC16 1..123), a byte count that does not match it or a PDU
of the wrong length get exception 03 (illegal data value); the bank's own refusals keep
their codes (02 for gaps, unknown and read-only registers, 03 for values out of range).
A unit id that is neither the device's slave id nor 0 or 255 gets exception 0B. A
failure behind the bank (the controller could not apply a write) is logged and answered
with exception 04 (server device failure).

Pure: no sockets, no clocks. The answers to valid requests are the ones evcc and the
tests have always seen (FC6 answers with the register's value read back after the write).

`serve` answers from any `WordSource` (a register bank, or the SunSpec chain of
servers/sunspec/) once the unit has been found to be served; `answer` is the
controller's device: its bank, answered as its slave id, 0 or 255.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Protocol

from chargebrain.powerbrain.bank import (
    MAX_READ_WORDS,
    MAX_WRITE_WORDS,
    ExceptionCode,
    RegisterBank,
    RegisterError,
)

log = logging.getLogger("chargebrain.modbus")

READ_HOLDING = 3
WRITE_SINGLE = 6
WRITE_MULTIPLE = 16
# Unit ids every device answers besides its configured slave id (TCP convention).
ANY_UNIT = (0, 255)
SERVER_DEVICE_FAILURE = 0x04
GATEWAY_TARGET_FAILED = 0x0B

_ADDRESS_COUNT = struct.Struct(">HH")
_ADDRESS_COUNT_BYTES = struct.Struct(">HHB")
_FC_ADDRESS_VALUE = struct.Struct(">BHH")
_FC_BYTES = struct.Struct(">BB")


class WordSource(Protocol):
    """Holding registers a Modbus device answers from: reads and writes of whole words
    that raise RegisterError (with its exception code) when the device refuses them."""

    def read_words(self, address: int, count: int) -> list[int]: ...
    def write_words(self, address: int, words: Sequence[int]) -> None: ...


def exception_pdu(function_code: int, code: int) -> bytes:
    """The exception answer to `function_code`: the code with its high bit set, then
    the exception code."""
    return bytes(((function_code | 0x80) & 0xFF, code))


def unit_answered(bank: RegisterBank, unit: int) -> bool:
    """True if the device of `bank` answers requests addressed to `unit`."""
    return unit in ANY_UNIT or unit == bank.get("slave_id")


def answer(bank: RegisterBank, unit: int, pdu: bytes) -> bytes:
    """The answer PDU to the request `pdu` (at least one byte, the function code)
    addressed to `unit`."""
    if not unit_answered(bank, unit):
        return exception_pdu(pdu[0], GATEWAY_TARGET_FAILED)
    return serve(bank, pdu)


def serve(source: WordSource, pdu: bytes) -> bytes:
    """The answer PDU to the request `pdu` (at least one byte, the function code) from
    `source`, whose unit the request was addressed to."""
    function_code = pdu[0]
    try:
        if function_code == READ_HOLDING:
            return _read(source, pdu)
        if function_code == WRITE_SINGLE:
            return _write_single(source, pdu)
        if function_code == WRITE_MULTIPLE:
            return _write_multiple(source, pdu)
    except RegisterError as exc:
        return exception_pdu(function_code, int(exc.code))
    except Exception:
        log.exception("Modbus request %s failed", pdu[:6].hex())
        return exception_pdu(function_code, SERVER_DEVICE_FAILURE)
    return exception_pdu(function_code, ExceptionCode.ILLEGAL_FUNCTION)


def _bad_value(what: str) -> RegisterError:
    return RegisterError(ExceptionCode.ILLEGAL_VALUE, what)


def _read(bank: WordSource, pdu: bytes) -> bytes:
    if len(pdu) != 5:
        raise _bad_value("FC3 request of the wrong length")
    address, count = _ADDRESS_COUNT.unpack_from(pdu, 1)
    if not 1 <= count <= MAX_READ_WORDS:
        raise _bad_value(f"count {count} out of 1..{MAX_READ_WORDS}")
    words = bank.read_words(address, count)
    return _FC_BYTES.pack(READ_HOLDING, 2 * count) + struct.pack(f">{count}H", *words)


def _write_single(bank: WordSource, pdu: bytes) -> bytes:
    if len(pdu) != 5:
        raise _bad_value("FC6 request of the wrong length")
    address, value = _ADDRESS_COUNT.unpack_from(pdu, 1)
    _write(bank, address, (value,))
    # The answer carries the register's value as it reads after the write.
    (now,) = bank.read_words(address, 1)
    return _FC_ADDRESS_VALUE.pack(WRITE_SINGLE, address, now)


def _write_multiple(bank: WordSource, pdu: bytes) -> bytes:
    if len(pdu) < 6:
        raise _bad_value("FC16 request too short")
    address, count, byte_count = _ADDRESS_COUNT_BYTES.unpack_from(pdu, 1)
    if not 1 <= count <= MAX_WRITE_WORDS:
        raise _bad_value(f"count {count} out of 1..{MAX_WRITE_WORDS}")
    if byte_count != 2 * count or len(pdu) != 6 + byte_count:
        raise _bad_value(f"byte count {byte_count} does not match {count} registers")
    _write(bank, address, struct.unpack_from(f">{count}H", pdu, 6))
    return _FC_ADDRESS_VALUE.pack(WRITE_MULTIPLE, address, count)


def _write(bank: WordSource, address: int, words: tuple[int, ...]) -> None:
    try:
        bank.write_words(address, words)
    except RegisterError as exc:
        log.info("Modbus write %d rejected: %s", address, exc.message)
        raise
