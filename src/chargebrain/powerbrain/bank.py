"""The register bank: the words of one logical Power Brain device (EVSE or S0 meter).

The bank is where the controller's state lives. Views (HTTP `cmd=modbus`, Modbus TCP)
read and write words through it; every write is validated against the register table
and is applied all or nothing. Side effects of writes (a reset, a countdown, persisting)
belong to the controller, which the bank notifies through a callback.

Never does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum

from chargebrain.powerbrain.registers import (
    BY_NAME,
    FIRST_ADDRESS,
    LAST_ADDRESS,
    Dev,
    Kind,
    Register,
    int_to_words,
    registers_for,
    str_to_words,
    words_to_signed,
    words_to_str,
    words_to_unsigned,
)


class ExceptionCode(IntEnum):
    """Modbus exception codes used in answers."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_ADDRESS = 2
    ILLEGAL_VALUE = 3


class RegisterError(Exception):
    """A read or write the register table does not allow. Nothing was changed."""

    def __init__(self, code: ExceptionCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


WriteHook = Callable[[Register, int], None]

MAX_READ_WORDS = 125
MAX_WRITE_WORDS = 123


class RegisterBank:
    """Words of one logical device, with the table's rules enforced on access."""

    def __init__(self, dev: Dev) -> None:
        self.dev = dev
        self.registers = registers_for(dev)
        self._words = [0] * (LAST_ADDRESS - FIRST_ADDRESS)
        self._owner: list[Register | None] = [None] * (LAST_ADDRESS - FIRST_ADDRESS)
        for reg in self.registers:
            for a in range(reg.address, reg.end):
                self._owner[a - FIRST_ADDRESS] = reg
        self.on_write: WriteHook | None = None
        self.on_access: Callable[[], None] | None = None

    # --- typed access for the controller (no validation: the controller is trusted) ---

    def get(self, name: str) -> int:
        reg = BY_NAME[name]
        words = self._slice(reg.address, reg.words)
        if reg.words == 1:
            return words[0]
        return words_to_signed(words)

    def get_unsigned(self, name: str) -> int:
        reg = BY_NAME[name]
        return words_to_unsigned(self._slice(reg.address, reg.words))

    def get_str(self, name: str) -> str:
        reg = BY_NAME[name]
        return words_to_str(self._slice(reg.address, reg.words))

    def set(self, name: str, value: int) -> None:
        reg = BY_NAME[name]
        self._put(reg.address, int_to_words(value, reg.words))

    def set_str(self, name: str, text: str) -> None:
        reg = BY_NAME[name]
        self._put(reg.address, str_to_words(text, reg.words))

    def owner(self, address: int) -> Register | None:
        if FIRST_ADDRESS <= address < LAST_ADDRESS:
            return self._owner[address - FIRST_ADDRESS]
        return None

    def _slice(self, address: int, count: int) -> list[int]:
        i = address - FIRST_ADDRESS
        return self._words[i : i + count]

    def _put(self, address: int, words: Sequence[int]) -> None:
        i = address - FIRST_ADDRESS
        self._words[i : i + len(words)] = [w & 0xFFFF for w in words]

    # --- the external view (Modbus semantics) --------------------------------------------

    def read_words(self, address: int, count: int, *, check: bool = True) -> list[int]:
        """Read `count` words; every word must belong to a register of this device.

        `check=False` is for views that pick out only the registers of this device
        themselves (read=all); gaps then read as 0.
        """
        if check:
            if not 1 <= count <= MAX_READ_WORDS:
                raise RegisterError(ExceptionCode.ILLEGAL_VALUE, f"count {count} out of 1..125")
            self._check_covered(address, count)
        if self.on_access is not None:
            self.on_access()
        return self._slice(address, count)

    def _check_covered(self, address: int, count: int) -> None:
        if address < FIRST_ADDRESS or address + count > LAST_ADDRESS:
            raise RegisterError(ExceptionCode.ILLEGAL_ADDRESS, f"no register at {address}")
        for a in range(address, address + count):
            if self._owner[a - FIRST_ADDRESS] is None:
                raise RegisterError(ExceptionCode.ILLEGAL_ADDRESS, f"no register at {a}")

    def read_only(self, address: int) -> bool:
        """True if a register of this device starts or lies at `address` and cannot be
        written on it."""
        reg = self.owner(address)
        return reg is not None and not reg.writable_on(self.dev)

    def write_words(self, address: int, words: Sequence[int]) -> None:
        """Write words; validated as a whole, then applied all at once.

        A write may cover part of a multi-word register: the other words keep their
        value and the resulting register value is validated.
        """
        self.write_many([(address, words)])

    def write_many(self, writes: Sequence[tuple[int, Sequence[int]]]) -> None:
        """Several writes as one change, in order: each is validated against the words
        the writes before it leave, and nothing is applied unless all of them are valid.
        """
        words_after = list(self._words)
        pending: list[tuple[Register, list[int], int]] = []
        for address, words in writes:
            planned = self._plan(address, words, words_after)
            for reg, new, _ in planned:
                i = reg.address - FIRST_ADDRESS
                words_after[i : i + reg.words] = new
            pending.extend(planned)
        if self.on_access is not None:
            self.on_access()
        for reg, new, value in pending:
            self._put(reg.address, new)
            if self.on_write is not None:
                self.on_write(reg, value)

    def _plan(
        self, address: int, words: Sequence[int], current: list[int]
    ) -> list[tuple[Register, list[int], int]]:
        """(register, its new words, its new value) for each register the write touches,
        starting from the words `current`; RegisterError if the write is not allowed."""
        count = len(words)
        if not 1 <= count <= MAX_WRITE_WORDS:
            raise RegisterError(ExceptionCode.ILLEGAL_VALUE, f"count {count} out of 1..123")
        self._check_covered(address, count)
        touched: list[Register] = []
        for a in range(address, address + count):
            reg = self._owner[a - FIRST_ADDRESS]
            assert reg is not None
            if not touched or touched[-1] is not reg:
                touched.append(reg)
        planned: list[tuple[Register, list[int], int]] = []
        for reg in touched:
            if not reg.writable_on(self.dev):
                raise RegisterError(
                    ExceptionCode.ILLEGAL_ADDRESS, f"register {reg.address} is read-only"
                )
            i = reg.address - FIRST_ADDRESS
            new = current[i : i + reg.words]
            for a in range(max(address, reg.address), min(address + count, reg.end)):
                new[a - reg.address] = words[a - address] & 0xFFFF
            value = words_to_unsigned(new) if reg.words == 1 else words_to_signed(new)
            if reg.kind is not Kind.STR and not reg.valid_value(value):
                raise RegisterError(
                    ExceptionCode.ILLEGAL_VALUE,
                    f"value {value} out of range for register {reg.address} ({reg.name})",
                )
            planned.append((reg, new, value))
        return planned

    def snapshot(self) -> list[int]:
        return list(self._words)
