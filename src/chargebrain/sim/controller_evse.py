"""Power Brain controllers on a simulated site: the plant's car behind the hardware
interface of a controller (`powerbrain/hardware.py`).

A scenario EVSE with `"interface": "powerbrain"` is the charging manager's own
controller's E1; one with `"interface": "modbus"` is another Power Brain that the manager
reaches over Modbus TCP (a real server on a loopback port). The firmware logic
(`PowerBrain.tick`) drives the hardware with the pilot it would put on the cable and
reads back what the hardware senses; here the sensed values are the simulator's reading
of that EVSE (the car's pilot state and the currents its meter measures), and the pilot
the firmware drives is what the simulator's car is offered. The charging manager reads
and writes the controller's registers as it does in the application, so registers,
pilot logic, the CP interruption, the fail-safe and the energy counter take part.

No clock: time comes in through `tick`.
"""

from __future__ import annotations

from chargebrain.core.model import EvseReading
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.powerbrain.hardware import CpState, PilotOutput, Sensed
from chargebrain.servers.modbus_tcp import ModbusTcpServers

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


class SimController:
    """One simulated Power Brain: its firmware, the plant behind its EVSE and, for a
    remote one, the Modbus TCP server the manager reaches it through."""

    def __init__(self, brain: PowerBrain, plant: PlantEvse,
                 server: ModbusTcpServers | None = None) -> None:
        self.brain = brain
        self.plant = plant
        self.server = server
        self.serving = server is not None  # its server answers (it is started)
        self._ticked: float | None = None  # monotonic time of the last tick
        self._cp_off = False

    def tick(self, reading: EvseReading | None, mono: float) -> None:
        """The firmware up to `mono`, with the car behind the EVSE as `reading` shows."""
        self.plant.sense(reading)
        last = self._ticked if self._ticked is not None else mono
        self.brain.tick(mono - last, now=mono)
        self._ticked = mono

    def offer_ma(self) -> int:
        """What the pilot offers the car now (0: charging not allowed)."""
        return self.brain.offered_ma()

    def woken(self) -> bool:
        """True once when the pilot has just been switched off (a wake-up)."""
        off = self.brain.cp_interrupted
        rising = off and not self._cp_off
        self._cp_off = off
        return rising
