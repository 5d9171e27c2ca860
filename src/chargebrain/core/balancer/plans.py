"""Departure plans: who leaves first and still needs most is served first, within fairness.

A car with a plan has said when it leaves (`EvseInput.departure`) and how much energy it
still wants until then (`need_wh`). Its *need* is the current per phase that brings that
energy in time: the energy over the time left less `plan_reserve_s` (room for taper and
for pauses), on the phases it is counted on. By that need a planned car is

* *urgent* when it needs more than `plan_slack_share` of its minimum current: it ranks
  before the other waiting cars of its priority (earliest departure first), and once the
  minimums of these cars are admitted it is given up to `plan_margin` times its need,
  the earliest departures first (cars leaving within `plan_together_s` of each other
  share alike); once urgent it stays so until it is unplugged (no flapping between the
  classes);
* *slack* when its minimum brings its energy in time (or it has had all it asked for):
  it ranks after every other car of its priority, charging or not, is admitted only
  after the urgent cars have what they need, and is given more than its minimum only
  from what the others leave.

A car without a plan, or whose departure has passed, is neither: it is ranked and served
as always. Priorities, minimum currents, pauses and every limit hold as before; plans only
order the cars within one priority (docs/load-management.md, "Departure plans").
Pure: no I/O, no clock reads; works on the cycle's Work.
"""

from __future__ import annotations

from collections.abc import Callable

from chargebrain.core.balancer.work import MASK_PHASES, Slot, Work

NONE = 0
URGENT = 1
SLACK = 2
NEED_CAP_MA = 1 << 40  # the need of a car that leaves within its reserve: all it can take


def classify_plan(w: Work, s: Slot, was_urgent: bool) -> None:
    """Set the slot's plan class and need (mA per phase) from its plan."""
    e = s.e
    departure = e.departure
    if departure is None or departure <= w.now:
        return
    s.departure = departure
    need_wh = e.need_wh
    if need_wh <= 0:
        s.plan = SLACK
        return
    tun = w.tun
    left = departure - w.now - tun.plan_reserve_s
    phases = len(MASK_PHASES[s.bmask]) or 3
    if left <= 0:
        need = NEED_CAP_MA
    else:
        need = round(need_wh * 3.6e6 / (w.cfg.voltage * phases * left))
    s.need = need
    if was_urgent or need > tun.plan_slack_share * s.min:
        s.plan = URGENT
    else:
        s.plan = SLACK


def plan_order(s: Slot, order: tuple[float, ...]) -> tuple[float, ...]:
    """The ranking key of stage 1 with the car's plan: an urgent car that waits comes
    before the other waiting cars (earliest departure first), a slack car after every
    other car, ranked among themselves as always; others keep `order`."""
    if s.plan == URGENT and not s.incumbent:
        return (0.5, s.departure, *order[1:])
    if s.plan == SLACK:
        return (1.5, *order)  # among themselves, as always (rotation included)
    return order


FillTier = Callable[[Work, list[Slot]], None]


def raise_urgent(w: Work, urgent: list[Slot], fill_tier: FillTier) -> None:
    """The urgent cars just admitted are given up to `plan_margin` times their need: the
    earliest departures first; cars leaving within `plan_together_s` of the first of
    them share alike."""
    margin = w.tun.plan_margin
    together = w.tun.plan_together_s
    cars = sorted(urgent, key=lambda s: (s.departure, s.e.id))
    start, n = 0, len(cars)
    for i in range(1, n + 1):
        if i == n or cars[i].departure - cars[start].departure >= together:
            group = cars[start:i]
            _fill_more(w, group, fill_tier,
                       [min(s.want, max(s.min, round(s.need * margin))) for s in group])
            start = i


def fill_planned(w: Work, tier: list[Slot], fill_tier: FillTier,
                 urgent_done: bool = False) -> None:
    """Stage 2 of one tier with plans: urgent cars first up to `plan_margin` times their
    need (unless `urgent_done`), then every car but the slack ones up to its cap, then
    the slack ones."""
    if not any(s.plan for s in tier):
        fill_tier(w, tier)
        return
    if not urgent_done:
        raise_urgent(w, [s for s in tier if s.plan == URGENT], fill_tier)
    rest = [s for s in tier if s.plan != SLACK]
    if rest:
        _fill_more(w, rest, fill_tier, None)
    slack = [s for s in tier if s.plan == SLACK]
    if slack:
        _fill_more(w, slack, fill_tier, None)


def _fill_more(w: Work, cars: list[Slot], fill_tier: FillTier, caps: list[int] | None) -> None:
    """Water filling for `cars` from where they stand (their minimum plus what earlier
    passes gave them), each up to its cap (`caps`, else what it wants)."""
    done = [s.extra for s in cars]
    wants = [s.want for s in cars]
    for i, s in enumerate(cars):
        s.min += done[i]
        if caps is not None:
            s.want = max(caps[i], s.min)
        s.extra = 0
    fill_tier(w, cars)
    for i, s in enumerate(cars):
        s.min -= done[i]
        s.extra += done[i]
        s.want = wants[i]
