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


def feed(tracker: WakeTracker, start: float, end: float, *, offer_ma: int,
         drawing: bool) -> list[float]:
    """As `run`, with the offered current given (6 A and more counts as offered)."""
    wakes = []
    t = start
    while t < end:
        if tracker.update(t, plugged=True, offered=offer_ma >= 6000, drawing=drawing,
                          offer_ma=offer_ma):
            wakes.append(t)
        t += 1.0
    return wakes


def test_a_car_that_stops_by_itself_under_the_same_offer_is_left_alone() -> None:
    """Full, or at its own charge limit: it stopped although its offer stayed; poking it
    would not make it charge."""
    tracker = WakeTracker()
    feed(tracker, 0.0, 600.0, offer_ma=16000, drawing=True)
    assert feed(tracker, 600.0, 600.0 + 4 * WAKE_RETRY_S, offer_ma=16000, drawing=False) == []
    assert tracker.finished
    # A lower offer later (a lending cap) changes nothing; drawing again starts over.
    assert feed(tracker, 3000.0, 3100.0, offer_ma=6000, drawing=False) == []
    feed(tracker, 3100.0, 3200.0, offer_ma=6000, drawing=True)
    assert not tracker.finished


def test_a_car_that_tapered_under_a_lending_cap_and_stopped_is_left_alone() -> None:
    tracker = WakeTracker()
    feed(tracker, 0.0, 100.0, offer_ma=16000, drawing=True)
    feed(tracker, 100.0, 200.0, offer_ma=6000, drawing=True)  # capped at draw + 2 A
    assert feed(tracker, 200.0, 2000.0, offer_ma=6000, drawing=False) == []


def test_a_car_paused_by_the_manager_that_then_sleeps_is_woken() -> None:
    """It stopped because its offer went away; offered again, it ignores it."""
    tracker = WakeTracker()
    feed(tracker, 0.0, 600.0, offer_ma=16000, drawing=True)
    feed(tracker, 600.0, 602.0, offer_ma=0, drawing=True)  # ramping down after the pause
    assert feed(tracker, 602.0, 1800.0, offer_ma=0, drawing=False) == []
    assert not tracker.finished
    assert feed(tracker, 1800.0, 1900.0, offer_ma=6000, drawing=False) == [
        1800.0 + WAKE_AFTER_S]


def test_a_car_whose_offer_came_down_below_what_it_drew_under_is_not_finished() -> None:
    """Lowered from 16 A to 6 A, a car that needs more to charge stops: not its choice."""
    tracker = WakeTracker()
    feed(tracker, 0.0, 100.0, offer_ma=16000, drawing=True)
    feed(tracker, 100.0, 101.0, offer_ma=6000, drawing=True)
    feed(tracker, 101.0, 200.0, offer_ma=6000, drawing=False)
    assert not tracker.finished
