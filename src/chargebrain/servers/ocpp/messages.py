"""OCPP 1.6 payloads as plain values: reading what a charge point sends, writing what the
central system sends and answers.

The payloads arrive already checked against the OCPP 1.6 JSON schemas (adapter.py), so
their keys and JSON types are right; what the schemas leave open is checked here: dates
and times (a `TypeConstraintViolation`), connector ids and meter values out of range (a
`PropertyConstraintViolation`). Pure functions: no I/O, no clock (the time is passed in).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from chargebrain.servers.ocpp.adapter import (
    PROPERTY_CONSTRAINT_VIOLATION,
    TYPE_CONSTRAINT_VIOLATION,
    OcppFault,
    Payload,
)

#: The most connectors a charge point is taken to have.
MAX_CONNECTOR = 255
#: The charging profile chargebrain sets on each connector: its id (plus the connector
#: number) and stack level. One profile per connector, replaced by every change.
PROFILE_ID_BASE = 9000
STACK_LEVEL = 0


def parse_time(text: str, name: str = "timestamp") -> float:
    """An OCPP date and time (RFC 3339) as seconds since the epoch."""
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise OcppFault(TYPE_CONSTRAINT_VIOLATION, f"{name}: {text[:40]!r} is not a date and "
                        "time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def iso(epoch: float) -> str:
    """Seconds since the epoch as an OCPP date and time (UTC, milliseconds)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- reading what a charge point sends ---------------------------------------------------


def _text(p: Mapping[str, object], key: str, default: str = "") -> str:
    value = p.get(key, default)
    return value if isinstance(value, str) else default


def _int(p: Mapping[str, object], key: str) -> int | None:
    value = p.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def connector_of(p: Mapping[str, object], allow_zero: bool = True) -> int:
    """The payload's connectorId, checked."""
    connector = _int(p, "connectorId")
    low = 0 if allow_zero else 1
    if connector is None or not low <= connector <= MAX_CONNECTOR:
        raise OcppFault(PROPERTY_CONSTRAINT_VIOLATION,
                        f"connectorId must be {low}..{MAX_CONNECTOR}")
    return connector


def _meter(p: Mapping[str, object], key: str) -> float:
    value = _int(p, key)
    if value is None or value < 0:
        raise OcppFault(PROPERTY_CONSTRAINT_VIOLATION, f"{key} must be 0 or more (Wh)")
    return float(value)


@dataclass(frozen=True)
class Boot:
    vendor: str
    model: str
    serial: str
    firmware: str

    @property
    def text(self) -> str:
        """The model string get_dev_info shows."""
        parts = [f"{self.vendor} {self.model}".strip()]
        if self.serial:
            parts.append(f"serial {self.serial}")
        if self.firmware:
            parts.append(f"firmware {self.firmware}")
        return ", ".join(parts)


def boot(p: Mapping[str, object]) -> Boot:
    serial = _text(p, "chargePointSerialNumber") or _text(p, "chargeBoxSerialNumber")
    return Boot(_text(p, "chargePointVendor"), _text(p, "chargePointModel"), serial,
                _text(p, "firmwareVersion"))


@dataclass(frozen=True)
class Status:
    connector: int
    status: str
    error_code: str
    info: str


def status(p: Mapping[str, object]) -> Status:
    if "timestamp" in p:
        parse_time(_text(p, "timestamp"))
    return Status(connector_of(p), _text(p, "status"), _text(p, "errorCode"),
                  _text(p, "info"))


@dataclass(frozen=True)
class Sample:
    """One sampled value, its number read (None: not a number) and its unit's prefix
    applied (Wh, W, A, V)."""

    measurand: str
    phase: str
    value: float | None
    unit: str
    context: str
    location: str


@dataclass(frozen=True)
class MeterValue:
    timestamp: float
    samples: tuple[Sample, ...]


_UNIT_FACTOR = {"Wh": 1.0, "kWh": 1000.0, "W": 1.0, "kW": 1000.0, "A": 1.0, "V": 1.0,
                "varh": 1.0, "kvarh": 1000.0, "var": 1.0, "kvar": 1000.0, "VA": 1.0,
                "kVA": 1000.0, "Percent": 1.0, "Celsius": 1.0, "Celcius": 1.0, "K": 1.0,
                "Fahrenheit": 1.0}
_DEFAULT_UNIT = {"Energy": "Wh", "Power": "W", "Current": "A", "Voltage": "V"}


def _sample(p: Mapping[str, object]) -> Sample:
    measurand = _text(p, "measurand", "Energy.Active.Import.Register")
    unit = _text(p, "unit") or _DEFAULT_UNIT.get(measurand.partition(".")[0], "")
    value: float | None = None
    if _text(p, "format", "Raw") == "Raw":
        try:
            number = float(_text(p, "value"))
        except ValueError:
            number = math.nan
        if math.isfinite(number) and unit in _UNIT_FACTOR:
            value = number * _UNIT_FACTOR[unit]
            unit = unit[1:] if unit[:1] == "k" else unit
    return Sample(measurand, _text(p, "phase"), value, unit, _text(p, "context",
                  "Sample.Periodic"), _text(p, "location", "Outlet"))


def meter_values(items: object) -> list[MeterValue]:
    """The `meterValue` (or `transactionData`) list of a payload."""
    out: list[MeterValue] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        samples = item.get("sampledValue")
        out.append(MeterValue(
            parse_time(_text(item, "timestamp")),
            tuple(_sample(s) for s in (samples if isinstance(samples, list) else [])
                  if isinstance(s, dict))))
    return out


@dataclass(frozen=True)
class Meters:
    connector: int
    transaction_id: int | None
    values: list[MeterValue]


def meters(p: Mapping[str, object]) -> Meters:
    return Meters(connector_of(p), _int(p, "transactionId"), meter_values(p.get("meterValue")))


@dataclass(frozen=True)
class Start:
    connector: int
    id_tag: str
    meter_start_wh: float
    timestamp: float


def start(p: Mapping[str, object]) -> Start:
    return Start(connector_of(p, allow_zero=False), _text(p, "idTag"),
                 _meter(p, "meterStart"), parse_time(_text(p, "timestamp")))


@dataclass(frozen=True)
class Stop:
    transaction_id: int
    id_tag: str
    meter_stop_wh: float
    timestamp: float
    reason: str
    data: list[MeterValue]


def stop(p: Mapping[str, object]) -> Stop:
    tid = _int(p, "transactionId")
    if tid is None:
        raise OcppFault(PROPERTY_CONSTRAINT_VIOLATION, "transactionId is required")
    return Stop(tid, _text(p, "idTag"), _meter(p, "meterStop"),
                parse_time(_text(p, "timestamp")), _text(p, "reason", "Local"),
                meter_values(p.get("transactionData")))


# --- writing what the central system sends -----------------------------------------------


def boot_answer(now: float, interval_s: int) -> Payload:
    return {"status": "Accepted", "currentTime": iso(now), "interval": interval_s}


def heartbeat_answer(now: float) -> Payload:
    return {"currentTime": iso(now)}


def id_tag_info(auth_status: str) -> Payload:
    return {"status": auth_status}


def profile_id(connector: int) -> int:
    return PROFILE_ID_BASE + connector


def set_profile(connector: int, limit_a: float, phases: int = 0) -> Payload:
    """A TxDefaultProfile for `connector`: `limit_a` amperes from now on, for ever (the
    kind Relative needs no clock in common with the charge point)."""
    period: dict[str, object] = {"startPeriod": 0, "limit": round(limit_a, 1)}
    if phases in (1, 3):
        period["numberPhases"] = phases
    return {
        "connectorId": connector,
        "csChargingProfiles": {
            "chargingProfileId": profile_id(connector),
            "stackLevel": STACK_LEVEL,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [period]},
        },
    }


def clear_profile(connector: int) -> Payload:
    return {"id": profile_id(connector), "connectorId": connector}


def change_configuration(key: str, value: str) -> Payload:
    return {"key": key, "value": value}


def trigger(message: str, connector: int | None = None) -> Payload:
    out: Payload = {"requestedMessage": message}
    if connector is not None:
        out["connectorId"] = connector
    return out


def remote_start(connector: int, id_tag: str) -> Payload:
    return {"connectorId": connector, "idTag": id_tag[:20]}


def remote_stop(transaction_id: int) -> Payload:
    return {"transactionId": transaction_id}


def answer_status(p: Mapping[str, object]) -> str:
    """The `status` of an answer ("Accepted", "Rejected", ...)."""
    return _text(p, "status")


def joined(values: Sequence[str]) -> str:
    return ",".join(values)
