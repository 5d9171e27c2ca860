"""What set_plan takes, declared once: a session's departure plan.

`PlanBody` is read from the query parameters (`departure=17:30&req_energy=20000`) or a
JSON object with the same keys. `departure` is Unix time in seconds or a time of day
"HH:MM" (resolved by the command against the controller's clock and time zone), `0`
forgets it; `req_energy` the energy the car wants in the session in Wh, `0` forgets it;
`clear` forgets the whole plan set with set_plan. Other keys are ignored (query
parameters stay lenient).

This module must never look at an EVSE or change a plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from chargebrain.api.lenient import Body, Lenient, check
from chargebrain.api.params import Refused, clean, number
from chargebrain.api.shapes.fields import flag
from chargebrain.manager.plans import MAX_ENERGY_WH

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class Departure:
    """A departure as sent: Unix time (`at`, 0 = forget it) or a time of day (`minute`
    of the day, the next time the clock shows it)."""

    at: float | None = None
    minute: int | None = None


def _departure(value: Any) -> Departure:
    if isinstance(value, str):
        m = _CLOCK.match(clean(value))
        if m:
            return Departure(minute=int(m.group(1)) * 60 + int(m.group(2)))
    try:
        at = number(value)
    except Refused:
        raise Refused("Unix time in seconds or a time of day HH:MM is required") from None
    if at < 0:
        raise Refused("cannot be negative")
    return Departure(at=at)


def _energy(value: Any) -> float:
    v = number(value)
    if not 0 <= v <= MAX_ENERGY_WH:
        raise Refused(f"{v:g} out of range 0..{MAX_ENERGY_WH}")
    return v


class PlanBody(Body):
    """A departure plan as set_plan takes it."""

    not_object: ClassVar[str] = 'a JSON object {"departure": ..., "req_energy": ...} is required'

    departure: Annotated[Departure | None, Lenient(
        _departure, type=["number", "string"], minimum=0, unit="s")] = None
    """When the car leaves: Unix time in seconds, or a time of day `HH:MM` (the next time
    the controller's clock shows it, at most 7 days ahead); `0` forgets it."""
    req_energy: Annotated[float | None, Lenient(
        _energy, type="number", minimum=0, maximum=MAX_ENERGY_WH, unit="Wh")] = None
    """The energy the car wants in this session, counted from its plug-in; `0` forgets
    it."""
    clear: Annotated[bool, flag()] = False
    """Forget the plan set with set_plan first (what the wallbox reports still counts)."""


_KEYS = ("departure", "req_energy", "clear")


def plan_body(fields: Any) -> PlanBody:
    """The plan of a set_plan request (its JSON body or its parameters), or ApiError 400
    naming the field."""
    return check(PlanBody, fields, _KEYS)
