"""The peak hold of measured non-EVSE load."""

from __future__ import annotations

from chargebrain.core.hold import held_peak, prune
from chargebrain.core.phases import Phases


def test_rise_is_believed_at_once_fall_only_after_the_hold() -> None:
    samples = [(0.0, Phases(10, 10, 10)), (1.0, Phases(20, 5, 10))]
    assert held_peak(samples, 1.0, 8.0) == Phases(20, 10, 10)
    samples.append((2.0, Phases(3, 3, 3)))
    assert held_peak(samples, 2.0, 8.0) == Phases(20, 10, 10)
    samples.append((10.5, Phases(3, 3, 3)))
    # At 10.5 s the samples at 0 s and 1 s are older than the hold.
    assert held_peak(samples, 10.5, 8.0) == Phases(3, 3, 3)


def test_newest_sample_counts_however_old() -> None:
    assert held_peak([(0.0, Phases(7, 8, 9))], 100.0, 8.0) == Phases(7, 8, 9)
    assert held_peak([], 0.0, 8.0) == Phases()


def test_prune_keeps_the_window_and_the_newest() -> None:
    samples = [(0.0, Phases(1, 1, 1)), (5.0, Phases(2, 2, 2)), (9.0, Phases(3, 3, 3))]
    prune(samples, 12.0, 8.0)
    assert [t for t, _ in samples] == [5.0, 9.0]
    prune(samples, 100.0, 8.0)
    assert [t for t, _ in samples] == [9.0]
