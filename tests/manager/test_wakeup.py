"""The wake-up tracker: when a car offered current but not drawing gets a CP interruption."""

from __future__ import annotations

from itertools import pairwise

from chargebrain.manager.wakeup import WAKE_AFTER_S, WAKE_ATTEMPTS, WAKE_RETRY_S, WakeTracker


def run(tracker: WakeTracker, start: float, end: float, *, plugged: bool = True,
        offered: bool = True, drawing: bool = False) -> list[float]:
    """Feed one fact per second from start to end; the times a wake was asked for."""
    wakes = []
    t = start
    while t < end:
        if tracker.update(t, plugged=plugged, offered=offered, drawing=drawing):
            wakes.append(t)
        t += 1.0
    return wakes


def test_wakes_after_a_minute_of_unused_offer_then_retries_a_few_times() -> None:
    tracker = WakeTracker()
    wakes = run(tracker, 0.0, 4 * WAKE_RETRY_S)
    assert wakes[0] == WAKE_AFTER_S
    assert len(wakes) == WAKE_ATTEMPTS
    assert all(b - a == WAKE_RETRY_S for a, b in pairwise(wakes))


def test_no_wake_while_drawing_or_not_offered_or_unplugged() -> None:
    assert run(WakeTracker(), 0.0, 1000.0, drawing=True) == []
    assert run(WakeTracker(), 0.0, 1000.0, offered=False) == []
    assert run(WakeTracker(), 0.0, 1000.0, plugged=False) == []


def test_offered_time_adds_up_over_short_turns() -> None:
    """A car offered current in 20 s turns (as an idle car is probed) is woken early in
    its second turn, so it has the rest of that turn to start."""
    tracker = WakeTracker()
    assert run(tracker, 0.0, 20.0) == []
    assert run(tracker, 20.0, 300.0, offered=False) == []
    assert run(tracker, 300.0, 320.0) == [300.0 + WAKE_AFTER_S - 19.0]


def test_a_gap_between_cycles_counts_at_most_ten_seconds() -> None:
    tracker = WakeTracker()
    assert not tracker.update(0.0, plugged=True, offered=True, drawing=False)
    assert not tracker.update(25.0, plugged=True, offered=True, drawing=False)
    assert tracker.unused_s == 10.0


def test_a_car_that_charged_gets_fresh_attempts_and_a_new_car_too() -> None:
    tracker = WakeTracker()
    run(tracker, 0.0, 3 * WAKE_RETRY_S)
    assert tracker.attempts == WAKE_ATTEMPTS
    run(tracker, 3 * WAKE_RETRY_S, 3 * WAKE_RETRY_S + 10, drawing=True)
    assert tracker.attempts == 0
    t0 = 3 * WAKE_RETRY_S + 10
    assert run(tracker, t0, t0 + WAKE_AFTER_S + 1) == [t0 + WAKE_AFTER_S]
    run(tracker, 0.0, 1.0, plugged=False)
    assert tracker.attempts == 0 and tracker.last_wake is None
