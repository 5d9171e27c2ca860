"""Times as a scenario file writes them: durations, times of day, points in time.

A duration is seconds or text like "90s", "30m", "24h", "1h30m"; a time of day is
"HH:MM" or "HH:MM:SS"; a point in time (`When`) is seconds since the start, "+45m" after
the start, or "HH:MM", the first time that clock time comes round at or after a given
moment. Parsing raises ValueError with the message to show.

This module must never know the rest of the format, and never read the real clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from chargebrain.sim.scenario.spec import DAY_S

__all__ = ["When", "parse_duration", "parse_time_of_day", "parse_when", "resolve_time"]

_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")
_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: object) -> int:
    """Seconds from a number or a string like "90s", "30m", "24h", "1h30m"."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"not a duration: {value!r}")
        return round(value)
    if isinstance(value, str):
        text = value.strip().lower()
        parts = _DURATION_RE.findall(text)
        if parts and _DURATION_RE.sub("", text).strip() == "":
            return round(sum(float(n) * _SCALE[u] for n, u in parts))
    raise ValueError(f"not a duration: {value!r}")


def parse_time_of_day(value: object) -> int:
    """Seconds after midnight from "HH:MM" or "HH:MM:SS"."""
    if isinstance(value, str):
        m = _CLOCK_RE.match(value.strip())
        if m:
            h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
            if h < 24 and mi < 60 and s < 60:
                return h * 3600 + mi * 60 + s
    raise ValueError(f"not a time of day (HH:MM): {value!r}")


@dataclass(frozen=True, slots=True)
class When:
    """A point in time as written: an offset from the start, or a time of day."""

    offset_s: int | None = None  # seconds since the start (a number, "+45m", "90m")
    time_of_day_s: int | None = None  # "HH:MM": the first time that clock time comes round

    def resolve(self, start_tod: int, not_before: int) -> int:
        """Seconds since the start of a run that starts at `start_tod` (time of day); a time
        of day is the first one at or after `not_before` seconds into the run."""
        if self.time_of_day_s is None:
            return self.offset_s or 0
        t = (self.time_of_day_s - start_tod) % DAY_S
        if t < not_before:
            t += math.ceil((not_before - t) / DAY_S) * DAY_S
        return t


def parse_when(value: object) -> When:
    """A point in time from a number, "+30m" or "HH:MM"."""
    if isinstance(value, str) and value.strip().startswith("+"):
        return When(offset_s=parse_duration(value.strip()[1:]))
    if isinstance(value, str) and ":" in value:
        return When(time_of_day_s=parse_time_of_day(value))
    return When(offset_s=parse_duration(value))


def resolve_time(value: object, start_tod: int, not_before: int) -> int:
    """A point in time as seconds since the start of the run.

    A number is seconds since the start; "+30m" an offset from the start; "HH:MM" the first
    time that clock time comes round at or after `not_before` seconds into the run.
    """
    return parse_when(value).resolve(start_tod, not_before)
