"""The Power Brain register map: one table, the single source of truth for every view.

Each register has an address, a width in 16-bit words, a type, an access mode, whether it
is volatile (not persisted) and which logical devices (EVSE, S0 meter) carry it. The HTTP
`cmd=modbus` view and the Modbus TCP server both read and validate through this table.

Encoding: big-endian words, the high word first for 32/64-bit values, strings two
characters per register with the first in the high byte, NUL padded.

This module is pure data and encoding; it never holds state and never does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    U16 = "u16"
    I32 = "i32"  # reported signed over HTTP (the documentation's answers are signed)
    I64 = "i64"
    STR = "str"


class Dev(Enum):
    EVSE = "evse"
    METER = "meter"


BOTH = frozenset({Dev.EVSE, Dev.METER})
EVSE_ONLY = frozenset({Dev.EVSE})
METER_ONLY = frozenset({Dev.METER})


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    address: int
    words: int
    kind: Kind
    access: str  # "r", "rw" or "w"
    devices: frozenset[Dev]
    volatile: bool = False
    minimum: int | None = None
    maximum: int | None = None
    # Also allowed besides [minimum, maximum] (e.g. 0 = "off").
    also: tuple[int, ...] = ()
    # Key suffix in read=all; None = derived from the width (the documented answer shows
    # product_version, two words, under the bare key "8004").
    key_suffix: str | None = None
    doc: str = ""
    # Writable through the EVSE/meter view; access may differ per device.
    read_only_on: frozenset[Dev] = frozenset()

    @property
    def readable(self) -> bool:
        return "r" in self.access or self.access == "w"

    def writable_on(self, dev: Dev) -> bool:
        return "w" in self.access and dev not in self.read_only_on

    @property
    def suffix(self) -> str:
        if self.key_suffix is not None:
            return self.key_suffix
        if self.kind is Kind.STR:
            return "s"
        return {1: "", 2: "d", 4: "q"}[self.words]

    @property
    def end(self) -> int:
        return self.address + self.words

    def valid_value(self, value: int) -> bool:
        if value in self.also:
            return True
        if self.minimum is not None and value < self.minimum:
            return False
        return not (self.maximum is not None and value > self.maximum)


def _r(
    name: str,
    address: int,
    words: int,
    kind: Kind,
    access: str,
    devices: frozenset[Dev],
    **kw: object,
) -> Register:
    return Register(name, address, words, kind, access, devices, **kw)  # type: ignore[arg-type]


U16, I32, I64, STR = Kind.U16, Kind.I32, Kind.I64, Kind.STR

REGISTERS: tuple[Register, ...] = (
    # Common identity block.
    _r("vendor_id", 8000, 2, I32, "r", BOTH, doc="Vendor id 0xCF05 in the high word"),
    _r("product_id", 8002, 1, U16, "r", BOTH, doc="Product id"),
    _r("device_id", 8003, 1, U16, "r", BOTH, doc="Device id inside the product"),
    _r("product_version", 8004, 2, I32, "r", BOTH, key_suffix="",
       doc="Version major.minor (high word, major in the high byte), build (low word)"),
    _r("mapping_version", 8006, 1, U16, "r", BOTH, doc="Register mapping version major.minor"),
    _r("padding_1", 8007, 1, U16, "r", BOTH, doc="Reserved"),
    _r("serial_no", 8008, 8, STR, "r", BOTH, doc="Serial number, 16 characters"),
    _r("name", 8016, 16, STR, "r", BOTH, doc="Product name, 32 characters"),
    _r("slave_id", 8040, 1, U16, "rw", BOTH, minimum=1, maximum=247, doc="Modbus slave id"),
    # Meter block: on S0 meters the S0 input; on the EVSE its attached meter.
    _r("input", 8041, 1, U16, "r", BOTH, doc="Reserved, reads 1"),
    _r("pulsesperkwh", 8042, 2, I32, "rw", BOTH, minimum=1, maximum=100_000,
       doc="Pulses per kWh"),
    _r("phases", 8044, 1, U16, "rw", BOTH, minimum=1, maximum=7,
       doc="Bitmask of phases: bit0 L1, bit1 L2, bit2 L3"),
    _r("voltage_l1", 8045, 1, U16, "rw", BOTH, minimum=100, maximum=300, doc="Nominal V L1"),
    _r("voltage_l2", 8046, 1, U16, "rw", BOTH, minimum=100, maximum=300, doc="Nominal V L2"),
    _r("voltage_l3", 8047, 1, U16, "rw", BOTH, minimum=100, maximum=300, doc="Nominal V L3"),
    _r("pulses", 8050, 4, I64, "rw", BOTH, minimum=0, doc="Absolute pulse count"),
    _r("timeperpulse", 8054, 2, I32, "r", BOTH, doc="ms between the last two pulses"),
    _r("level", 8056, 1, U16, "r", BOTH, doc="S0 input level: 0 current flows, 1 no current"),
    _r("meter_flags", 8057, 1, U16, "r", BOTH, doc="bit0: individual phase values"),
    _r("energy", 8058, 4, I64, "rw", BOTH, minimum=0, read_only_on=EVSE_ONLY,
       doc="Active import energy Wh"),
    _r("power", 8062, 2, I32, "r", BOTH, doc="Active power W (-1: no pulse seen yet)"),
    _r("current_l1", 8064, 2, I32, "r", BOTH, doc="Current L1 in 0.1 A"),
    _r("current_l2", 8066, 2, I32, "r", BOTH, doc="Current L2 in 0.1 A"),
    _r("current_l3", 8068, 2, I32, "r", BOTH, doc="Current L3 in 0.1 A"),
    _r("reset_pulses", 8070, 1, U16, "w", BOTH, minimum=0, maximum=1,
       doc="Write 1 to reset the pulse counter"),
    _r("reset_energy", 8071, 1, U16, "w", BOTH, minimum=0, maximum=1,
       doc="Write 1 to reset the energy counter"),
    # EVSE block.
    _r("def_fixed_current", 8080, 1, U16, "rw", EVSE_ONLY, minimum=60, maximum=630, also=(0,),
       doc="fixed_current after a restart, 0.1 A (0 = none)"),
    _r("def_charg_cur_limit", 8081, 1, U16, "rw", EVSE_ONLY, minimum=60, maximum=630,
       doc="charging_cur_limit after a restart, 0.1 A"),
    _r("def_charging_enable", 8082, 1, U16, "rw", EVSE_ONLY, minimum=0, maximum=1,
       doc="charging_enable after a restart"),
    _r("fail_safe_duration", 8083, 2, I32, "rw", EVSE_ONLY, minimum=0, maximum=86_400,
       doc="Seconds without Modbus access before fail_safe_current applies, 0 = off"),
    _r("fail_safe_current", 8085, 1, U16, "rw", EVSE_ONLY, minimum=60, maximum=630, also=(0,),
       doc="Current during inactivity, 0.1 A; 0 = stop charging"),
    _r("disconnect_cp", 8086, 1, U16, "rw", EVSE_ONLY, volatile=True, minimum=0, maximum=600,
       doc="Write: seconds to switch CP off (simulated unplug); read: seconds remaining"),
    _r("relay_select", 8087, 1, U16, "rw", EVSE_ONLY, volatile=True, minimum=0, maximum=1,
       doc="0 = 3-phase contactor, 1 = 1-phase contactor"),
    _r("relay2", 8088, 1, U16, "rw", EVSE_ONLY, volatile=True, minimum=0, maximum=1,
       doc="Relay 2 off/on (only while relay 1 is off)"),
    _r("cable_current", 8090, 1, U16, "r", EVSE_ONLY, doc="PP cable capacity 0.1 A, 0 = none"),
    _r("fixed_current", 8091, 1, U16, "rw", EVSE_ONLY, volatile=True, minimum=60, maximum=630,
       also=(0,), doc="Overrides cable_current, 0.1 A (0 = none)"),
    _r("charge_pilot_state", 8092, 1, U16, "r", EVSE_ONLY, doc="CP state 0=A .. 5=F"),
    _r("charging_cur_limit", 8093, 1, U16, "rw", EVSE_ONLY, volatile=True, minimum=60,
       maximum=630, doc="Charging current limit, 0.1 A, 6-63 A"),
    _r("charging_enable", 8094, 1, U16, "rw", EVSE_ONLY, volatile=True, minimum=0, maximum=1,
       doc="0 = disable, 1 = enable"),
    _r("charging_current", 8095, 1, U16, "r", EVSE_ONLY, doc="Current drawn, 0.1 A"),
    _r("last_rfid", 8096, 15, STR, "r", EVSE_ONLY, doc="Last RFID as hex string"),
    _r("detected_rfids", 8111, 1, U16, "r", EVSE_ONLY, doc="Counter of RFID reads"),
    _r("has_meter", 8112, 1, U16, "r", EVSE_ONLY, doc="1 = a meter is attached"),
    _r("s0_inputs", 8113, 1, U16, "r", EVSE_ONLY, doc="S0 inputs and relay capability bits"),
    _r("count_restart", 8120, 2, I32, "rw", BOTH, minimum=0, doc="Number of restarts"),
)

BY_NAME: dict[str, Register] = {r.name: r for r in REGISTERS}
BY_ADDRESS: dict[int, Register] = {r.address: r for r in REGISTERS}
FIRST_ADDRESS = min(r.address for r in REGISTERS)
LAST_ADDRESS = max(r.end for r in REGISTERS)  # exclusive

SUFFIX_WORDS = {"": 1, "d": 2, "q": 4}


def registers_for(dev: Dev) -> tuple[Register, ...]:
    return tuple(r for r in REGISTERS if dev in r.devices)


def covering(dev: Dev, address: int) -> Register | None:
    """The register of `dev` that contains word `address`, if any."""
    for r in REGISTERS:
        if dev in r.devices and r.address <= address < r.end:
            return r
    return None


# --- encoding ---------------------------------------------------------------------------


def int_to_words(value: int, words: int) -> list[int]:
    """Two's complement, high word first."""
    bits = 16 * words
    v = value & ((1 << bits) - 1)
    return [(v >> (16 * (words - 1 - i))) & 0xFFFF for i in range(words)]


def words_to_unsigned(words: Sequence[int]) -> int:
    if len(words) == 2:
        return ((words[0] & 0xFFFF) << 16) | (words[1] & 0xFFFF)
    v = 0
    for w in words:
        v = (v << 16) | (w & 0xFFFF)
    return v


def words_to_signed(words: Sequence[int]) -> int:
    v = words_to_unsigned(words)
    bits = 16 * len(words)
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def str_to_words(text: str, words: int) -> list[int]:
    raw = text.encode("latin-1", errors="replace")[: 2 * words].ljust(2 * words, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, 2 * words, 2)]


def words_to_str(words: Iterable[int]) -> str:
    """Decode a NUL padded string; NULs before the text (right-aligned ids) are skipped."""
    seq = list(words)
    raw = struct.pack(f">{len(seq)}H", *(w & 0xFFFF for w in seq))
    return raw.lstrip(b"\0").split(b"\0", 1)[0].decode("latin-1")


def value_range(kind: Kind, words: int) -> tuple[int, int]:
    """Values a write may carry for a width: signed or unsigned interpretations."""
    bits = 16 * words
    return (-(1 << (bits - 1)), (1 << bits) - 1)


def major_minor(major: int, minor: int) -> int:
    return ((major & 0xFF) << 8) | (minor & 0xFF)
