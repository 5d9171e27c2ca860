"""The charging profiles an OCPP backend sets on the gateway's charge point, and the limit
they make at a given moment (OCPP 1.6, Smart Charging).

A profile has a purpose: `ChargePointMaxProfile` (connector 0: the whole charge point),
`TxDefaultProfile` (connector 0 for every connector, or one connector) or `TxProfile`
(the running transaction of one connector; it ends with it). Per purpose the profile of
the highest stack level whose validity and schedule cover the moment counts (at equal
levels, one set on the connector before one set on connector 0); the limit of a
connector is the lower of its ChargePointMaxProfile's and of its TxProfile's or, without
one, its TxDefaultProfile's. A schedule is `Absolute` (from its `startSchedule`),
`Recurring` (its start repeated daily or weekly) or `Relative` (from the start of the
transaction, or from now when none runs); the period in force is the last one begun, and
nothing is in force before the schedule's start or after its `duration`. Limits in W are
per phase at 230 V over `numberPhases` (3 unless given). A new profile replaces one with
the same id, or with the same purpose and stack level on the same connector.

Pure: no I/O, no clock (times are passed in, seconds since the epoch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from chargebrain.servers.ocpp.messages import parse_time

VOLTAGE = 230.0
DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
#: What the charge point says it takes (GetConfiguration shows these).
MAX_STACK_LEVEL = 8
MAX_PROFILES = 16
MAX_PERIODS = 24

CHARGE_POINT_MAX = "ChargePointMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"


class ProfileRefused(ValueError):
    """A profile the charge point does not take (answered `Rejected`)."""


@dataclass(frozen=True, slots=True)
class Period:
    start_s: int  # from the start of the schedule
    limit: float  # in the schedule's unit
    phases: int  # 3 unless the period says otherwise


@dataclass(frozen=True, slots=True)
class Profile:
    id: int
    connector: int
    stack_level: int
    purpose: str
    kind: str  # Absolute, Recurring, Relative
    recurrency: str  # Daily, Weekly ("" unless Recurring)
    start: float | None  # startSchedule (epoch seconds)
    duration: float | None  # seconds, None = open-ended
    unit: str  # "A" or "W"
    periods: tuple[Period, ...]
    valid_from: float | None = None
    valid_to: float | None = None
    transaction_id: int | None = None

    def limit_ma(self, t: float, tx_start: float | None) -> int | None:
        """The limit (mA per phase) this profile sets at `t`, None when it sets none."""
        if self.valid_from is not None and t < self.valid_from:
            return None
        if self.valid_to is not None and t >= self.valid_to:
            return None
        origin = self._origin(t, tx_start)
        if origin is None:
            return None
        elapsed = t - origin
        if elapsed < 0 or (self.duration is not None and elapsed >= self.duration):
            return None
        current: Period | None = None
        for period in self.periods:
            if period.start_s <= elapsed:
                current = period
            else:
                break
        if current is None:
            return None
        amps = current.limit if self.unit == "A" else current.limit / (
            VOLTAGE * max(1, current.phases))
        return max(0, math.floor(amps * 1000))

    def _origin(self, t: float, tx_start: float | None) -> float | None:
        if self.kind == "Relative":
            return tx_start if tx_start is not None else t
        start = self.start
        if start is None:
            return None
        if self.kind == "Recurring" and t >= start:
            every = WEEK_S if self.recurrency == "Weekly" else DAY_S
            return start + math.floor((t - start) / every) * every
        return start


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ProfileRefused("a limit is a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ProfileRefused("a limit is a number of 0 or more")
    return number


def _int(p: Mapping[str, object], key: str) -> int | None:
    value = p.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(p: Mapping[str, object], key: str) -> float | None:
    value = p.get(key)
    return parse_time(value, key) if isinstance(value, str) else None


def parse(connector: int, payload: Mapping[str, object]) -> Profile:
    """The profile of a SetChargingProfile's `csChargingProfiles` for `connector`
    (already checked against the schema); ProfileRefused if the charge point does not
    take it, OcppFault for a date and time that is none."""
    purpose = str(payload.get("chargingProfilePurpose", ""))
    kind = str(payload.get("chargingProfileKind", ""))
    schedule = payload.get("chargingSchedule")
    if not isinstance(schedule, dict):
        raise ProfileRefused("no charging schedule")
    level = _int(payload, "stackLevel") or 0
    if not 0 <= level <= MAX_STACK_LEVEL:
        raise ProfileRefused(f"stack levels go up to {MAX_STACK_LEVEL}")
    if purpose == CHARGE_POINT_MAX and connector != 0:
        raise ProfileRefused("a ChargePointMaxProfile belongs to connector 0")
    if purpose == TX and connector == 0:
        raise ProfileRefused("a TxProfile belongs to a connector")
    raw = schedule.get("chargingSchedulePeriod")
    items = raw if isinstance(raw, list) else []
    if not items or len(items) > MAX_PERIODS:
        raise ProfileRefused(f"a schedule has 1 to {MAX_PERIODS} periods")
    periods = []
    for item in items:
        if not isinstance(item, dict):
            raise ProfileRefused("a period is an object")
        offset = _int(item, "startPeriod")
        phases = _int(item, "numberPhases")
        if offset is None or offset < 0:
            raise ProfileRefused("startPeriod is 0 or more")
        periods.append(Period(offset, _float(item.get("limit")),
                              phases if phases in (1, 2, 3) else 3))
    periods.sort(key=lambda p: p.start_s)
    if periods[0].start_s != 0:
        raise ProfileRefused("the first period starts at 0")
    recurrency = str(payload.get("recurrencyKind", "")) if kind == "Recurring" else ""
    begins = _time(schedule, "startSchedule")
    if kind in ("Absolute", "Recurring") and begins is None:
        raise ProfileRefused(f"an {kind} schedule needs its startSchedule")
    duration = _int(schedule, "duration")
    return Profile(
        id=_int(payload, "chargingProfileId") or 0, connector=connector, stack_level=level,
        purpose=purpose, kind=kind, recurrency=recurrency, start=begins,
        duration=float(duration) if duration is not None and duration > 0 else None,
        unit="W" if schedule.get("chargingRateUnit") == "W" else "A",
        periods=tuple(periods), valid_from=_time(payload, "validFrom"),
        valid_to=_time(payload, "validTo"), transaction_id=_int(payload, "transactionId"))


class ProfileBook:
    """The profiles installed on one charge point."""

    def __init__(self) -> None:
        self.profiles: list[Profile] = []

    def __bool__(self) -> bool:
        return bool(self.profiles)

    def install(self, profile: Profile, running_tx: int | None = None) -> None:
        """Install `profile` (`running_tx`: the transaction running on its connector);
        ProfileRefused when it cannot be."""
        if profile.purpose == TX:
            if running_tx is None:
                raise ProfileRefused("no transaction runs on that connector")
            if profile.transaction_id is not None and profile.transaction_id != running_tx:
                raise ProfileRefused(f"transaction {profile.transaction_id} does not run there")
        kept = [p for p in self.profiles if p.id != profile.id and not (
            p.connector == profile.connector and p.purpose == profile.purpose
            and p.stack_level == profile.stack_level)]
        if len(kept) >= MAX_PROFILES:
            raise ProfileRefused(f"at most {MAX_PROFILES} profiles")
        kept.append(profile)
        self.profiles = kept

    def clear(self, profile_id: int | None = None, connector: int | None = None,
              purpose: str | None = None, stack_level: int | None = None) -> bool:
        """Remove the profiles matching (by id alone when an id is given, else by every
        criterion given); whether any was removed."""
        def matches(p: Profile) -> bool:
            if profile_id is not None:
                return p.id == profile_id
            return ((connector is None or p.connector == connector)
                    and (purpose is None or p.purpose == purpose)
                    and (stack_level is None or p.stack_level == stack_level))

        kept = [p for p in self.profiles if not matches(p)]
        removed = len(kept) != len(self.profiles)
        self.profiles = kept
        return removed

    def transaction_ended(self, connector: int) -> None:
        """A connector's transaction ended: its TxProfiles go with it."""
        self.profiles = [p for p in self.profiles
                         if not (p.purpose == TX and p.connector == connector)]

    def limit_ma(self, connector: int, t: float, tx_start: float | None = None) -> int | None:
        """The limit at `t` on `connector` (mA per phase), None when no profile sets one.
        `tx_start`: when the transaction running there began (None: none runs)."""
        if not self.profiles:
            return None
        cap = self._best(CHARGE_POINT_MAX, (0,), t, tx_start)
        tx = self._best(TX, (connector,), t, tx_start) if tx_start is not None else None
        if tx is None:
            tx = self._best(TX_DEFAULT, (connector, 0), t, tx_start)
        if cap is None:
            return tx
        return cap if tx is None else min(cap, tx)

    def _best(self, purpose: str, connectors: tuple[int, ...], t: float,
              tx_start: float | None) -> int | None:
        best: tuple[int, int] | None = None  # (stack level, own connector first)
        limit: int | None = None
        for p in self.profiles:
            if p.purpose != purpose or p.connector not in connectors:
                continue
            rank = (p.stack_level, 1 if p.connector == connectors[0] else 0)
            if best is not None and rank <= best:
                continue
            value = p.limit_ma(t, tx_start)
            if value is not None:
                best, limit = rank, value
        return limit
