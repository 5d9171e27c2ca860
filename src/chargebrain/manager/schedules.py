"""Charging schedules: limits by time of day that an external energy manager sets.

A schedule (the vendor's "charging plan", `set_cplan`) belongs to an EVSE, an EVSE group
or the site (`SITE`, the vendor's `$G`: the maximum total current per phase). It is a
list of entries, each a limit `lm` (mA per phase) from minute `st` of the day for `dr`
minutes; an entry that runs past midnight goes on into the next day, and where entries
overlap the lowest limit counts. Times of day are the controller's (the zone formulas
use). The manager applies the limit in force like any other limit (the EVSE's maximum,
the group's limit, `max_total_current`), and never exceeds it.

Schedules are kept in the SQLite settings (`SETTINGS_KEY`), each written before the
change counts, unless set as temporary: a temporary schedule lives in memory until the
next start, when the stored one (if any) comes back, as the vendor documents `tmp=1`.
This module never spells the API's JSON and never decides currents.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

log = logging.getLogger("chargebrain.manager")

SITE = "$G"
SETTINGS_KEY = "charging_schedules"
DAY_MIN = 1440


def minute_of_day(now: float, tz: tzinfo | None) -> int:
    """The minute of the day (0..1439) at Unix time `now` on the clock of zone `tz`."""
    local = datetime.fromtimestamp(now, tz or UTC)
    return local.hour * 60 + local.minute


@dataclass(frozen=True, slots=True)
class Entry:
    """One limit of a schedule: `lm` mA from minute `st` of the day for `dr` minutes.
    `dc`: a discharge limit (of a storage; kept, never a charging limit)."""

    st: int
    dr: int
    lm: int
    dc: bool = False

    def covers(self, minute: int) -> bool:
        """Whether the entry is in force at `minute` of the day (0..1439)."""
        end = self.st + self.dr
        return self.st <= minute < end or minute < end - DAY_MIN


@dataclass(frozen=True, slots=True)
class Schedule:
    """A target's entries, and whether they are the ones stored (False: temporary)."""

    entries: tuple[Entry, ...]
    persisted: bool = True

    def limit_at(self, minute: int) -> int | None:
        """The charging limit in force at `minute` of the day (mA), None if none."""
        lowest: int | None = None
        for e in self.entries:
            if not e.dc and e.covers(minute) and (lowest is None or e.lm < lowest):
                lowest = e.lm
        return lowest


class ScheduleStore(Protocol):
    """Where the stored schedules are kept (the SQLite settings in the application)."""

    def get_setting(self, key: str, default: Any = None) -> Any: ...
    def set_setting(self, key: str, value: Any) -> None: ...


def _as_json(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    return [{"dc": e.dc, "st": e.st, "dr": e.dr, "lm": e.lm} for e in entries]


def _entries(raw: object) -> tuple[Entry, ...]:
    """Entries as stored (ValueError if they are not)."""
    if not isinstance(raw, list):
        raise ValueError("not a list")
    out = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise ValueError("an entry is not an object")
        st, dr, lm, dc = item.get("st"), item.get("dr"), item.get("lm"), item.get("dc", False)
        if not (isinstance(st, int) and isinstance(dr, int) and isinstance(lm, int)
                and isinstance(dc, bool) and 0 <= st < DAY_MIN and 0 < dr <= DAY_MIN
                and lm >= 0):
            raise ValueError(f"not an entry: {item!r}")
        out.append(Entry(st, dr, lm, dc))
    return tuple(out)


class ChargeSchedules:
    """The schedules in force, by target (`SITE`, or a device id)."""

    def __init__(self, store: ScheduleStore | None) -> None:
        self.store = store
        self._stored: dict[str, list[dict[str, Any]]] = {}
        self._in_force: dict[str, Schedule] = {}
        raw = store.get_setting(SETTINGS_KEY, {}) if store is not None else {}
        for target, entries in (raw.items() if isinstance(raw, dict) else ()):
            try:
                schedule = Schedule(_entries(entries))
            except ValueError as exc:
                log.error("charging schedule of %s cannot be used as stored: %s", target, exc)
                continue
            self._stored[str(target)] = _as_json(schedule.entries)
            if schedule.entries:
                self._in_force[str(target)] = schedule

    def set(self, target: str, entries: Iterable[Entry], temporary: bool = False) -> None:
        """Put `target`'s schedule in force (no entries: none), stored unless
        `temporary`; a stored one is written before it counts."""
        schedule = Schedule(tuple(entries), persisted=not temporary)
        if not temporary and self.store is not None:
            stored = dict(self._stored)
            if schedule.entries:
                stored[target] = _as_json(schedule.entries)
            else:
                stored.pop(target, None)
            self.store.set_setting(SETTINGS_KEY, stored)
            self._stored = stored
        if schedule.entries or temporary:
            self._in_force[target] = schedule
        else:
            self._in_force.pop(target, None)

    def forget(self, target: str) -> None:
        """Drop `target`'s schedule, stored and in force (its device was deleted)."""
        if target in self._stored or target in self._in_force:
            self.set(target, ())
            self._in_force.pop(target, None)

    def get(self, target: str) -> Schedule | None:
        return self._in_force.get(target)

    def limit(self, target: str, minute: int) -> int | None:
        """The limit `target`'s schedule puts in force at `minute` of the day (mA)."""
        schedule = self._in_force.get(target)
        return schedule.limit_at(minute) if schedule is not None else None

    def __bool__(self) -> bool:
        return bool(self._in_force)
