"""Automatic 1/3-phase switching of Power Brain wallboxes for surplus charging.

After every decision, each EVSE with `phase_switch_auto` whose reading shows a phase
contactor (a Power Brain, register 8087) that may switch with a car plugged in (8113
bit 8) is told which phases to use: `core.switching.decide` on the site's surplus, while
its charging rules follow the surplus (`rule_surplus`, set by the rules runtime), else
three phases. The writer sends the request with the EVSE's command (8087), and the
controller carries it out: the pilot off for `phase_switch_cp_s`, then the car charges on
the new phases; it never changes the contactor sooner than `phase_switch_delay` after
the last change, and the decision keeps that delay too, so a request is carried out when
it is made. The balancer counts a car on its L1 only once the 1-phase contactor is
selected and the car draws on no other phase (core/balancer/prepare.py).

This module never writes to devices and never decides currents.
"""

from __future__ import annotations

from collections.abc import Iterable

from chargebrain.core.switching import NO_SWITCH, SwitchMemory, decide
from chargebrain.manager.site import VOLTAGE
from chargebrain.manager.state import DeviceRuntime


def switchable(rt: DeviceRuntime) -> bool:
    """The EVSE may be switched automatically now: set so, its contactor reported, and
    switching with a car plugged in permitted."""
    ev = rt.evse
    r = ev.reading if ev is not None else None
    return bool(rt.config.phase_switch_auto and r is not None and r.one_phase is not None
                and r.phase_switching and not rt.status.com_err)


class PhaseAuto:
    """The switching memory of every EVSE switched automatically."""

    def __init__(self) -> None:
        self.memory: dict[str, SwitchMemory] = {}

    def update(self, evses: Iterable[DeviceRuntime], surplus_w: float, mono: float,
               delay_s: float) -> None:
        """Set each EVSE's `phase_request` (1 or 3; 0: none) for the writer."""
        memory = self.memory
        for rt in evses:
            ev = rt.evse
            if ev is None or not (rt.config.phase_switch_auto or ev.phase_request):
                continue
            if not switchable(rt):
                ev.phase_request = 0
                memory.pop(rt.dev_id, None)
                continue
            assert ev.reading is not None
            phases = 1 if ev.reading.one_phase else 3
            wanted, memory[rt.dev_id] = decide(
                phases, ev.rule_surplus, surplus_w, rt.config.min_charging_cur, VOLTAGE,
                mono, float(delay_s), memory.get(rt.dev_id, NO_SWITCH))
            ev.phase_request = wanted
