"""The faults of a scenario file: one shape per kind, chosen by `type`.

A fault has a `type`, a time window (`from`, `to`; the whole run by default) and names
what it hits under its own key (`meter`, `evse` or `car`); each kind takes only its own
keys. A new kind of fault is a new subclass of `FaultBase` in `FAULT_SHAPES` and in the
`FaultShape` union (and a member of `spec.FaultKind`).

This module must never read text or files, and never build the simulator's values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from chargebrain.shapes import Integer, Parsed, problem_at
from chargebrain.shapes import kind as _kind
from chargebrain.sim.scenario.fields import Milliamps, Moment, Name, Part, Share
from chargebrain.sim.scenario.spec import FaultKind

__all__ = [
    "FAULT_SHAPES",
    "CarOverdrawFault",
    "CarUnderdrawFault",
    "EvseOfflineFault",
    "FaultBase",
    "FaultShape",
    "MeterFault",
]


class FaultBase(Part):
    """What every fault has: when (the whole run by default)."""

    target_key: ClassVar[str]
    """The key naming what the fault hits (`meter`, `evse`, `car`)."""
    type: str
    start: Moment | None = Field(None, alias="from")
    end: Moment | None = Field(None, alias="to")
    """After `from`."""

    @property
    def kind(self) -> FaultKind:
        return FaultKind(self.type)

    @property
    def target(self) -> str:
        target: str = getattr(self, self.target_key)
        return target

    def window(self, start_tod: int, duration_s: int) -> tuple[int, int]:
        """Start and end in seconds since the start of a run starting at `start_tod`."""
        start = 0 if self.start is None else self.start.resolve(start_tod, 0)
        if self.end is None:
            return start, max(duration_s, start + 1)
        return start, self.end.resolve(start_tod, start + 1)


def _meter(value: Any) -> str:
    if value not in ("grid", "pv"):
        raise ValueError(f"unknown meter {value!r} (grid or pv)")
    return str(value)


class MeterFault(FaultBase):
    """The meter repeats the reading it made at `from` (stale) or delivers none (dropout)."""

    target_key: ClassVar[str] = "meter"
    type: Literal["meter_stale", "meter_dropout"]
    meter: Annotated[str, Parsed(_meter), WithJsonSchema({"enum": ["grid", "pv"]})]


class EvseOfflineFault(FaultBase):
    """The EVSE gives no reading and ignores commands."""

    target_key: ClassVar[str] = "evse"
    type: Literal["evse_offline"]
    evse: Name
    fail_safe_ma: Milliamps | None = None
    """The current it falls back to; none: it keeps the last one."""


class CarUnderdrawFault(FaultBase):
    """The car draws `offered × factor − offset_ma`."""

    target_key: ClassVar[str] = "car"
    type: Literal["car_underdraw"]
    car: Name
    factor: Share = 1.0
    offset_ma: Milliamps = 0

    @model_validator(mode="after")
    def _draws_less(self) -> CarUnderdrawFault:
        if self.factor == 1.0 and self.offset_ma == 0:
            raise problem_at(("factor",), "a car_underdraw needs factor < 1 or offset_ma > 0")
        return self


class CarOverdrawFault(FaultBase):
    """The car draws `extra_ma` more than it is offered (while it charges at all)."""

    target_key: ClassVar[str] = "car"
    type: Literal["car_overdraw"]
    car: Name
    extra_ma: Annotated[int, Integer(1, 32000)]


FAULT_SHAPES: dict[str, type[FaultBase]] = {
    "meter_stale": MeterFault,
    "meter_dropout": MeterFault,
    "evse_offline": EvseOfflineFault,
    "car_underdraw": CarUnderdrawFault,
    "car_overdraw": CarOverdrawFault,
}


def _known_fault(value: Any) -> Any:
    """Refuse an unknown `type` at the `type` key (the union would name only the fault)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"must be an object, not {_kind(value)}")
    kind = value.get("type")
    if kind is None:
        raise problem_at(("type",), "required")
    if not isinstance(kind, str) or kind not in FAULT_SHAPES:
        known = ", ".join(k.value for k in FaultKind)
        raise problem_at(("type",), f"unknown fault {kind!r} (one of {known})", kind)
    return value


FaultShape = Annotated[
    MeterFault | EvseOfflineFault | CarUnderdrawFault | CarOverdrawFault,
    Field(discriminator="type"),
    BeforeValidator(_known_fault),
]
