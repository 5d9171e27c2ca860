"""Peak hold: a measured load is believed when it rises at once, when it falls only later.

Meters are read at different moments and with different delays. When a car ramps up, a
fresh EVSE reading minus an older grid reading makes the rest of the house look smaller
than it is; handing that "room" out twice overloads the fuse. Holding the highest value
of the last few seconds removes the illusion at the cost of giving room back a little
later. Pure: time is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable

from chargebrain.core.phases import Phases

DEFAULT_HOLD_S = 8.0


def held_peak(samples: Iterable[tuple[float, Phases]], now: float, hold_s: float) -> Phases:
    """Per phase, the highest value among samples taken within `hold_s` before `now`.

    The newest sample always counts, however old it is.
    """
    best: Phases | None = None
    newest: tuple[float, Phases] | None = None
    for t, value in samples:
        if newest is None or t >= newest[0]:
            newest = (t, value)
        if now - t <= hold_s:
            best = value if best is None else best.max(value)
    if newest is None:
        return Phases()
    return newest[1] if best is None else best.max(newest[1])


def prune(samples: list[tuple[float, Phases]], now: float, hold_s: float) -> None:
    """Drop samples older than the hold window, keeping at least the newest."""
    while len(samples) > 1 and now - samples[0][0] > hold_s:
        samples.pop(0)
