"""What HTTP-input devices push: the set_ajax_evse and set_ajax_meter values, and the
readings they make.

The values come as query parameters (every value a string, lists as `230,231,229`) or as
a JSON object with the same keys; both are read leniently, and other keys are ignored.
A value no meter can show (beyond ±PLAUSIBLE_LIMIT) is a 400 naming the key. Problems are
reported in the order the fields are declared, which is the order they were always
checked in. set_ajax_evse is the API's busiest command: its values are read by the
shape's markers without making the model (`lenient.FieldReader`); `bench --only pushes`
times the parse.

This module only turns values into readings; it never touches a device.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from chargebrain.api.lenient import Body, FieldReader, Lenient, check, message, named
from chargebrain.api.params import Refused, number
from chargebrain.api.shapes.fields import cleaned, flag, pushed, triple
from chargebrain.core.model import EvseReading, EvseState, MeterReading
from chargebrain.core.phases import Phases

_VOLTS = (230.0, 230.0, 230.0)
_ABSENT: Any = object()  # power_w not sent (null is sent, and refused)
_NUMBER = {"type": "number"}
_TRIPLE = {"type": "array", "items": _NUMBER, "minItems": 3, "maxItems": 3}


def _state(value: Any) -> EvseState:
    v = number(value)
    if v not in (1, 2, 3, 4, 5):
        raise named("", " must be 1..5")
    return EvseState(int(v))


def _currents(value: Any) -> Phases:
    a, b, c = triple(value)
    return Phases(round(a), round(b), round(c))


def _not_negative(value: Any) -> float:
    v = pushed(value)
    if v < 0:
        raise named("", " cannot be negative")
    return v


def _milliamps(value: Any) -> int:
    v = round(pushed(value))
    if v < 0:
        raise named("", " cannot be negative")
    return v


class EvsePush(Body):
    """The values an HTTP-input wallbox pushes with set_ajax_evse."""

    state: Annotated[EvseState, Lenient(_state, type="integer", enum=[1, 2, 3, 4, 5])] = (
        EvseState.WAITING)
    """1 waiting, 2 vehicle detected, 3 charging, 4 charging with ventilation, 5 error."""
    current: Annotated[Phases | None, Lenient(_currents, **_TRIPLE, unit="mA")] = None
    """The three currents, in the wallbox's own phase order."""
    max_charging_current: Annotated[int | None, Lenient(_milliamps, **_NUMBER, unit="mA")] = None
    """The most the wallbox can give now; lowers its `max_charging_cur`."""
    total_energy: Annotated[float | None, Lenient(_not_negative, **_NUMBER, unit="Wh")] = None
    """The wallbox's energy counter."""
    power_w: Annotated[float | None, Lenient(pushed, **_NUMBER, unit="W")] = None
    """Charging power; without it, the currents at 230 V."""
    rfid: Annotated[str, Lenient(lambda v: cleaned(v)[:64], type="string")] = ""
    """A card or PIN presented at the wallbox."""
    model: Annotated[str, Lenient(lambda v: str(v)[:100], type="string")] = ""
    """What the wallbox says it is."""


_EVSE_FIELDS = FieldReader(EvsePush)  # (no model made: set_ajax_evse is the hot path)


class MeterPush(Body):
    """The values an HTTP-input meter pushes with set_ajax_meter."""

    current: Annotated[Phases | None, Lenient(_currents, **_TRIPLE, unit="mA")] = None
    """The three currents; + import, − export."""
    voltage: Annotated[tuple[float, float, float], Lenient(triple, **_TRIPLE, unit="V")] = _VOLTS
    """The three voltages."""
    is_va: Annotated[bool, flag()] = False
    """The power is apparent power (VA)."""
    power_va: Annotated[float | None, Lenient(pushed, **_NUMBER, unit="VA")] = None
    """Apparent power, used when `power_w` is missing (ignored beside it)."""
    power_w: Annotated[float | None, Field(validate_default=True)] = _ABSENT
    """Power (+ import, − export); without it and `power_va`, the currents times the
    voltages."""
    import_wh: Annotated[float | None, Lenient(pushed, **_NUMBER, unit="Wh")] = None
    """Energy imported (or `import_vah`, which counts when both are sent)."""
    import_vah: Annotated[float | None, Lenient(pushed, **_NUMBER, unit="VAh")] = None
    export_wh: Annotated[float | None, Lenient(pushed, **_NUMBER, unit="Wh")] = None
    """Energy exported."""
    soc: Annotated[float | None, Lenient(pushed, **_NUMBER, unit="%")] = None
    """State of charge."""
    model: Annotated[str, Lenient(lambda v: str(v)[:100], type="string")] = ""
    """What the meter says it is."""

    @model_validator(mode="before")
    @classmethod
    def _power_w_first(cls, data: Any) -> Any:
        if isinstance(data, dict) and "power_w" in data and "power_va" in data:
            data = {k: v for k, v in data.items() if k != "power_va"}  # never read
        return data

    @field_validator("power_w", mode="plain")
    @classmethod
    def _power(cls, value: Any, info: ValidationInfo) -> float | None:
        if value is not _ABSENT:
            try:
                return pushed(value)
            except Refused as exc:
                raise message(str(exc)) from None
        if info.data.get("power_va") is not None:
            return None
        # (Checked here, after the voltages and before the counters, as it always was.)
        currents = info.data.get("current") or Phases(0, 0, 0)
        volts = info.data.get("voltage", _VOLTS)
        try:
            return pushed(sum(c / 1000.0 * v for c, v in zip(currents, volts, strict=True)))
        except Refused as exc:
            raise named("", f" (of current and voltage): {exc}") from None

    @model_validator(mode="after")
    def _counters(self) -> MeterPush:
        if min(self.imported, self.exported) < 0:
            raise message("energy counters cannot be negative")
        return self

    @property
    def imported(self) -> float:
        if self.import_vah is not None:
            return self.import_vah
        return self.import_wh if self.import_wh is not None else 0.0

    @property
    def exported(self) -> float:
        return self.export_wh if self.export_wh is not None else 0.0

    def reading(self) -> MeterReading:
        power = self.power_w if self.power_w is not None else self.power_va
        assert power is not None  # one of them, or the computed power_w
        return MeterReading(
            power_w=power, currents=self.current or Phases(0, 0, 0), voltages=self.voltage,
            import_wh=self.imported, export_wh=self.exported, model=self.model,
            is_va=self.is_va or self.power_w is None, soc=self.soc)


def evse_reading(fields: dict[str, Any]) -> EvseReading:
    """The reading of a set_ajax_evse push (`EvsePush`), or ApiError 400 naming the field."""
    sent = _EVSE_FIELDS.read(fields)
    measured: Phases | None = sent.get("current")
    currents = measured or Phases(0, 0, 0)
    power: float | None = sent.get("power_w")
    energy: float | None = sent.get("total_energy")
    return EvseReading(
        state=sent.get("state", EvseState.WAITING), currents=currents,
        power_w=power if power is not None else sum(c / 1000.0 * 230.0 for c in currents),
        total_energy_wh=energy if energy is not None else 0,
        has_meter=measured is not None or energy is not None, energy_known=energy is not None,
        max_current_ma=sent.get("max_charging_current"), rfid=sent.get("rfid", ""),
        model=sent.get("model", ""))


def meter_reading(fields: dict[str, Any]) -> MeterReading:
    """The reading of a set_ajax_meter push, or ApiError 400 naming the field."""
    return check(MeterPush, fields).reading()
