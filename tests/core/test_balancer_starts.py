"""Cars that draw nothing: idle cars, probes and the start current a car has shown.

Closed-loop examples with a simple car model: a car draws what it is offered once that is
at least its start current, and nothing once it is full.
"""

from __future__ import annotations

import dataclasses
import itertools

from chargebrain.core.balancer import (
    Allocation,
    BalancerState,
    DrawMemory,
    EvseInput,
    Limit,
    SiteConfig,
    SiteInput,
    Tuning,
    allocate,
)
from chargebrain.core.balancer.drawing import floor_of, observe, probing
from chargebrain.core.model import EvseState
from chargebrain.core.phases import Phases
from tests.core.balancer_helpers import A, currents

TUN = Tuning()


@dataclasses.dataclass
class Car:
    """Draws its offer (on all three phases) if that is at least `start`, until full."""

    start: int = 6 * A
    full: bool = False
    phases: int = 7

    def draw(self, offered: int) -> Phases:
        got = offered if offered >= self.start and not self.full else 0
        return Phases.on_mask(got, self.phases)


def site(max_a: float, cars: dict[str, Car], **kw: object) -> SiteInput:
    evses = tuple(
        EvseInput(id, used_phases=7, state=EvseState.CHARGING, plugged_since=float(i))
        for i, id in enumerate(cars)
    )
    cfg = SiteConfig(max_total_current=int(max_a * A), **kw)  # type: ignore[arg-type]
    return SiteInput(cfg, evses=evses)


def step(s: SiteInput, a: Allocation, cars: dict[str, Car]) -> SiteInput:
    """The cars' readings after one cycle with allocation `a`."""
    by = a.by_id()
    evses = tuple(
        dataclasses.replace(e, measured=cars[e.id].draw(by[e.id].current_ma)) for e in s.evses
    )
    return dataclasses.replace(s, evses=evses)


def run(
    s: SiteInput, cars: dict[str, Car], seconds: float, *, state: BalancerState | None = None,
    start: float = 0.0, dt: float = 3.0,
) -> tuple[Allocation, BalancerState, SiteInput, float]:
    st = state or BalancerState()
    now = start
    a = allocate(s, st, now)
    while now + dt <= start + seconds:
        st, s = a.state, step(s, a, cars)
        now += dt
        a = allocate(s, st, now)
    return a, a.state, step(s, a, cars), now


# --- the draw memory on its own ---------------------------------------------------------------


def test_a_car_offered_current_that_draws_nothing_for_a_minute_turns_idle() -> None:
    d = observe(DrawMemory(), 0, 6 * A, 6 * A, 16 * A, 0.0, TUN)
    assert d.quiet_since == 0.0 and not d.idle
    d = observe(d, 0, 6 * A, 6 * A, 16 * A, 59.0, TUN)
    assert not d.idle
    d = observe(d, 0, 6 * A, 6 * A, 16 * A, 60.0, TUN)
    # Idle, and the first probe (one step above its minimum) is due at once.
    assert d.idle and d.probe_ma == 8 * A and d.probe_at == 60.0
    assert probing(d, 60.0)


def test_a_car_offered_nothing_is_not_counted_as_quiet() -> None:
    d = observe(DrawMemory(), 0, 0, 6 * A, 16 * A, 0.0, TUN)
    assert d.quiet_since is None
    assert observe(d, 0, 0, 6 * A, 16 * A, 100.0, TUN) == DrawMemory()


def test_a_failed_probe_offers_one_step_more_and_waits_twice_as_long_next_time() -> None:
    d = DrawMemory(quiet_since=0.0, idle=True, probe_ma=8 * A, probe_at=60.0,
                   probe_until=90.0, probe_gap=600.0)
    d = observe(d, 0, 8 * A, 6 * A, 16 * A, 90.0, TUN)
    assert d.probe_until is None and d.probe_ma == 10 * A
    assert d.probe_at == 690.0 and d.probe_gap == 1200.0
    assert not probing(d, 689.0) and probing(d, 690.0)
    # The probe never offers more than the car may take, and the wait stops growing.
    d = dataclasses.replace(d, probe_ma=15 * A, probe_until=700.0, probe_gap=3600.0)
    d = observe(d, 0, 15 * A, 6 * A, 16 * A, 700.0, TUN)
    assert d.probe_ma == 16 * A and d.probe_gap == 3600.0


def test_a_car_that_starts_during_a_probe_keeps_the_probe_current_as_its_minimum() -> None:
    d = DrawMemory(quiet_since=0.0, idle=True, probe_ma=8 * A, probe_until=90.0)
    d = observe(d, 8 * A, 8 * A, 6 * A, 16 * A, 70.0, TUN)
    assert d == DrawMemory(start_min=8 * A)
    assert floor_of(d, 6 * A, 16 * A) == 8 * A
    assert floor_of(d, 6 * A, 7 * A) == 7 * A  # never above the EVSE's maximum
    # Drawing again later is no new evidence: the learnt minimum stays.
    assert observe(d, 9 * A, 10 * A, 6 * A, 16 * A, 500.0, TUN) is d


# --- in the balancer --------------------------------------------------------------------------


def test_a_car_needing_8a_to_start_is_probed_and_then_charges_at_8a_at_least() -> None:
    cars = {"E1": Car(), "E2": Car(), "E3": Car(), "PICKY": Car(start=8 * A)}
    # four cars at 6 A, and no room for a fifth 6 A; rotation after 15 minutes
    s = site(24.5, cars, tuning=Tuning(rotation_time_s=900))
    a, st, s, now = run(s, cars, 30)
    assert currents(a)["PICKY"] == 6 * A and s.evses[3].measured.peak() == 0
    # After a minute of drawing nothing it is idle; 8 A for it does not fit, so it waits.
    a, st, s, now = run(s, cars, 60, state=st, start=now + 3)
    assert currents(a)["PICKY"] == 0 and a.by_id()["PICKY"].reason == "car not drawing"
    # It has never drawn: when the others have charged for the rotation time, one of them
    # makes room for a probe at 8 A, and the car starts.
    a, st, s, now = run(s, cars, 900, state=st, start=now + 3)
    assert currents(a)["PICKY"] >= 8 * A
    assert s.evses[3].measured.peak() >= 8 * A
    assert a.state.evses["PICKY"].draw.start_min == 8 * A
    # 8 A is its minimum from now on, while the cars take turns.
    for _ in range(4):
        a, st, s, now = run(s, cars, 900, state=st, start=now + 3)
        assert currents(a)["PICKY"] in (0, *range(8 * A, 17 * A))
        assert sum(currents(a).values()) <= 24500


def test_a_car_that_is_full_makes_way_for_a_waiting_one() -> None:
    cars = {"DONE": Car(), "E2": Car(), "WAIT": Car()}
    s = site(13, cars)  # room for two cars at 6 A
    a, st, s, now = run(s, cars, 60)
    assert currents(a) == {"DONE": 6500, "E2": 6500, "WAIT": 0}
    cars["DONE"].full = True
    # Within minutes it is idle and the waiting car takes its place.
    a, st, s, now = run(s, cars, 120, state=st, start=now + 3)
    by = a.by_id()
    assert by["DONE"].current_ma == 0 and by["DONE"].reason == "car not drawing"
    assert by["WAIT"].current_ma >= 6 * A and by["E2"].current_ma >= 6 * A
    # Later probes take nobody's place: the two others charge on without a pause.
    for _ in range(2 * 3600 // 3):
        st, s = a.state, step(s, a, cars)
        now += 3
        a = allocate(s, st, now)
        by = a.by_id()
        assert by["WAIT"].current_ma >= 6 * A and by["E2"].current_ma >= 6 * A


def test_a_failing_probe_comes_ever_more_rarely() -> None:
    cars = {"DONE": Car(), "E2": Car()}
    s = site(32, cars)
    a, st, s, now = run(s, cars, 60)
    cars["DONE"].full = True
    probes: list[tuple[float, int]] = []
    for _ in range(4 * 3600 // 3):
        st, s = a.state, step(s, a, cars)
        now += 3
        a = allocate(s, st, now)
        d = a.state.evses["DONE"].draw
        if d.probe_until is not None and (not probes or probes[-1][0] < d.probe_until):
            probes.append((d.probe_until, d.probe_ma))
    starts = [until for until, _ in probes]
    gaps = [b - a_ for a_, b in itertools.pairwise(starts)]
    assert len(probes) >= 4
    assert all(g2 > g1 for g1, g2 in itertools.pairwise(gaps[:3]))
    assert [ma for _, ma in probes[:5]] == [8 * A, 10 * A, 12 * A, 14 * A, 16 * A]


def test_an_idle_car_gets_its_minimum_from_what_the_others_leave() -> None:
    cars = {"FULL": Car(full=True), "SMALL": Car()}
    s = site(32, cars)
    small = dataclasses.replace(s.evses[1], max_current=10 * A)
    s = dataclasses.replace(s, evses=(s.evses[0], small))
    a, *_ = run(s, cars, 600)
    by = a.by_id()
    assert by["SMALL"].current_ma == 10 * A
    assert by["FULL"].current_ma == 6 * A  # idle, but there is room: it keeps 6 A
    assert by["FULL"].reason == "car not drawing" and by["FULL"].lreason is Limit.CAR_DRAW


def test_an_idle_car_that_starts_drawing_charges_normally_again() -> None:
    cars = {"LATE": Car(full=True), "E2": Car()}
    s = site(32, cars)
    a, st, s, now = run(s, cars, 600)
    assert a.state.evses["LATE"].draw.idle
    cars["LATE"].full = False  # say, its own charging timer fires
    a, st, s, now = run(s, cars, 60, state=st, start=now + 3)
    assert not a.state.evses["LATE"].draw.idle
    assert currents(a) == {"LATE": 16 * A, "E2": 16 * A}
