"""Scenario files for the site simulator: what the site is and what happens on it.

A scenario is JSON (a path, or the name of a shipped file in sim/scenarios/) loaded into
frozen dataclasses and validated as a whole; every problem found is reported at once in
a ScenarioError. All times become whole seconds since the start of the run; the time of
day at the start is kept so daily profiles (household, PV) line up.

This module must never simulate anything, hold mutable state, or read the real clock.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

DAY_S = 86_400
IEC_MIN_MA = 6_000
MAX_EVSE_MA = 80_000


class ScenarioError(ValueError):
    """A scenario file is malformed; `errors` lists every problem with its JSON path."""

    def __init__(self, errors: list[str] | tuple[str, ...], source: str = "") -> None:
        self.errors = tuple(errors)
        self.source = source
        head = f"invalid scenario {source}: " if source else "invalid scenario: "
        super().__init__(head + "; ".join(self.errors))


# ---------------------------------------------------------------------------------------
# The static site: what a charging manager is configured with.


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """Limits at the grid connection, all per phase in mA."""

    max_current_ma: int  # the house connection (main fuse), per phase
    reserve_ma: int = 0  # headroom a manager keeps unused
    max_imbalance_ma: int = 0  # largest allowed difference between phases of EVSE load; 0 = none
    max_evse_current_ma: int = 0  # dedicated supply line of all EVSEs, per phase; 0 = none
    voltage_v: float = 230.0


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A group of EVSEs behind its own feed (e.g. a sub-distribution), possibly nested."""

    id: str
    max_current_ma: int  # per phase
    parent: str | None = None
    prio: int = 1


@dataclass(frozen=True, slots=True)
class EvseSpec:
    """One charge point as the charging manager knows it."""

    id: str
    group: str | None = None
    prio: int = 1
    min_ma: int = IEC_MIN_MA
    max_ma: int = 16_000
    phase_rotation: int = 0  # 0/120/240: at 120 the EVSE's L1, L2, L3 sit on building L2, L3, L1
    used_phases: int = 3  # phases wired to the EVSE: 1 or 3
    # How the charging manager reaches it: "http" (an HTTP-input EVSE pushing its
    # readings), "powerbrain" (the controller's own EVSE, through its hardware interface)
    # or "modbus" (another Power Brain, over Modbus TCP)
    interface: str = "http"


INTERFACES = ("http", "powerbrain", "modbus")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


_T = TypeVar("_T", bound=_HasId)


def _by_id(items: Iterable[_T], item_id: str) -> _T:
    """The item with this id (KeyError if none)."""
    for item in items:
        if item.id == item_id:
            return item
    raise KeyError(item_id)


@dataclass(frozen=True, slots=True)
class Site:
    """Everything static about the site: limits, groups and EVSEs."""

    limits: SiteLimits
    groups: tuple[GroupSpec, ...] = ()
    evses: tuple[EvseSpec, ...] = ()

    def evse(self, evse_id: str) -> EvseSpec:
        return _by_id(self.evses, evse_id)

    def group(self, group_id: str) -> GroupSpec:
        return _by_id(self.groups, group_id)

    def group_chain(self, group_id: str | None) -> tuple[str, ...]:
        """The group and all its ancestors, innermost first (empty for the main group)."""
        chain: list[str] = []
        by_id = {g.id: g for g in self.groups}
        current = group_id
        while current is not None and current not in chain:
            chain.append(current)
            current = by_id[current].parent
        return tuple(chain)


# ---------------------------------------------------------------------------------------
# What happens on the site.


@dataclass(frozen=True, slots=True)
class CarSpec:
    """A car: when it is plugged in where, and how it behaves."""

    id: str
    evse: str
    arrive_s: int
    leave_s: int
    need_kwh: float  # the car stops by itself once it has taken this much
    max_ma: int = 16_000
    phases: int = 3
    min_start_ma: int = IEC_MIN_MA  # offered less than this, the car draws nothing
    capacity_kwh: float = 60.0
    soc: float = 0.3  # at arrival, 0..1
    lag_s: float = 3.0  # time the draw takes to ramp to a new limit
    taper_soc: float = 0.8  # above this state of charge the draw falls towards zero at 100 %
    sleep_after_s: float | None = None  # offered nothing this long, it sleeps; None = never
    wake_after_s: float | None = 0.0  # offered enough this long wakes it; None = only a CP cycle


@dataclass(frozen=True, slots=True)
class ApplianceSpec:
    """A household consumer switched on at times of day (fixed, random or periodic)."""

    name: str
    power_w: float
    phase_mask: int  # bit0 = L1
    duration_s: int
    at_s: tuple[int, ...] = ()  # fixed start times of day
    random_count: int = 0  # random starts per day ...
    random_window_s: tuple[int, int] = (0, DAY_S)  # ... within this window of the day
    every_s: int = 0  # periodic with this period (random phase), 0 = not periodic


@dataclass(frozen=True, slots=True)
class HouseholdSpec:
    """Household (non-EVSE) consumption: a daily curve with noise, plus appliances."""

    base_w: tuple[tuple[int, float], ...]  # (time of day s, total W), piecewise linear, daily
    phase_split: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    noise_pct: float = 5.0  # standard deviation of a slow random wander, % of the base
    noise_tau_s: float = 60.0  # its correlation time
    appliances: tuple[ApplianceSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class CloudSpec:
    per_hour: float = 0.0  # mean number of cloud dips per daylight hour
    mean_duration_s: float = 300.0
    depth: tuple[float, float] = (0.3, 0.8)  # fraction of production lost, uniform in range


@dataclass(frozen=True, slots=True)
class PvSpec:
    """A PV plant behind a three-phase symmetric inverter."""

    peak_kw: float
    sunrise_s: int  # time of day
    sunset_s: int
    clouds: CloudSpec = field(default_factory=CloudSpec)


@dataclass(frozen=True, slots=True)
class BatterySpec:
    """A home battery that balances household load against PV (it does not see the EVSEs)."""

    capacity_kwh: float
    max_power_w: float
    soc: float = 0.5


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """How a measuring point reports: `delay_s` late, with gaussian noise in % of the value."""

    delay_s: int = 0
    noise_pct: float = 0.0
    energy_step_wh: float = 10.0  # resolution of the energy counter


@dataclass(frozen=True, slots=True)
class MetersSpec:
    grid: MeterSpec = field(default_factory=MeterSpec)
    pv: MeterSpec = field(default_factory=MeterSpec)
    evse: MeterSpec = field(default_factory=MeterSpec)


class FaultKind(StrEnum):
    METER_STALE = "meter_stale"  # the meter keeps repeating one reading
    METER_DROPOUT = "meter_dropout"  # the meter delivers no reading
    EVSE_OFFLINE = "evse_offline"  # no reading, commands are not received
    CAR_UNDERDRAW = "car_underdraw"  # the car draws less than offered


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: FaultKind
    target: str  # meter name ("grid", "pv"), EVSE id or car id
    start_s: int
    end_s: int
    factor: float = 1.0  # car_underdraw: draws offered × factor − offset_ma
    offset_ma: int = 0
    fail_safe_ma: int | None = None  # evse_offline: current it falls back to; None = keeps last


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    site: Site
    cars: tuple[CarSpec, ...]
    duration_s: int
    cycle_s: int = 3  # period of the control loop
    seed: int = 0
    start_s: int = 0  # time of day at the start of the run
    description: str = ""
    household: HouseholdSpec | None = None
    pv: PvSpec | None = None
    battery: BatterySpec | None = None
    meters: MetersSpec = field(default_factory=MetersSpec)
    faults: tuple[FaultSpec, ...] = ()

    def car(self, car_id: str) -> CarSpec:
        return _by_id(self.cars, car_id)


# ---------------------------------------------------------------------------------------
# Time values.

_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")


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
            scale = {"h": 3600.0, "m": 60.0, "s": 1.0}
            return round(sum(float(n) * scale[u] for n, u in parts))
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


def resolve_time(value: object, start_tod: int, not_before: int) -> int:
    """A point in time as seconds since the start of the run.

    A number is seconds since the start; "+30m" an offset from the start; "HH:MM" the first
    time that clock time comes round at or after `not_before` seconds into the run.
    """
    if isinstance(value, str) and value.strip().startswith("+"):
        return parse_duration(value.strip()[1:])
    if isinstance(value, str) and ":" in value:
        tod = parse_time_of_day(value)
        t = (tod - start_tod) % DAY_S
        if t < not_before:
            t += math.ceil((not_before - t) / DAY_S) * DAY_S
        return t
    return parse_duration(value)


# ---------------------------------------------------------------------------------------
# Loading and validation.


class _Obj:
    """A JSON object being read: typed getters that collect errors instead of raising."""

    def __init__(self, data: object, path: str, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        self.used: set[str] = set()
        if isinstance(data, Mapping):
            self.data: Mapping[str, Any] = data
        else:
            self.data = {}
            errors.append(f"{path}: expected an object")

    def err(self, key: str, message: str) -> None:
        self.errors.append(f"{self.path}.{key}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def _missing(self, key: str) -> None:
        self.err(key, "required")

    def num(
        self, key: str, default: float | None = None, *, lo: float | None = None,
        hi: float | None = None, lo_open: bool = False,
    ) -> float:
        v = self.raw(key)
        if v is None:
            if default is None:
                self._missing(key)
                return lo if lo is not None else 0.0
            return default
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            self.err(key, f"expected a number, got {v!r}")
            return default if default is not None else (lo if lo is not None else 0.0)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            self.err(key, f"must be {'>' if lo_open else '≥'} {lo:g}, got {v:g}")
        if hi is not None and v > hi:
            self.err(key, f"must be ≤ {hi:g}, got {v:g}")
        return float(v)

    def opt_num(self, key: str, default: float | None, *, lo: float = 0.0) -> float | None:
        if key in self.data and self.data[key] is None:
            self.used.add(key)
            return None
        if not self.has(key):
            self.used.add(key)
            return default
        return self.num(key, lo=lo)

    def int_(self, key: str, default: int | None = None, **kw: Any) -> int:
        v = self.raw(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            self.err(key, f"expected an integer, got {v!r}")
            return default if default is not None else 0
        return round(self.num(key, None if default is None else float(default), **kw))

    def str_(self, key: str, default: str | None = None) -> str:
        v = self.raw(key)
        if v is None:
            if default is None:
                self._missing(key)
                return ""
            return default
        if not isinstance(v, str) or (default is None and not v):
            self.err(key, f"expected a non-empty string, got {v!r}")
            return default or ""
        return v

    def opt_str(self, key: str) -> str | None:
        v = self.raw(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            self.err(key, f"expected a non-empty string or null, got {v!r}")
            return None
        return v

    def duration(self, key: str, default: int | None = None) -> int:
        v = self.raw(key)
        if v is None:
            if default is None:
                self._missing(key)
                return 0
            return default
        try:
            return parse_duration(v)
        except ValueError as e:
            self.err(key, str(e))
            return default or 0

    def opt_duration(self, key: str, default: float | None) -> float | None:
        if key in self.data and self.data[key] is None:
            self.used.add(key)
            return None
        if not self.has(key):
            self.used.add(key)
            return default
        d = self.duration(key)
        if d < 0:
            self.err(key, "must not be negative")
        return float(d)

    def tod(self, key: str, default: int | None = None) -> int:
        v = self.raw(key)
        if v is None:
            if default is None:
                self._missing(key)
            return default or 0
        try:
            return parse_time_of_day(v)
        except ValueError as e:
            self.err(key, str(e))
            return 0

    def when(self, key: str, start_tod: int, not_before: int, default: int | None = None) -> int:
        v = self.raw(key)
        if v is None:
            if default is None:
                self._missing(key)
                return not_before
            return default
        try:
            return resolve_time(v, start_tod, not_before)
        except ValueError as e:
            self.err(key, str(e))
            return not_before

    def list_(self, key: str, required: bool = False) -> list[Any]:
        v = self.raw(key)
        if v is None:
            if required:
                self._missing(key)
            return []
        if not isinstance(v, list):
            self.err(key, "expected a list")
            return []
        return v

    def obj(self, key: str) -> _Obj | None:
        v = self.raw(key)
        if v is None:
            return None
        return _Obj(v, f"{self.path}.{key}", self.errors)

    def items(self, key: str, required: bool = False) -> Iterator[_Obj]:
        for i, item in enumerate(self.list_(key, required)):
            yield _Obj(item, f"{self.path}.{key}[{i}]", self.errors)

    def done(self) -> None:
        for key in self.data:
            if key not in self.used and not key.startswith("_"):
                self.err(key, "unknown key")


def _phase_mask(o: _Obj, key: str) -> int:
    phases = o.list_(key)
    if not phases:
        return 0b111
    mask = 0
    for p in phases:
        if isinstance(p, bool) or p not in (1, 2, 3):
            o.err(key, f"phases are 1, 2 or 3, got {p!r}")
            continue
        mask |= 1 << (p - 1)
    return mask or 0b111


def _read_site(o: _Obj) -> SiteLimits:
    max_ma = o.int_("max_current_ma", lo=1)
    reserve = o.int_("reserve_ma", 0, lo=0)
    if reserve >= max_ma > 0:
        o.err("reserve_ma", "must be smaller than max_current_ma")
    limits = SiteLimits(
        max_current_ma=max_ma,
        reserve_ma=reserve,
        max_imbalance_ma=o.int_("max_imbalance_ma", 0, lo=0),
        max_evse_current_ma=o.int_("max_evse_current_ma", 0, lo=0),
        voltage_v=o.num("voltage_v", 230.0, lo=100.0, hi=400.0),
    )
    o.done()
    return limits


def _read_group(o: _Obj) -> GroupSpec:
    g = GroupSpec(
        id=o.str_("id"),
        max_current_ma=o.int_("max_current_ma", lo=1),
        parent=o.opt_str("parent"),
        prio=o.int_("prio", 1),
    )
    o.done()
    return g


def _read_evse(o: _Obj) -> EvseSpec:
    e = EvseSpec(
        id=o.str_("id"),
        group=o.opt_str("group"),
        prio=o.int_("prio", 1),
        min_ma=o.int_("min_ma", IEC_MIN_MA, lo=IEC_MIN_MA, hi=MAX_EVSE_MA),
        max_ma=o.int_("max_ma", 16_000, lo=IEC_MIN_MA, hi=MAX_EVSE_MA),
        phase_rotation=o.int_("phase_rotation", 0),
        used_phases=o.int_("used_phases", 3),
        interface=o.str_("interface", "http"),
    )
    if e.interface not in INTERFACES:
        o.err("interface", f"must be one of {', '.join(INTERFACES)}, got {e.interface!r}")
    if e.min_ma > e.max_ma:
        o.err("min_ma", f"must not exceed max_ma ({e.max_ma})")
    if e.phase_rotation not in (0, 120, 240):
        o.err("phase_rotation", f"must be 0, 120 or 240, got {e.phase_rotation}")
    if e.used_phases not in (1, 3):
        o.err("used_phases", f"must be 1 or 3, got {e.used_phases}")
    o.done()
    return e


def _read_car(o: _Obj, start_tod: int) -> CarSpec:
    arrive = o.when("arrive", start_tod, 0)
    leave = o.when("leave", start_tod, arrive + 1)
    c = CarSpec(
        id=o.str_("id"),
        evse=o.str_("evse"),
        arrive_s=arrive,
        leave_s=leave,
        need_kwh=o.num("need_kwh", lo=0.0),
        max_ma=o.int_("max_ma", 16_000, lo=1, hi=MAX_EVSE_MA),
        phases=o.int_("phases", 3),
        min_start_ma=o.int_("min_start_ma", IEC_MIN_MA, lo=1),
        capacity_kwh=o.num("capacity_kwh", 60.0, lo=0.0, lo_open=True),
        soc=o.num("soc", 0.3, lo=0.0, hi=1.0),
        lag_s=float(o.duration("lag_s", 3)),
        taper_soc=o.num("taper_soc", 0.8, lo=0.0, hi=1.0, lo_open=True),
        sleep_after_s=o.opt_duration("sleep_after_s", None),
        wake_after_s=o.opt_duration("wake_after_s", 0.0),
    )
    if arrive < 0:
        o.err("arrive", "must not be before the start")
    if leave <= arrive:
        o.err("leave", "must be after arrive")
    if c.phases not in (1, 3):
        o.err("phases", f"must be 1 or 3, got {c.phases}")
    if c.min_start_ma > c.max_ma:
        o.err("min_start_ma", f"must not exceed max_ma ({c.max_ma})")
    if c.lag_s < 0:
        o.err("lag_s", "must not be negative")
    if c.sleep_after_s is not None and c.sleep_after_s <= 0:
        o.err("sleep_after_s", "must be positive or null")
    o.done()
    return c


def _read_appliance(o: _Obj) -> ApplianceSpec:
    name = o.str_("name")
    power = o.num("power_w", lo=0.0, lo_open=True)
    mask = _phase_mask(o, "phases")
    duration = o.duration("duration")
    if duration <= 0:
        o.err("duration", "must be positive")
    at = tuple(_tod_list(o, "at"))
    random_count = 0
    window = (0, DAY_S)
    r = o.obj("random")
    if r is not None:
        random_count = r.int_("count", lo=0)
        w = r.list_("window")
        if w:
            if len(w) != 2:
                r.err("window", "expected [from, to]")
            else:
                try:
                    window = (parse_time_of_day(w[0]), parse_time_of_day(w[1]))
                except ValueError as e:
                    r.err("window", str(e))
                if window[1] <= window[0]:
                    r.err("window", "to must be after from (within one day)")
        r.done()
    every = o.duration("every", 0)
    if every < 0 or (every and every < duration):
        o.err("every", "must be at least the duration")
    if not at and not random_count and not every:
        o.err("at", "an appliance needs 'at', 'random' or 'every'")
    o.done()
    return ApplianceSpec(name, power, mask, duration, at, random_count, window, every)


def _tod_list(o: _Obj, key: str) -> list[int]:
    out = []
    for v in o.list_(key):
        try:
            out.append(parse_time_of_day(v))
        except ValueError as e:
            o.err(key, str(e))
    return out


def _read_household(o: _Obj) -> HouseholdSpec:
    points: list[tuple[int, float]] = []
    for i, p in enumerate(o.list_("base_w", required=True)):
        if not (isinstance(p, list) and len(p) == 2):
            o.err(f"base_w[{i}]", 'expected ["HH:MM", watts]')
            continue
        try:
            tod = parse_time_of_day(p[0])
        except ValueError as e:
            o.err(f"base_w[{i}]", str(e))
            continue
        w = p[1]
        if isinstance(w, bool) or not isinstance(w, int | float) or w < 0:
            o.err(f"base_w[{i}]", f"watts must be a non-negative number, got {w!r}")
            continue
        points.append((tod, float(w)))
    times = [t for t, _ in points]
    if times != sorted(set(times)):
        o.err("base_w", "times must be increasing")
    split_raw = o.list_("phase_split")
    split = (1 / 3, 1 / 3, 1 / 3)
    if split_raw:
        ok = len(split_raw) == 3 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in split_raw
        )
        if not ok or abs(sum(split_raw) - 1.0) > 0.01:
            o.err("phase_split", "expected three non-negative shares summing to 1")
        else:
            split = (float(split_raw[0]), float(split_raw[1]), float(split_raw[2]))
    hh = HouseholdSpec(
        base_w=tuple(points),
        phase_split=split,
        noise_pct=o.num("noise_pct", 5.0, lo=0.0, hi=100.0),
        noise_tau_s=float(o.duration("noise_tau_s", 60)),
        appliances=tuple(_read_appliance(a) for a in o.items("appliances")),
    )
    if hh.noise_tau_s <= 0:
        o.err("noise_tau_s", "must be positive")
    o.done()
    return hh


def _read_pv(o: _Obj) -> PvSpec:
    sunrise = o.tod("sunrise")
    sunset = o.tod("sunset")
    if sunset <= sunrise:
        o.err("sunset", "must be after sunrise")
    clouds = CloudSpec()
    c = o.obj("clouds")
    if c is not None:
        depth_raw = c.list_("depth")
        depth = (0.3, 0.8)
        if depth_raw:
            if (
                len(depth_raw) != 2
                or not all(isinstance(v, int | float) and 0 <= v <= 1 for v in depth_raw)
                or depth_raw[0] > depth_raw[1]
            ):
                c.err("depth", "expected [low, high] within 0..1")
            else:
                depth = (float(depth_raw[0]), float(depth_raw[1]))
        clouds = CloudSpec(
            per_hour=c.num("per_hour", 0.0, lo=0.0),
            mean_duration_s=float(c.duration("mean_duration", 300)),
            depth=depth,
        )
        if clouds.mean_duration_s <= 0:
            c.err("mean_duration", "must be positive")
        c.done()
    pv = PvSpec(o.num("peak_kw", lo=0.0, lo_open=True), sunrise, sunset, clouds)
    o.done()
    return pv


def _read_battery(o: _Obj) -> BatterySpec:
    b = BatterySpec(
        capacity_kwh=o.num("capacity_kwh", lo=0.0, lo_open=True),
        max_power_w=o.num("max_power_w", lo=0.0, lo_open=True),
        soc=o.num("soc", 0.5, lo=0.0, hi=1.0),
    )
    o.done()
    return b


def _read_meter(o: _Obj | None) -> MeterSpec:
    if o is None:
        return MeterSpec()
    m = MeterSpec(
        delay_s=o.duration("delay_s", 0),
        noise_pct=o.num("noise_pct", 0.0, lo=0.0, hi=50.0),
        energy_step_wh=o.num("energy_step_wh", 10.0, lo=0.0, lo_open=True),
    )
    if m.delay_s < 0:
        o.err("delay_s", "must not be negative")
    o.done()
    return m


def _read_fault(o: _Obj, start_tod: int, duration: int) -> FaultSpec:
    kind_raw = o.str_("type")
    try:
        kind = FaultKind(kind_raw)
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        o.err("type", f"unknown fault {kind_raw!r} (one of {known})")
        kind = FaultKind.METER_DROPOUT
    target_key = {
        FaultKind.METER_STALE: "meter",
        FaultKind.METER_DROPOUT: "meter",
        FaultKind.EVSE_OFFLINE: "evse",
        FaultKind.CAR_UNDERDRAW: "car",
    }[kind]
    target = o.str_(target_key)
    start = o.when("from", start_tod, 0, default=0)
    end = o.when("to", start_tod, start + 1, default=max(duration, start + 1))
    if end <= start:
        o.err("to", "must be after from")
    factor = 1.0
    offset = 0
    fail_safe: int | None = None
    if kind is FaultKind.CAR_UNDERDRAW:
        factor = o.num("factor", 1.0, lo=0.0, hi=1.0)
        offset = o.int_("offset_ma", 0, lo=0)
        if factor == 1.0 and offset == 0:
            o.err("factor", "a car_underdraw needs factor < 1 or offset_ma > 0")
    if kind is FaultKind.EVSE_OFFLINE and o.has("fail_safe_ma"):
        fail_safe = o.int_("fail_safe_ma", lo=0)
    o.done()
    return FaultSpec(kind, target, start, end, factor, offset, fail_safe)


def scenario_from_dict(data: Mapping[str, Any], source: str = "") -> Scenario:
    """Build and validate a scenario from parsed JSON; raises ScenarioError listing all problems."""
    errors: list[str] = []
    o = _Obj(data, "$", errors)
    name = o.str_("name")
    description = o.str_("description", "")
    start_tod = o.tod("start", 0)
    duration = o.duration("duration")
    if duration <= 0:
        o.err("duration", "must be positive")
    cycle = o.duration("cycle_s", 3)
    if cycle < 1 or (duration > 0 and cycle > duration):
        o.err("cycle_s", "must be at least 1 s and at most the duration")
    seed = o.int_("seed", 0)

    site_o = o.obj("site")
    if site_o is None:
        o.err("site", "required")
        limits = SiteLimits(max_current_ma=1)
    else:
        limits = _read_site(site_o)
    groups = tuple(_read_group(g) for g in o.items("groups"))
    evses = tuple(_read_evse(e) for e in o.items("evses", required=True))
    cars = tuple(_read_car(c, start_tod) for c in o.items("cars"))

    hh_o = o.obj("household")
    household = _read_household(hh_o) if hh_o is not None else None
    pv_o = o.obj("pv")
    pv = _read_pv(pv_o) if pv_o is not None else None
    bat_o = o.obj("battery")
    battery = _read_battery(bat_o) if bat_o is not None else None
    meters_o = o.obj("meters")
    if meters_o is None:
        meters = MetersSpec()
    else:
        meters = MetersSpec(
            grid=_read_meter(meters_o.obj("grid")),
            pv=_read_meter(meters_o.obj("pv")),
            evse=_read_meter(meters_o.obj("evse")),
        )
        meters_o.done()
    faults = tuple(_read_fault(f, start_tod, duration) for f in o.items("faults"))
    o.done()

    _check_references(groups, evses, cars, faults, duration, pv is not None, errors)
    if not evses and not any("evses" in e for e in errors):
        errors.append("$.evses: at least one EVSE is required")
    if errors:
        raise ScenarioError(errors, source)
    return Scenario(
        name=name,
        description=description,
        start_s=start_tod,
        duration_s=duration,
        cycle_s=cycle,
        seed=seed,
        site=Site(limits, groups, evses),
        cars=cars,
        household=household,
        pv=pv,
        battery=battery,
        meters=meters,
        faults=faults,
    )


def _dupes(ids: list[str]) -> set[str]:
    seen: set[str] = set()
    dupes: set[str] = set()
    for i in ids:
        if i in seen:
            dupes.add(i)
        seen.add(i)
    return dupes


def _check_references(
    groups: tuple[GroupSpec, ...],
    evses: tuple[EvseSpec, ...],
    cars: tuple[CarSpec, ...],
    faults: tuple[FaultSpec, ...],
    duration: int,
    has_pv: bool,
    errors: list[str],
) -> None:
    group_ids = {g.id for g in groups}
    evse_ids = {e.id for e in evses}
    car_ids = {c.id for c in cars}
    for d in sorted(_dupes([g.id for g in groups])):
        errors.append(f"$.groups: duplicate id {d!r}")
    for d in sorted(_dupes([e.id for e in evses])):
        errors.append(f"$.evses: duplicate id {d!r}")
    for d in sorted(_dupes([c.id for c in cars])):
        errors.append(f"$.cars: duplicate id {d!r}")
    for d in sorted(group_ids & evse_ids):
        errors.append(f"$.groups: id {d!r} is also an EVSE id")
    parents = {g.id: g.parent for g in groups}
    for i, g in enumerate(groups):
        if g.parent is not None and g.parent not in group_ids:
            errors.append(f"$.groups[{i}].parent: unknown group {g.parent!r}")
        seen = {g.id}
        p = g.parent
        while p is not None and p in parents:
            if p in seen:
                errors.append(f"$.groups[{i}].parent: groups form a cycle through {g.id!r}")
                break
            seen.add(p)
            p = parents[p]
    builtin = [i for i, e in enumerate(evses) if e.interface == "powerbrain"]
    for i in builtin[1:]:
        errors.append(f"$.evses[{i}].interface: the controller has one EVSE of its own "
                      f"(already {evses[builtin[0]].id!r})")
    for i, e in enumerate(evses):
        if e.group is not None and e.group not in group_ids:
            errors.append(f"$.evses[{i}].group: unknown group {e.group!r}")
    by_evse: dict[str, list[CarSpec]] = {}
    for i, c in enumerate(cars):
        if c.evse not in evse_ids:
            errors.append(f"$.cars[{i}].evse: unknown EVSE {c.evse!r}")
        if duration > 0 and c.arrive_s >= duration:
            errors.append(f"$.cars[{i}].arrive: after the end of the run ({duration} s)")
        by_evse.setdefault(c.evse, []).append(c)
    for evse_id, sessions in by_evse.items():
        sessions.sort(key=lambda c: c.arrive_s)
        for a, b in itertools.pairwise(sessions):
            if b.arrive_s < a.leave_s:
                errors.append(
                    f"$.cars: {a.id!r} and {b.id!r} overlap on EVSE {evse_id!r}"
                )
    spells: dict[tuple[FaultKind, str], list[FaultSpec]] = {}
    for f in faults:
        spells.setdefault((f.kind, f.target), []).append(f)
    for (kind, target), same in spells.items():
        same.sort(key=lambda f: f.start_s)
        for fa, fb in itertools.pairwise(same):
            if fb.start_s < fa.end_s:
                errors.append(f"$.faults: two {kind.value} faults of {target!r} overlap")
    for i, f in enumerate(faults):
        if f.kind in (FaultKind.METER_STALE, FaultKind.METER_DROPOUT):
            if f.target not in ("grid", "pv"):
                errors.append(f"$.faults[{i}].meter: unknown meter {f.target!r} (grid or pv)")
            elif f.target == "pv" and not has_pv:
                errors.append(f"$.faults[{i}].meter: the site has no PV meter")
        elif f.kind is FaultKind.EVSE_OFFLINE and f.target not in evse_ids:
            errors.append(f"$.faults[{i}].evse: unknown EVSE {f.target!r}")
        elif f.kind is FaultKind.EVSE_OFFLINE and any(
                e.id == f.target and e.interface == "powerbrain" for e in evses):
            errors.append(f"$.faults[{i}].evse: the controller's own EVSE cannot stop "
                          "answering the controller")
        elif f.kind is FaultKind.EVSE_OFFLINE and f.fail_safe_ma:
            e = next(e for e in evses if e.id == f.target)
            if f.fail_safe_ma < e.min_ma:
                errors.append(
                    f"$.faults[{i}].fail_safe_ma: must be 0 or at least the EVSE's min_ma"
                )
        elif f.kind is FaultKind.CAR_UNDERDRAW and f.target not in car_ids:
            errors.append(f"$.faults[{i}].car: unknown car {f.target!r}")


SCENARIO_DIR = "scenarios"


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped with chargebrain."""
    root = resources.files("chargebrain.sim").joinpath(SCENARIO_DIR)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


YAML_SUFFIXES = (".yaml", ".yml")


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by shipped name ("home") or from a file: JSON, or YAML when the
    name ends in .yaml or .yml (the same object; see scenario_yaml.py)."""
    text: str
    source = str(name_or_path)
    path = Path(name_or_path)
    yaml = path.suffix.lower() in YAML_SUFFIXES
    if yaml or path.suffix.lower() == ".json" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ScenarioError([f"cannot read it: {why}"], source) from None
        return loads_scenario_yaml(text, source) if yaml else loads_scenario(text, source)
    res = resources.files("chargebrain.sim").joinpath(SCENARIO_DIR, f"{name_or_path}.json")
    if not res.is_file():
        raise ScenarioError([f"no such scenario {source!r} ({', '.join(shipped_scenarios())})"])
    return loads_scenario(res.read_text(encoding="utf-8"), source)


def loads_scenario_yaml(text: str, source: str = "") -> Scenario:
    """Parse and validate a scenario from YAML text (needs PyYAML, in the `sim` extra)."""
    try:
        from chargebrain.sim.scenario_yaml import YamlError, parse_yaml
    except ImportError:
        raise ScenarioError(["YAML scenarios need PyYAML: pip install 'chargebrain[sim]'"],
                            source) from None
    try:
        data = parse_yaml(text)
    except YamlError as e:
        raise ScenarioError([f"not valid YAML: {e}"], source) from None
    if not isinstance(data, dict):
        raise ScenarioError(["$: expected an object"], source)
    return scenario_from_dict(data, source)


def loads_scenario(text: str, source: str = "") -> Scenario:
    """Parse and validate a scenario from JSON text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScenarioError([f"not valid JSON: {e}"], source) from e
    if not isinstance(data, dict):
        raise ScenarioError(["$: expected an object"], source)
    return scenario_from_dict(data, source)
