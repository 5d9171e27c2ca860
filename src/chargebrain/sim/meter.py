"""A simulated measuring point: a true per-phase series seen late, noisy, or not at all.

A meter reads `delay_s` seconds in the past, multiplies each phase by (1 + gaussian noise),
delivers nothing during dropouts (given, or random at `dropouts_per_hour`), now and then
reports a spike (`spikes_per_hour`: one reading times `spike_factor`) and keeps repeating
one reading while stale. History is
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
        # Random dropouts and spikes draw from a generator of their own, made only when the
        # meter has them, so the noise of a meter without them stays as it was.
        self._chance: random.Random | None = None
        if spec.dropouts_per_hour > 0 or spec.spikes_per_hour > 0:
            self._chance = random.Random(rng.random())
        self._drop: Window = (-1, -1)  # the current or next random dropout
        self._last_t: int | None = None
        # The dropouts have a generator of their own, so that when they fall does not
        # depend on when the meter is read (`dropout_windows` tells them in advance).
        self._drops = random.Random()
        self._drops_from = self._drops.getstate()
        if spec.dropouts_per_hour > 0:
            assert self._chance is not None
            self._drops.seed(self._chance.random())
            self._drops_from = self._drops.getstate()
            self._drop = self._next_drop(self._drops, 0)

    def _next_drop(self, gen: random.Random, after: int) -> Window:
        start = after + gen.expovariate(self.spec.dropouts_per_hour / 3600.0)
        length = max(1.0, gen.expovariate(1.0 / self.spec.dropout_mean_s))
        return (int(start), int(start + length))

    def dropout_windows(self, until: int) -> list[Window]:
        """The random dropouts `[from, to)` that begin before `until`: the spells in
        which `read` will give nothing (besides the dropouts given)."""
        if self.spec.dropouts_per_hour <= 0:
            return []
        gen = random.Random()
        gen.setstate(self._drops_from)
        out: list[Window] = []
        w = self._next_drop(gen, 0)
        while w[0] < until:
            if w[1] > w[0]:
                out.append(w)
            w = self._next_drop(gen, w[1])
        return out

    def read(self, t: int, history: Sequence[Sequence[float]]) -> Phases | None:
        """The reading at time `t` from three histories (L1, L2, L3), or None if there is none."""
        if self._dropouts and _inside(t, self._dropouts) is not None:
            return None
        if self._chance is not None:
            return self._by_chance(t, history)
        return self._read(t, history)

    def _by_chance(self, t: int, history: Sequence[Sequence[float]]) -> Phases | None:
        """A reading with the meter's random dropouts and spikes."""
        chance = self._chance
        assert chance is not None
        last, self._last_t = self._last_t, t
        if self.spec.dropouts_per_hour > 0:
            while t >= self._drop[1]:
                self._drop = self._next_drop(self._drops, self._drop[1])
            if t >= self._drop[0]:
                return None
        reading = self._read(t, history)
        per_s = self.spec.spikes_per_hour / 3600.0
        if reading is not None and per_s > 0:
            gap = t - last if last is not None and t > last else 1
            if chance.random() < 1.0 - (1.0 - min(per_s, 1.0)) ** gap:
                k = self.spec.spike_factor
                reading = Phases(round(reading.l1 * k), round(reading.l2 * k),
                                 round(reading.l3 * k))
        return reading

    def _read(self, t: int, history: Sequence[Sequence[float]]) -> Phases | None:
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
