"""Energy price schedules and the cheapest / dearest price in a window.

Backs the formula functions min_price, max_price, min_price_secs, max_price_secs and the
rule price conditions. Pure: times are Unix timestamps passed in, wall-clock conversion
uses the zoneinfo object passed in. This module must never fetch prices or read a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

DAY_SECONDS = 86400


@dataclass(frozen=True, slots=True)
class PriceSlot:
    """One tariff interval [start, end) in Unix seconds with its price (e.g. ct/kWh)."""

    start: float
    end: float
    price: float


@dataclass(frozen=True, slots=True)
class PriceSchedule:
    """Known prices, slots sorted by start and not overlapping."""

    slots: tuple[PriceSlot, ...] = ()

    @classmethod
    def fixed(cls, price: float) -> PriceSchedule:
        """One price for all time (the "fixed price" energy provider)."""
        return cls((PriceSlot(-math.inf, math.inf, float(price)),))

    @classmethod
    def of(cls, slots: list[PriceSlot] | tuple[PriceSlot, ...]) -> PriceSchedule:
        return cls(tuple(sorted(slots, key=lambda s: s.start)))

    def price_at(self, t: float) -> float | None:
        for slot in self.slots:
            if slot.start <= t < slot.end:
                return slot.price
        return None

    def extreme(self, start: float, end: float, cheapest: bool) -> tuple[float, float] | None:
        """(price, first moment >= start it applies) of the lowest (or highest) price
        among slots overlapping [start, end); the earliest slot wins a tie. None if no slot
        overlaps."""
        best: tuple[float, float] | None = None
        for slot in self.slots:
            if slot.end <= start or slot.start >= end:
                continue
            at = max(slot.start, start)
            if (
                best is None
                or (cheapest and slot.price < best[0])
                or (not cheapest and slot.price > best[0])
            ):
                best = (slot.price, at)
        return best


def _local(ts: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(ts, tz or UTC)


def window_end(now: float, tz: tzinfo | None, until_daysecond: float) -> float:
    """Timestamp of the next local wall-clock time `until_daysecond` (0..86400) after `now`:
    today if it is still ahead, otherwise tomorrow."""
    s = 0.0 if math.isnan(until_daysecond) else until_daysecond
    s = min(max(s, 0.0), float(DAY_SECONDS))
    here = _local(now, tz)
    midnight = here.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (midnight + timedelta(seconds=s)).timestamp()
    if end <= now:
        end = (midnight + timedelta(days=1, seconds=s)).timestamp()
    return end


def seconds_from_today(ts: float, now: float, tz: tzinfo | None) -> float:
    """Local wall-clock seconds of `ts` counted from the local midnight of `now`'s day:
    a moment tomorrow at 03:00 gives 86400 + 10800."""
    there = _local(ts, tz)
    days = (there.date() - _local(now, tz).date()).days
    return float(days * DAY_SECONDS + there.hour * 3600 + there.minute * 60 + there.second)


def price_extreme(
    schedule: PriceSchedule | None,
    now: float,
    tz: tzinfo | None,
    until_daysecond: float,
    cheapest: bool,
) -> tuple[float, float] | None:
    """(price, start) of the cheapest (or dearest) price from `now` until the next local
    `until_daysecond`; start is given as seconds_from_today. None when nothing is known."""
    if schedule is None or not schedule.slots:
        return None
    end = window_end(now, tz, until_daysecond)
    found = schedule.extreme(now, end, cheapest)
    if found is None:
        return None
    price, at = found
    return price, seconds_from_today(at, now, tz)
