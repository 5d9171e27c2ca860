"""Three-phase quantities: one immutable value per building phase L1, L2, L3.

Units are whatever the caller keeps inside (mA for currents throughout chargebrain).
This module must stay pure: no I/O, no clocks, no JSON names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

PHASE_COUNT = 3
ALL_PHASES_MASK = 0b111


@dataclass(frozen=True, slots=True)
class Phases:
    """A value per phase (L1, L2, L3)."""

    l1: int = 0
    l2: int = 0
    l3: int = 0

    @classmethod
    def of(cls, values: tuple[int, int, int] | list[int]) -> Phases:
        a, b, c = values
        return cls(int(a), int(b), int(c))

    @classmethod
    def uniform(cls, value: int) -> Phases:
        return cls(value, value, value)

    @classmethod
    def on_mask(cls, value: int, mask: int) -> Phases:
        """`value` on every phase whose bit is set in `mask` (bit0 = L1), 0 elsewhere."""
        return cls(
            value if mask & 1 else 0,
            value if mask & 2 else 0,
            value if mask & 4 else 0,
        )

    def __iter__(self) -> Iterator[int]:
        yield self.l1
        yield self.l2
        yield self.l3

    def __getitem__(self, index: int) -> int:
        return (self.l1, self.l2, self.l3)[index]

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.l1, self.l2, self.l3)

    def map(self, fn: Callable[[int], int]) -> Phases:
        return Phases(fn(self.l1), fn(self.l2), fn(self.l3))

    def zip_with(self, other: Phases, fn: Callable[[int, int], int]) -> Phases:
        return Phases(fn(self.l1, other.l1), fn(self.l2, other.l2), fn(self.l3, other.l3))

    def __add__(self, other: Phases) -> Phases:
        return Phases(self.l1 + other.l1, self.l2 + other.l2, self.l3 + other.l3)

    def __sub__(self, other: Phases) -> Phases:
        return Phases(self.l1 - other.l1, self.l2 - other.l2, self.l3 - other.l3)

    def __neg__(self) -> Phases:
        return Phases(-self.l1, -self.l2, -self.l3)

    def scale(self, factor: float) -> Phases:
        return Phases(round(self.l1 * factor), round(self.l2 * factor), round(self.l3 * factor))

    def min(self, other: Phases) -> Phases:
        return Phases(min(self.l1, other.l1), min(self.l2, other.l2), min(self.l3, other.l3))

    def max(self, other: Phases) -> Phases:
        return Phases(max(self.l1, other.l1), max(self.l2, other.l2), max(self.l3, other.l3))

    def clamp_low(self, floor: int = 0) -> Phases:
        return self.map(lambda v: max(v, floor))

    def total(self) -> int:
        return self.l1 + self.l2 + self.l3

    def peak(self) -> int:
        return max(self.l1, self.l2, self.l3)

    def low(self) -> int:
        return min(self.l1, self.l2, self.l3)

    def imbalance(self) -> int:
        return self.peak() - self.low()

    def mask(self, threshold: int = 0) -> int:
        """Bitmask of the phases whose value is above `threshold`."""
        return (1 if self.l1 > threshold else 0) | (2 if self.l2 > threshold else 0) | (
            4 if self.l3 > threshold else 0
        )

    def fits_within(self, limit: Phases) -> bool:
        return self.l1 <= limit.l1 and self.l2 <= limit.l2 and self.l3 <= limit.l3


ZERO = Phases(0, 0, 0)


def mask_count(mask: int) -> int:
    """How many phases a bitmask names."""
    return bin(mask & ALL_PHASES_MASK).count("1")


def rotate_mask(mask: int, rotation: int) -> int:
    """Map a mask of EVSE phases onto building phases for a phase rotation of 0/120/240 degrees.

    At 120 degrees the wallbox's L1, L2, L3 are wired to the building's L2, L3, L1.
    """
    shift = {0: 0, 120: 1, 240: 2}.get(rotation % 360, 0)
    mask &= ALL_PHASES_MASK
    return ((mask << shift) | (mask >> (PHASE_COUNT - shift))) & ALL_PHASES_MASK


def rotate(values: Phases, rotation: int) -> Phases:
    """Map per-phase values measured at the EVSE onto building phases (see rotate_mask)."""
    shift = {0: 0, 120: 1, 240: 2}.get(rotation % 360, 0)
    v = values.as_tuple()
    out = [0, 0, 0]
    for i in range(PHASE_COUNT):
        out[(i + shift) % PHASE_COUNT] = v[i]
    return Phases.of(out)
