"""Departure plans of charging sessions: when a car leaves and the energy it wants.

A plan comes from `set_plan` (the admin, or the user of the session) or from the EVSE:
an ISO 15118 car tells its wallbox when it leaves and how much energy it wants, and the
wallbox reports them (`departure`, `req_energy`, the vendor's EVSE fields). What
set_plan set counts before what the EVSE reports, field by field. A plan holds until the
car is unplugged (`EvseRuntime.end_session`); one set while no car is plugged in holds
for the next session.

The balancer is given a plan when both parts are known and the departure lies ahead:
the departure on its (monotonic) clock and the energy still wanted, `req_energy` less
what the session has charged so far. How it serves planned cars is core/balancer/plans.py.
This module never decides currents and never spells the API's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

from chargebrain.manager.state import EvseRuntime

#: A departure may lie at most this far ahead (s).
MAX_AHEAD_S = 7 * 86_400
#: The most energy a plan may ask for (Wh).
MAX_ENERGY_WH = 1_000_000
#: The energy still wanted is given to the balancer in steps of this much (Wh), so that
#: an EVSE's input changes only every few minutes of charging.
NEED_STEP_WH = 10.0


@dataclass(frozen=True, slots=True)
class Plan:
    """A session's plan: when the car leaves (Unix time, s) and the energy it wants in
    the session (Wh); None where not known."""

    departure: float | None = None
    energy_wh: float | None = None


def plan_of(ev: EvseRuntime) -> Plan:
    """The plan in force: set_plan's values, else what the EVSE reports."""
    departure = ev.plan_departure if ev.plan_departure is not None else ev.reported_departure
    energy = ev.plan_energy_wh if ev.plan_energy_wh is not None else ev.reported_energy_wh
    return Plan(departure, energy)


def set_plan(ev: EvseRuntime, departure: float | None, energy_wh: float | None) -> None:
    """Set the parts of the plan that are given (not None; 0 forgets that part, also as
    the EVSE reported it); the others stay."""
    if departure is not None:
        ev.plan_departure = departure or None
        if not departure:
            ev.reported_departure = None
    if energy_wh is not None:
        ev.plan_energy_wh = energy_wh or None
        if not energy_wh:
            ev.reported_energy_wh = None


def clear_plan(ev: EvseRuntime) -> None:
    """Forget the plan set with set_plan (what the EVSE reports still counts)."""
    ev.plan_departure = ev.plan_energy_wh = None


def reported(ev: EvseRuntime, departure: float | None, energy_wh: float | None) -> None:
    """What the EVSE reports of the car's plan (None: it reports nothing of it)."""
    if departure is not None:
        ev.reported_departure = departure if departure > 0 else None
    if energy_wh is not None:
        ev.reported_energy_wh = energy_wh if energy_wh > 0 else None


def balancer_plan(ev: EvseRuntime, now: float, mono: float) -> tuple[float | None, float]:
    """(departure on the monotonic clock, energy still wanted in Wh) for the balancer;
    (None, 0) while the session has no complete plan or its departure has passed."""
    if not ev.plugged:
        return None, 0.0
    # `plan_of`, without making a Plan (this runs for every EVSE in every cycle)
    departure = ev.plan_departure if ev.plan_departure is not None else ev.reported_departure
    energy = ev.plan_energy_wh if ev.plan_energy_wh is not None else ev.reported_energy_wh
    if departure is None or energy is None:
        return None, 0.0
    ahead = departure - now
    if ahead <= 0:
        return None, 0.0
    left = max(0.0, energy - ev.transaction_energy_wh)
    return float(round(mono + ahead)), NEED_STEP_WH * -(-left // NEED_STEP_WH)
