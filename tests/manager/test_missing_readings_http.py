"""Missing and old readings over real HTTP, with HTTP-input devices on a virtual clock:
they may lower or hold a car's current, never raise it, and a pause they alone cause
ends when the readings are there again.

The "cars" here draw what the manager's answer to their last push offered them (the
feeder of an HTTP-input wallbox behind a car that follows its pilot signal).
"""

from __future__ import annotations

import aiohttp

from chargebrain.clock import VirtualClock
from chargebrain.manager import config as C
from chargebrain.manager.runtime import ChargingManager
from tests.conftest import Running
from tests.manager.test_event_driven import ok

FOUR = ["E2", "E3", "E4", "E5"]


class Site:
    """HTTP-input wallboxes (and a grid meter) fed like real feeders would feed them."""

    def __init__(self, http: aiohttp.ClientSession, running: Running, clock: VirtualClock):
        self.http, self.running, self.clock = http, running, clock
        self.mgr: ChargingManager = running.app.manager
        self.offer: dict[str, int] = {}  # what each wallbox was last told
        self.draw: dict[str, int] = {}  # what each car draws, if not its offer
        self.drawn: dict[str, int] = {}  # what each car drew at its last report
        self.ticks = 0

    async def setup(self, max_total_ma: int) -> None:
        await ok(self.http, self.running, "cmd=set_params", {
            "max_total_current": max_total_ma, "reserve_current": 0, "max_imbalance_cur": 0,
            "disable_policy": 0})
        await self.add({"dev_id": "E1", "device_enabled": 0})

    async def add(self, dev: dict[str, object]) -> None:
        await ok(self.http, self.running, "cmd=set_params", {"devices": [dev]})
        await self.mgr.wait_woken()

    async def wallbox(self, dev_id: str) -> None:
        await self.add({"dev_type": "evse_ajax", "dev_id": dev_id, "max_charging_cur": 32000,
                        "used_phases": 7})

    async def grid_meter(self) -> None:
        await self.add({"dev_type": "meter_ajax", "dev_id": "M9", "name": "grid",
                        "role": C.ROLE_GRID})

    async def push(self, dev_id: str, state: int = 3) -> None:
        ma = self.draw.get(dev_id, self.offer.get(dev_id, 0))
        self.drawn[dev_id] = ma
        answer = await ok(self.http, self.running,
                          f"cmd=set_ajax_evse&dev_id={dev_id}&state={state}"
                          f"&current={ma},{ma},{ma}")
        self.offer[dev_id] = answer["charging_current"]

    async def grid(self, house_ma: int) -> None:
        # A real meter's readings always move a little (one that repeats itself exactly
        # counts as frozen).
        self.ticks += 1
        ma = house_ma + sum(self.drawn.values()) - 10 * (self.ticks % 2)
        await ok(self.http, self.running,
                 f"cmd=set_ajax_meter&dev_id=M9&current={ma},{ma},{ma}")

    async def second(self, wallboxes: list[str], house_ma: int | None = None) -> None:
        """One second: every wallbox (and the grid meter, unless None) reports."""
        for dev_id in wallboxes:
            await self.push(dev_id)
        if house_ma is not None:
            await self.grid(house_ma)
        await self.mgr.wait_woken()
        self.clock.advance(1.0)
        await self.mgr.wait_cycle()

    def decision(self, dev_id: str) -> tuple[int, str]:
        ev = self.mgr.devices[dev_id].evse
        assert ev is not None and ev.decision is not None
        return ev.decision.current_ma, ev.decision.reason

    def pause_timers(self) -> dict[str, float]:
        now = self.clock.monotonic()
        state = self.mgr.decider.balancer_state
        return {k: m.pause_until - now for k, m in state.evses.items() if m.pause_until > now}


async def site_of(virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession,
                  max_total_ma: int, *wallboxes: str) -> Site:
    """A site limited to `max_total_ma` with these HTTP-input wallboxes."""
    running, clock = virtual
    site = Site(http, running, clock)
    await site.setup(max_total_ma)
    for dev_id in wallboxes:
        await site.wallbox(dev_id)
    return site


async def test_evses_added_beside_charging_cars_pause_them_only_until_they_answer(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    site = await site_of(virtual, http, 32000, *FOUR)
    four = FOUR
    for _ in range(4):
        await site.second(four)
    assert [site.decision(d)[0] for d in four] == [8000] * 4
    # Two more wallboxes are added; until they report, they count at their maximum.
    await site.wallbox("E6")
    await site.wallbox("E7")
    for dev_id in four:
        current, reason = site.decision(dev_id)
        assert current == 0
        assert reason == "minimum current not available (site phase L1, readings missing)"
    assert site.pause_timers() == {}
    # They report (cars plugged in): five cars share the site, one waits; no timers.
    for _ in range(6):
        await site.second([*four, "E6", "E7"])
    currents = {d: site.decision(d)[0] for d in [*four, "E6", "E7"]}
    assert sorted(currents.values()) == [0] + [6400] * 5
    assert all(currents[d] == 6400 for d in four)
    assert site.pause_timers() == {}


async def test_wallboxes_started_before_the_grid_meter_charge_once_it_reports(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    site = await site_of(virtual, http, 32000, *FOUR)
    four = FOUR
    for dev_id in four:
        await site.push(dev_id)
    await site.second(four)
    assert all(site.decision(d)[0] >= 6000 for d in four)
    # The grid meter is created; until it reports, the rest of the house may take the
    # whole connection: everyone stops, but only until the meter is read.
    await site.grid_meter()
    await site.second(four)
    assert all(site.decision(d) == (0, "minimum current not available "
                                       "(site phase L1, readings missing)") for d in four)
    for _ in range(4):
        await site.second(four, house_ma=5000)
    assert [site.decision(d)[0] for d in four] == [6700] * 4  # (32 - 5) / 4, not in 300 s
    assert site.pause_timers() == {}


async def test_a_silent_grid_meter_freezes_increases_at_once(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    site = await site_of(virtual, http, 40000)
    await site.grid_meter()
    await site.wallbox("E2")
    await site.wallbox("E3")
    for _ in range(12):
        await site.second(["E2", "E3"], house_ma=20000)
    assert site.decision("E2")[0] == site.decision("E3")[0] == 10000
    # E3's car draws only 2 A for a moment: the rest is lent to E2.
    site.draw["E3"] = 2000
    for _ in range(4):
        await site.second(["E2", "E3"], house_ma=20000)
    before = {d: site.decision(d)[0] for d in ("E2", "E3")}
    assert before == {"E2": 14000, "E3": 6000}
    # The grid meter goes quiet (not stale yet) while E3's car ramps up again. Grid minus
    # EVSEs would make the house look smaller by what E3 takes up: nobody may be raised
    # on that, neither E2 nor E3 taking back what it lent.
    for ramp in (4000, 6000, 8000, 10000, 10000, 10000, 10000, 10000, 10000, 10000, 10000,
                 10000, 10000, 10000, 10000, 10000, 10000, 10000, 10000, 10000):
        site.draw["E3"] = min(ramp, site.offer["E3"])
        await site.second(["E2", "E3"])
        for dev_id, current in before.items():
            assert site.decision(dev_id)[0] <= current
            assert site.offer[dev_id] <= current
    assert site.decision("E3") == (6000, "no fresh meter reading (site)")
    # The meter reports again: E3 takes back what it lent.
    del site.draw["E3"]
    for _ in range(8):
        await site.second(["E2", "E3"], house_ma=20000)
    assert site.decision("E2")[0] == site.decision("E3")[0] == 10000


async def test_an_unreachable_evse_under_a_grid_meter_is_counted_once(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    site = await site_of(virtual, http, 32000)
    await site.grid_meter()
    await site.wallbox("E2")
    await site.add({"dev_id": "E2", "max_charging_cur": 16000})
    await site.wallbox("E3")
    for _ in range(12):
        await site.push("E3", state=1)  # no car
        await site.second(["E2"], house_ma=3500)
    assert site.decision("E2")[0] == 16000
    # E2 stops answering; its car goes on drawing 16 A, which the grid meter sees. A car
    # plugs in at E3: 32 - 3.5 - 16 = 12.5 A are free for it.
    for _ in range(40):
        await site.second(["E3"], house_ma=3500)
    assert site.decision("E2")[1] == "offline"
    assert site.decision("E3")[0] == 12500
