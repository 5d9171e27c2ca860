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


def test_an_interrupted_offer_starts_the_minute_again() -> None:
    tracker = WakeTracker()
    assert run(tracker, 0.0, WAKE_AFTER_S - 1) == []
    assert run(tracker, WAKE_AFTER_S - 1, WAKE_AFTER_S, offered=False) == []
    assert run(tracker, WAKE_AFTER_S, 2 * WAKE_AFTER_S) == []
    assert run(tracker, 2 * WAKE_AFTER_S, 2 * WAKE_AFTER_S + 1) == [2 * WAKE_AFTER_S]


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
