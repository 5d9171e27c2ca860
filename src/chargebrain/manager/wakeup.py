"""Waking sleeping cars: when the manager interrupts an EVSE's control pilot.

Many cars fall asleep after some time without current (a long pause, a night waiting for a
cheap hour or for solar surplus) and some of them then ignore a new offer until they see
the control pilot interrupted, as if the cable had been unplugged and plugged in again.
With `enable_wakeup` set on an EVSE, the manager does that for them: when the car has been
offered at least the EVSE's minimum current for `WAKE_AFTER_S` in all (over one offer or
several) without drawing, the next command carries `wake` (the Power Brain switches the
pilot off for 5 s through register 8086; an HTTP-input EVSE is told so in the answer to
`set_ajax_evse`). A car that does not
start after that is tried again every `WAKE_RETRY_S`, at most `WAKE_ATTEMPTS` times per
plug-in, so a car that is simply full is left alone after a few attempts.

A car that stopped drawing by itself is not woken at all: one that was drawing and then
stops although it is still offered no less than the current it was drawing under has
ended its charge (full, or at its own charge limit). Only a car that stopped because its
offer went away or came down (a pause, a rotation) and then ignores a new offer is
taken to be asleep. Drawing again, or a new car, starts over.

The tracker is pure: it is fed the facts of each cycle and keeps a little state per EVSE.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Offered enough current this long in all without drawing: the car is taken to be asleep.
WAKE_AFTER_S = 30.0
#: Time between two wake-up attempts for the same car.
WAKE_RETRY_S = 600.0
#: Attempts per plug-in.
WAKE_ATTEMPTS = 3
#: Below this current (mA, on every phase) a car counts as not drawing.
DRAWING_MA = 500
#: Longest gap between two cycles that counts as offered time (a longer one is a pause).
MAX_STEP_S = 10.0


@dataclass(slots=True)
class WakeTracker:
    """The wake-up state of one EVSE, for the car plugged in now."""

    unused_s: float = 0.0  # time offered enough current without drawing, since it last drew
    seen_at: float | None = None  # the last cycle that offered current without it drawing
    last_wake: float | None = None
    attempts: int = 0
    last_offer_ma: int = 0  # the offer of the previous cycle: what a reading responds to
    drew_under_ma: int | None = None  # the offer it was last seen drawing under
    finished: bool = False  # it stopped by itself under an unchanged offer

    def reset(self) -> None:
        """A new car (or none): start over."""
        self.unused_s = 0.0
        self.seen_at = None
        self.last_wake = None
        self.attempts = 0
        self.last_offer_ma = 0
        self.drew_under_ma = None
        self.finished = False

    def update(
        self, mono: float, *, plugged: bool, offered: bool, drawing: bool, offer_ma: int = 0
    ) -> bool:
        """One cycle's facts; True when the control pilot should be interrupted now.

        `plugged`: a car is connected; `offered`: charging is enabled with at least the
        EVSE's minimum current; `drawing`: the car takes current; `offer_ma`: the current
        this cycle offers (0 when disabled; left at 0, a car is never taken to have
        finished). Offered time adds up over separate offers (a car offered current in
        short turns, as idle cars are, is woken early in a turn once it has ignored
        `WAKE_AFTER_S` of them).
        """
        if not plugged:
            self.reset()
            return False
        seen, self.last_offer_ma = self.last_offer_ma, offer_ma
        if drawing:
            # It charges: it was awake. Later sleeps get fresh attempts.
            self.unused_s = 0.0
            self.seen_at = None
            self.attempts = 0
            self.drew_under_ma = seen
            self.finished = False
            return False
        if self.drew_under_ma is not None:
            # The first reading without a draw: did it stop under the same offer?
            self.finished = seen > 0 and seen >= self.drew_under_ma
            self.drew_under_ma = None
        if not offered or self.finished:
            self.seen_at = None
            return False
        if self.seen_at is not None:
            self.unused_s += min(mono - self.seen_at, MAX_STEP_S)
        self.seen_at = mono
        if self.unused_s < WAKE_AFTER_S or self.attempts >= WAKE_ATTEMPTS:
            return False
        if self.last_wake is not None and mono - self.last_wake < WAKE_RETRY_S:
            return False
        self.last_wake = mono
        self.attempts += 1
        self.unused_s = 0.0
        return True
