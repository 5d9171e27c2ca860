"""The non-EVSE load the balancer is given: rises at once, falls after the hold time and
only when they stand out of the load's own jitter, and the last fresh value while a meter
is quiet."""

from __future__ import annotations

import itertools
import random

from chargebrain.clock import VirtualClock
from chargebrain.core.phases import Phases
from chargebrain.manager.inputs import LoadHold

A = 1000


def even(ma: float) -> Phases:
    v = round(ma)
    return Phases(v, v, v)


def test_meter_noise_moves_the_load_given_only_rarely_a_real_fall_does() -> None:
    clock = VirtualClock()
    hold = LoadHold(clock)
    rnd = random.Random(3)
    given = []
    for _ in range(600):  # 30 minutes of 3 s cycles, 20 A with 3 % noise (about 0.6 A)
        clock.advance(3.0)
        given.append(hold.held(0, even(20 * A * (1 + rnd.gauss(0, 0.03)))).l1)
    changes = sum(1 for a, b in itertools.pairwise(given) if a != b)
    falls = sum(1 for a, b in itertools.pairwise(given) if b < a)
    assert changes < 40  # the bare peak hold moves with almost every reading
    assert falls < 10
    assert max(given[100:]) < 23 * A
    # A real fall of 5 A is believed after the hold time.
    for _ in range(10):
        clock.advance(3.0)
        low = hold.held(0, even(15 * A * (1 + rnd.gauss(0, 0.03)))).l1
    assert low < 17 * A
    # A rise is believed at once.
    clock.advance(3.0)
    assert hold.held(0, even(25 * A)).l1 == 25 * A


def test_with_the_dead_band_off_every_fall_counts_after_the_hold() -> None:
    clock = VirtualClock()
    hold = LoadHold(clock)
    hold.fall_band = 0.0
    hold.held(0, even(20 * A))
    clock.advance(3.0)
    hold.held(0, even(19 * A))
    clock.advance(9.0)
    assert hold.held(0, even(19.9 * A)).l1 == 19900


def test_while_a_meter_is_quiet_the_last_fresh_load_is_held() -> None:
    hold = LoadHold(VirtualClock())
    assert hold.fresh(0, even(12 * A), True) == even(12 * A)
    assert hold.fresh(0, even(4 * A), False) == even(12 * A)
    assert hold.fresh(1, even(4 * A), False) == even(4 * A)  # none fresh yet
