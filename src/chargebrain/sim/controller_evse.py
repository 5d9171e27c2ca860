"""The controller's own EVSE on a simulated site: the plant's car behind the hardware
interface of the Power Brain (`powerbrain/hardware.py`).

A scenario EVSE with `"interface": "powerbrain"` is not an HTTP-input device: it is the
controller's E1. The firmware logic (`PowerBrain.tick`) drives this hardware with the
pilot it would put on the cable and reads back what the hardware senses; here the sensed
values are the simulator's reading of that EVSE (the car's pilot state and the currents
its meter measures), and the pilot the firmware drives is what the simulator's car is
offered. The charging manager reads and writes the controller's registers as it does in
the application, so registers, pilot logic, the CP interruption and the energy counter
take part in the run.

Pure: no I/O, no clock; time comes in through `PowerBrain.tick`.
"""

from __future__ import annotations

from chargebrain.core.model import EvseReading
from chargebrain.powerbrain.hardware import CpState, PilotOutput, Sensed

CABLE_MA = 32_000  # the capacity the cable of a plugged car reports (PP)
_UNPLUGGED = Sensed(CpState.A, 0, (0, 0, 0))


class PlantEvse:
    """`EvseHardware` whose sensed side is set from the simulator's readings."""

    def __init__(self) -> None:
        self.pilot = PilotOutput(0)  # what the firmware drives now
        self._sensed = _UNPLUGGED

    def sense(self, reading: EvseReading | None) -> None:
        """What the hardware measures from now on: the car's state and its currents (EVSE
        phase order); None keeps what it measured last."""
        if reading is None:
            return
        state = reading.state
        if not state.plugged:
            self._sensed = _UNPLUGGED
            return
        cp = CpState.C if state.charging else CpState.B
        c = reading.currents
        self._sensed = Sensed(cp, CABLE_MA, (c.l1, c.l2, c.l3))

    # --- EvseHardware ------------------------------------------------------------------

    def drive(self, out: PilotOutput) -> None:
        self.pilot = out

    def step(self, dt: float) -> Sensed:
        return self._sensed

    def take_rfid(self) -> str | None:
        return None
