"""A simulated measuring point: a true per-phase series seen late, noisy, or not at all.

A meter reads `delay_s` seconds in the past, multiplies each phase by (1 + gaussian noise),
delivers nothing during dropouts and keeps repeating one reading while stale. History is
indexed by whole seconds: entry i is the true value over the second that ended at time i,
entry 0 the state before the start.

This module must never use global randomness or read a clock.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from chargebrain.core.phases import Phases
from chargebrain.sim.scenario import MeterSpec

Window = tuple[int, int]  # [from, to) in seconds since the start


def _inside(t: int, windows: Sequence[Window]) -> Window | None:
    for w in windows:
        if w[0] <= t < w[1]:
            return w
    return None


class Meter:
    """Reads per-phase values (mA) from a history with delay, noise, dropouts and stale spells."""

    def __init__(
        self,
        spec: MeterSpec,
        rng: random.Random,
        *,
        dropouts: Sequence[Window] = (),
        stale: Sequence[Window] = (),
    ) -> None:
        self.spec = spec
        self._rng = rng
        self._sigma = spec.noise_pct / 100.0
        self._dropouts = tuple(dropouts)
        self._stale = tuple(stale)
        self._frozen: dict[Window, Phases] = {}

    def read(self, t: int, history: Sequence[Sequence[float]]) -> Phases | None:
        """The reading at time `t` from three histories (L1, L2, L3), or None if there is none."""
        if self._dropouts and _inside(t, self._dropouts) is not None:
            return None
        if self._stale:
            w = _inside(t, self._stale)
            if w is not None:
                frozen = self._frozen.get(w)
                if frozen is None:
                    frozen = self._sample(w[0], history)
                    self._frozen[w] = frozen
                return frozen
        return self._sample(t, history)

    def _sample(self, t: int, history: Sequence[Sequence[float]]) -> Phases:
        i = t - self.spec.delay_s
        if i < 0:
            i = 0
        last = len(history[0]) - 1
        if i > last:
            i = last
        a, b, c = history[0][i], history[1][i], history[2][i]
        if self._sigma > 0.0:
            g = self._rng.gauss
            s = self._sigma
            a *= 1.0 + g(0.0, s)
            b *= 1.0 + g(0.0, s)
            c *= 1.0 + g(0.0, s)
        return Phases(round(a), round(b), round(c))

    def noisy(self, value: float) -> float:
        """One value with this meter's noise (for meters read from elsewhere, like EVSEs)."""
        if self._sigma > 0.0:
            return value * (1.0 + self._rng.gauss(0.0, self._sigma))
        return value
