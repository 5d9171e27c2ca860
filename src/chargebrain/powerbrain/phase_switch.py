"""The 1/3-phase contactor of the controller: which one is selected and how it changes.

Register 8087 (`relay_select`) asks for a contactor: 0 = the 3-phase one, 1 = the
1-phase one. `PhaseContactor` carries the request out as the vendor describes it:

* no car connected: the contactor changes at once;
* a car connected and "phase switching while plugged in" permitted: charging stops, the
  contactor opens and the control pilot is held near 0 V for `cp_off_s` seconds (the car
  sees an unplug); then the pilot comes back and the car charges on the new phases;
* a car connected without that permission: the request waits until no car is
  connected, so it counts from the next plug-in on.

Two changes of the contactor are at least `delay_s` apart; a request that comes sooner
is held and carried out when the delay has passed (the contactor never flaps).

Pure state; time comes in with each step, nothing here reads a clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("chargebrain.powerbrain")

#: Seconds the pilot is held off while switching with a car plugged in (the vendor's).
DEFAULT_CP_OFF_S = 120
#: Least time between two contactor changes unless the application sets another.
DEFAULT_DELAY_S = 180.0
CP_OFF_RANGE_S = (1, 600)


@dataclass(frozen=True, slots=True)
class PhaseSwitchSettings:
    """The controller's hardware configuration of phase switching."""

    #: Switching while a car is plugged in is permitted (register 8113 bit 8).
    plugged: bool = False
    #: Seconds the control pilot is held off for such a switch.
    cp_off_s: int = DEFAULT_CP_OFF_S


class PhaseContactor:
    """The selected contactor and the pilot-off spell of a switch under a plugged car."""

    def __init__(self) -> None:
        self.one_phase = False  # the contactor in use: True = the 1-phase one
        self.cp_off_left = 0.0  # seconds the pilot stays off for a switch
        self._last_change: float | None = None  # monotonic time of the last change

    def count_down(self, dt: float) -> None:
        """`dt` seconds of the pilot-off spell have passed."""
        if self.cp_off_left > 0:
            self.cp_off_left = max(0.0, self.cp_off_left - dt)

    def carry_out(
        self,
        requested_one_phase: bool,
        car_connected: bool,
        settings: PhaseSwitchSettings,
        delay_s: float,
        now: float,
    ) -> None:
        """Change to the requested contactor at monotonic `now` if that may be done now."""
        if requested_one_phase == self.one_phase:
            return
        if self._last_change is not None and now - self._last_change < delay_s:
            return  # held until the delay since the last change has passed
        if car_connected:
            if not settings.plugged:
                return  # takes effect at the next plug-in
            self.cp_off_left = float(settings.cp_off_s)
        self.one_phase = requested_one_phase
        self._last_change = now
        log.info(
            "contactor: %d-phase%s", 1 if self.one_phase else 3,
            f", control pilot off for {settings.cp_off_s} s" if car_connected else "",
        )
