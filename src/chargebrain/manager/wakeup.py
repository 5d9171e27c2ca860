"""Waking sleeping cars: when the manager interrupts an EVSE's control pilot.

Many cars fall asleep after some time without current (a long pause, a night waiting for a
cheap hour or for solar surplus) and some of them then ignore a new offer until they see
the control pilot interrupted, as if the cable had been unplugged and plugged in again.
With `enable_wakeup` set on an EVSE, the manager does that for them: when the car has been
offered at least the EVSE's minimum current for `WAKE_AFTER_S` without drawing, the next
command carries `wake` (the Power Brain switches the pilot off for 5 s through register
8086; an HTTP-input EVSE is told so in the answer to `set_ajax_evse`). A car that does not
start after that is tried again every `WAKE_RETRY_S`, at most `WAKE_ATTEMPTS` times per
plug-in, so a car that is simply full is left alone after a few attempts.

The tracker is pure: it is fed the facts of each cycle and keeps a little state per EVSE.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Offered enough current this long without drawing: the car is taken to be asleep.
WAKE_AFTER_S = 60.0
#: Time between two wake-up attempts for the same car.
WAKE_RETRY_S = 600.0
#: Attempts per plug-in.
WAKE_ATTEMPTS = 3
#: Below this current (mA, on every phase) a car counts as not drawing.
DRAWING_MA = 500


@dataclass(slots=True)
class WakeTracker:
    """The wake-up state of one EVSE, for the car plugged in now."""

    offered_since: float | None = None  # since when enough current is offered unused
    last_wake: float | None = None
    attempts: int = 0

    def reset(self) -> None:
        """A new car (or none): start over."""
        self.offered_since = None
        self.last_wake = None
        self.attempts = 0

    def update(
        self, mono: float, *, plugged: bool, offered: bool, drawing: bool
    ) -> bool:
        """One cycle's facts; True when the control pilot should be interrupted now.

        `plugged`: a car is connected; `offered`: charging is enabled with at least the
        EVSE's minimum current; `drawing`: the car takes current.
        """
        if not plugged:
            self.reset()
            return False
        if drawing:
            # It charges: it was awake. Later sleeps get fresh attempts.
            self.offered_since = None
            self.attempts = 0
            return False
        if not offered:
            self.offered_since = None
            return False
        if self.offered_since is None:
            self.offered_since = mono
        if mono - self.offered_since < WAKE_AFTER_S or self.attempts >= WAKE_ATTEMPTS:
            return False
        if self.last_wake is not None and mono - self.last_wake < WAKE_RETRY_S:
            return False
        self.last_wake = mono
        self.attempts += 1
        return True
