"""The car behind a simulated EVSE: how much current it draws for what it is offered.

Models the behaviour a load manager has to live with: a response lag (the draw ramps to a
new limit over `lag_s`), a minimum start current (offered less, it draws nothing), taper
near full, falling asleep when offered nothing for a while, a charge limit (it stops by
itself once it has taken its energy need) and drawing less than offered. Energy is
accounted as exactly the integral of the current it returns: E = Σ V · I · phases · dt.

This module must never read a clock or use global randomness; time only advances
through `step`/`advance`, which makes it deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chargebrain.core.phases import Phases

TAPER_QUANTUM_MA = 100  # the car's charger changes its current in steps of 0.1 A
TAPER_FLOOR_MA = 500  # the last bit before full is taken at this current


@dataclass(frozen=True, slots=True)
class CarParams:
    """What a car is like; see CarSpec in scenario/spec.py for the same fields in a scenario."""

    capacity_kwh: float = 60.0
    soc: float = 0.3  # at plug-in
    need_kwh: float = math.inf  # the car stops once it has taken this much (its charge limit)
    max_ma: int = 16_000
    phases: int = 3
    min_start_ma: int = 6_000
    lag_s: float = 3.0
    taper_soc: float = 0.8
    sleep_after_s: float | None = None
    wake_after_s: float | None = 0.0


class Car:
    """A plugged-in car. Drive it with `step` (Phases) or `advance` (one float, faster)."""

    __slots__ = (
        "_dirty",
        "_draw",
        "_evse_phases",
        "_idle_s",
        "_lag_s",
        "_max_ma",
        "_min_start",
        "_offer",
        "_offer_s",
        "_rate",
        "_recheck_wh",
        "_sleep_after",
        "_stop_wh",
        "_target",
        "_wake_after",
        "_wh_per_mas",
        "asleep",
        "draw_factor",
        "draw_offset_ma",
        "energy_wh",
        "params",
        "phase_count",
        "phase_mask",
        "voltage_v",
    )

    def __init__(self, params: CarParams, *, evse_phases: int = 3, voltage_v: float = 230.0):
        self.params = params
        self._evse_phases = evse_phases
        self.phase_count = min(params.phases, evse_phases)  # a two-phase car: on L1 and L2
        self.phase_mask = (1 << self.phase_count) - 1
        self.voltage_v = voltage_v
        self.energy_wh = 0.0
        self.asleep = False
        self.draw_factor = 1.0
        self.draw_offset_ma = 0
        # Wh for one mA drawn on each used phase for one second.
        self._wh_per_mas = voltage_v * self.phase_count / 3.6e6
        cap_wh = params.capacity_kwh * 1000.0
        self._stop_wh = max(0.0, min(params.need_kwh * 1000.0, (1.0 - params.soc) * cap_wh))
        self._max_ma = params.max_ma
        self._min_start = params.min_start_ma
        self._lag_s = params.lag_s
        self._sleep_after = params.sleep_after_s
        self._wake_after = params.wake_after_s
        self._draw = 0.0
        self._target = 0.0
        self._rate = math.inf
        self._offer = -1.0
        self._dirty = True
        self._recheck_wh = 0.0
        self._idle_s = 0.0
        self._offer_s = 0.0

    # -- state ------------------------------------------------------------------------

    @property
    def soc(self) -> float:
        return self.params.soc + self.energy_wh / (self.params.capacity_kwh * 1000.0)

    @property
    def done(self) -> bool:
        """The car has taken what it wanted (need met or full) and will not draw again."""
        return self.energy_wh >= self._stop_wh

    @property
    def charging(self) -> bool:
        """The car asks for current (control-pilot state C) or still draws some."""
        return self._target > 0.0 or self._draw > 0.0

    @property
    def draw_ma(self) -> float:
        """Current per used phase at the end of the last step."""
        return self._draw

    def set_underdraw(self, factor: float = 1.0, offset_ma: int = 0) -> None:
        """From now on draw `offered × factor − offset_ma` (a car that takes less than offered)."""
        self.draw_factor = factor
        self.draw_offset_ma = offset_ma
        self._dirty = True

    def switch_phases(self, evse_phases: int) -> None:
        """The EVSE now gives `evse_phases` (1 or 3; its phase contactor switched): a
        three-phase car draws on its L1 only, or on all its phases again."""
        self._evse_phases = evse_phases
        count = min(self.params.phases, evse_phases)
        if count != self.phase_count:
            self.phase_count = count
            self.phase_mask = (1 << count) - 1
            self._wh_per_mas = self.voltage_v * count / 3.6e6
            self._dirty = True

    def cp_disconnect(self) -> None:
        """A control-pilot interruption (as the EVSE's "wake up car" does): wakes a sleeping car."""
        self.asleep = False
        self._idle_s = 0.0
        self._offer_s = 0.0
        self._dirty = True

    # -- stepping ---------------------------------------------------------------------

    def step(self, dt_s: float, offered_ma: int, enabled: bool = True) -> Phases:
        """Advance `dt_s`; the mean current per EVSE phase (EVSE phase order, mA)."""
        i = self.advance(dt_s, offered_ma if enabled else 0)
        return Phases.on_mask(round(i), self.phase_mask)

    def advance(self, dt_s: float, offered_ma: float) -> float:
        """Advance `dt_s` with `offered_ma` signalled (0 = disabled).

        Returns the mean current per used phase over the step (mA); the energy counter
        grows by exactly that current × voltage × phases × dt.
        """
        if offered_ma < self._min_start:
            offered_ma = 0
            self._offer_s = 0.0
            if self._sleep_after is not None and not self.asleep:
                self._idle_s += dt_s
                if self._idle_s >= self._sleep_after:
                    self.asleep = True
                    self._dirty = True
        else:
            self._idle_s = 0.0
            if self.asleep and self._wake_after is not None:
                self._offer_s += dt_s
                if self._offer_s >= self._wake_after:
                    self.asleep = False
                    self._offer_s = 0.0
                    self._dirty = True
        if offered_ma != self._offer or self._dirty or self.energy_wh >= self._recheck_wh:
            self._offer = offered_ma
            self._dirty = False
            self._retarget()
        draw = self._draw
        target = self._target
        if draw == target:
            mean = draw
        else:
            rate = self._rate
            gap = target - draw if target > draw else draw - target
            reach_s = gap / rate if rate != math.inf else 0.0
            if reach_s <= dt_s:
                # reaches the target within the step: the ramp part, then flat
                mean = ((draw + target) * 0.5 * reach_s + target * (dt_s - reach_s)) / dt_s
                self._draw = target
            else:
                new = draw + rate * dt_s if target > draw else draw - rate * dt_s
                mean = (draw + new) * 0.5
                self._draw = new
        if mean > 0.0:
            self.energy_wh += mean * self._wh_per_mas * dt_s
        return mean

    def _retarget(self) -> None:
        """Work out what the car wants to draw now, and when to look again."""
        recheck = math.inf
        if self.asleep or self._offer <= 0 or self.energy_wh >= self._stop_wh:
            target = 0.0
        else:
            p = self.params
            cap_wh = p.capacity_kwh * 1000.0
            recheck = self._stop_wh
            limit = float(self._max_ma)
            soc = p.soc + self.energy_wh / cap_wh
            if p.taper_soc < 1.0:
                if soc < p.taper_soc:
                    recheck = min(recheck, (p.taper_soc - p.soc) * cap_wh)
                else:
                    raw = self._max_ma * (1.0 - soc) / (1.0 - p.taper_soc)
                    q = max(math.floor(raw / TAPER_QUANTUM_MA) * TAPER_QUANTUM_MA, TAPER_FLOOR_MA)
                    limit = min(limit, float(q))
                    if q > TAPER_FLOOR_MA:
                        next_soc = 1.0 - q * (1.0 - p.taper_soc) / self._max_ma
                        recheck = min(recheck, (next_soc - p.soc) * cap_wh + 1e-6)
            target = min(self._offer, limit) * self.draw_factor - self.draw_offset_ma
            if target < 0.0:
                target = 0.0
        self._recheck_wh = recheck
        if target != self._target:
            gap = abs(target - self._draw)
            self._rate = gap / self._lag_s if self._lag_s > 0 and gap > 0 else math.inf
        self._target = target
