"""What a formula can see while it is evaluated: variables, date, parameters and prices.

`EvalContext` is the protocol a compiled formula calls into; `DictEvalContext` is the plain
dictionary-backed implementation the charging manager fills once per cycle (and tests use);
`OverlayContext` replaces a few values of another context (e.g. `CM._org_surplus`).
All names are case-insensitive: device ids are stored upper-case, every other name
lower-case. This module must never read a clock, a file or the network; the time is the
`now` passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import NamedTuple, Protocol

from chargebrain.core.formula.prices import PriceSchedule, price_extreme

# Namespaces a variable reference can live in.
NS_DEVICE = "dev"  # M3.current, E1.power_w, V1.soc: name = device id (upper-case)
NS_SELF = "self"  # bare power_w, dt, lb_cur: the device the formula belongs to
NS_CM = "cm"  # CM.<var>: Charging Manager variables
NS_PB = "pb"  # PB.input1, PB.input2
NS_GM = "gm"  # GM.<meter>.<field> (name = meter) and GM.<field> (name = "")
NS_DATE = "date"  # date.hour etc., derived from `now` and the time zone

DATE_FIELDS = frozenset(
    {
        "year",
        "month",
        "day",
        "weekday",
        "yearday",
        "hour",
        "minute",
        "second",
        "daysecond",
        "dayminute",
        "dst",
        "timestamp",
    }
)

_PHASE_FIELDS = ("current_l1", "current_l1", "current_l2", "current_l3")


class VarRef(NamedTuple):
    """A resolved variable name: namespace, owner (device id / meter name / "") and field."""

    namespace: str
    name: str
    field: str

    @property
    def text(self) -> str:
        """Canonical spelling, e.g. `M3.current`, `CM._price`, `date.hour`, `power_w`."""
        ns = self.namespace
        if ns == NS_DEVICE:
            return f"{self.name}.{self.field}"
        if ns == NS_SELF:
            return self.field
        if ns == NS_GM:
            return f"GM.{self.name}.{self.field}" if self.name else f"GM.{self.field}"
        prefix = {NS_CM: "CM", NS_PB: "PB", NS_DATE: "date"}[ns]
        return f"{prefix}.{self.field}"


class EvalContext(Protocol):
    """Everything a compiled formula asks of its surroundings."""

    def resolve(self, namespace: str, name: str, field: str) -> float | None:
        """Value of a variable, or None if it does not exist (formula then sees 0)."""
        ...

    def param(self, pid: int) -> float | None:
        """Rule-set parameter `pid`, or None if not set."""
        ...

    def price_extreme(self, until_daysecond: float, cheapest: bool) -> tuple[float, float] | None:
        """(price, start as seconds from today's local midnight) of the cheapest (or
        dearest) known price from now until the next local `until_daysecond`."""
        ...


def date_fields(now: float, tz: tzinfo | None) -> dict[str, float]:
    """The `date.*` values for Unix time `now` as wall-clock time in `tz` (UTC if None).

    month is 0-11, day 1-31, weekday 0 = Sunday .. 6 = Saturday, yearday 0-365,
    dst 1 while daylight-saving time is in effect.
    """
    dt = datetime.fromtimestamp(now, tz or UTC)
    offset = dt.dst()
    return {
        "year": float(dt.year),
        "month": float(dt.month - 1),
        "day": float(dt.day),
        "weekday": float((dt.weekday() + 1) % 7),
        "yearday": float(dt.timetuple().tm_yday - 1),
        "hour": float(dt.hour),
        "minute": float(dt.minute),
        "second": float(dt.second),
        "daysecond": float(dt.hour * 3600 + dt.minute * 60 + dt.second),
        "dayminute": float(dt.hour * 60 + dt.minute),
        "dst": 1.0 if offset is not None and offset.total_seconds() != 0 else 0.0,
        "timestamp": float(now),
    }


def _fields(values: Mapping[str, float]) -> dict[str, float]:
    return {str(k).lower(): float(v) for k, v in values.items()}


class DictEvalContext:
    """Dictionary-backed EvalContext.

    devices: {"M3": {"current_l1": ..., "power_w": ...}, "E1": {...}}
    cm: {"_price": 31.5, "avail": 80}; pb: {"input1": 1}; gm: {"grid_demand": {...},
    "": {global fields}}; params: {12: 480}. `self_device` names the device bare names
    refer to, `self_values` adds or overrides bare names (e.g. `dt`, `lb_cur`).
    `phase` (1..3) selects which `current_lN` answers `current` when a device has no
    explicit `current` value.

    The manager may keep one instance and update it with the set_* methods each cycle;
    `derive` gives a cheap view for another self device or phase that shares the data.
    Device values may also be left to a filler (`defer_devices`) that runs when a formula
    first asks for one, so a cycle in which no formula looks at devices does not build
    them.
    """

    __slots__ = (
        "_cm",
        "_date",
        "_devices",
        "_gm",
        "_params",
        "_pb",
        "_pending",
        "_self_id",
        "_self_values",
        "now",
        "phase",
        "prices",
        "tz",
    )

    def __init__(
        self,
        *,
        now: float = 0.0,
        tz: tzinfo | None = None,
        devices: Mapping[str, Mapping[str, float]] | None = None,
        cm: Mapping[str, float] | None = None,
        pb: Mapping[str, float] | None = None,
        gm: Mapping[str, Mapping[str, float]] | None = None,
        params: Mapping[int, float] | None = None,
        prices: PriceSchedule | None = None,
        self_device: str | None = None,
        self_values: Mapping[str, float] | None = None,
        phase: int = 1,
    ) -> None:
        self.now = float(now)
        self.tz = tz
        self.prices = prices
        self.phase = phase
        self._devices: dict[str, dict[str, float]] = {
            k.upper(): _fields(v) for k, v in (devices or {}).items()
        }
        self._cm: dict[str, float] = _fields(cm or {})
        self._pb: dict[str, float] = _fields(pb or {})
        self._gm: dict[str, dict[str, float]] = {
            k.lower(): _fields(v) for k, v in (gm or {}).items()
        }
        self._params: dict[int, float] = {int(k): float(v) for k, v in (params or {}).items()}
        self._self_id = self_device.upper() if self_device else ""
        self._self_values: dict[str, float] = _fields(self_values or {})
        self._date: dict[str, float] | None = None
        # A filler of device values not run yet (shared with derived views).
        self._pending: list[Callable[[DictEvalContext], None]] = []

    # -- filling -----------------------------------------------------------------------

    def set_now(self, now: float, tz: tzinfo | None = None) -> None:
        self.now = float(now)
        if tz is not None:
            self.tz = tz
        self._date = None

    def set_device(self, dev_id: str, values: Mapping[str, float]) -> None:
        self._devices[dev_id.upper()] = _fields(values)

    def set_device_values(self, dev_id: str, values: dict[str, float]) -> None:
        """Like set_device for values whose names are lower-case already and whose values
        are floats: the dict is kept as it is (and must not be changed afterwards)."""
        self._devices[dev_id.upper()] = values

    def defer_devices(self, fill: Callable[[DictEvalContext], None]) -> None:
        """Have `fill(ctx)` set the device values when a device value is first asked for
        (or at `materialize`), replacing a filler that has not run yet. Until it runs, the
        values set before stay; the filler should set every device."""
        self._pending[:] = [fill]

    def materialize(self) -> None:
        """Run a deferred filler now (nothing if there is none)."""
        if self._pending:
            self._pending.pop()(self)

    def remove_device(self, dev_id: str) -> None:
        self._devices.pop(dev_id.upper(), None)

    def set_cm(self, name: str, value: float) -> None:
        self._cm[name.lower()] = float(value)

    def update_cm(self, values: Mapping[str, float]) -> None:
        self._cm.update(_fields(values))

    def set_pb(self, name: str, value: float) -> None:
        self._pb[name.lower()] = float(value)

    def set_gm(self, meter: str, values: Mapping[str, float]) -> None:
        self._gm[meter.lower()] = _fields(values)

    def set_param(self, pid: int, value: float) -> None:
        self._params[int(pid)] = float(value)

    def cm_value(self, name: str) -> float | None:
        return self._cm.get(name.lower())

    def derive(
        self,
        *,
        self_device: str | None = None,
        self_values: Mapping[str, float] | None = None,
        phase: int | None = None,
    ) -> DictEvalContext:
        """A view sharing all data, with another self device / bare values / phase."""
        other = DictEvalContext.__new__(DictEvalContext)
        other.now = self.now
        other.tz = self.tz
        other.prices = self.prices
        other.phase = self.phase if phase is None else phase
        other._devices = self._devices
        other._cm = self._cm
        other._pb = self._pb
        other._gm = self._gm
        other._params = self._params
        other._date = self._date
        other._pending = self._pending
        other._self_id = self_device.upper() if self_device is not None else self._self_id
        other._self_values = _fields(self_values) if self_values is not None else self._self_values
        return other

    # -- EvalContext ---------------------------------------------------------------------

    def date_values(self) -> dict[str, float]:
        d = self._date
        if d is None:
            d = self._date = date_fields(self.now, self.tz)
        return d

    def resolve(self, namespace: str, name: str, field: str) -> float | None:
        if namespace == NS_DEVICE:
            if self._pending:
                self.materialize()
            dev = self._devices.get(name)
            if dev is None:
                return None
            v = dev.get(field)
            if v is None and field == "current":
                return dev.get(_PHASE_FIELDS[self.phase if 1 <= self.phase <= 3 else 1])
            return v
        if namespace == NS_SELF:
            v = self._self_values.get(field)
            if v is not None or not self._self_id:
                return v
            return self.resolve(NS_DEVICE, self._self_id, field)
        if namespace == NS_CM:
            return self._cm.get(field)
        if namespace == NS_DATE:
            return self.date_values().get(field)
        if namespace == NS_PB:
            return self._pb.get(field)
        if namespace == NS_GM:
            meter = self._gm.get(name)
            return None if meter is None else meter.get(field)
        return None

    def param(self, pid: int) -> float | None:
        return self._params.get(pid)

    def price_extreme(self, until_daysecond: float, cheapest: bool) -> tuple[float, float] | None:
        return price_extreme(self.prices, self.now, self.tz, until_daysecond, cheapest)


class OverlayContext:
    """Another context with some variables replaced, e.g. {("cm", "", "_org_surplus"): w}."""

    __slots__ = ("_base", "_values")

    def __init__(self, base: EvalContext, values: Mapping[tuple[str, str, str], float]) -> None:
        self._base = base
        self._values = {
            (ns, name.upper() if ns == NS_DEVICE else name.lower(), field.lower()): float(v)
            for (ns, name, field), v in values.items()
        }

    def resolve(self, namespace: str, name: str, field: str) -> float | None:
        v = self._values.get((namespace, name, field))
        return v if v is not None else self._base.resolve(namespace, name, field)

    def param(self, pid: int) -> float | None:
        return self._base.param(pid)

    def price_extreme(self, until_daysecond: float, cheapest: bool) -> tuple[float, float] | None:
        return self._base.price_extreme(until_daysecond, cheapest)
