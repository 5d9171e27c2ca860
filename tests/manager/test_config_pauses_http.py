"""A car stopped by a configuration change gets no pause timer (over real HTTP, with
HTTP-input wallboxes and a grid meter on a virtual clock): it charges again as soon as
there is room; a household step still starts the timer, and so does a second change
within the minimum pause."""

from __future__ import annotations

import aiohttp

from chargebrain.clock import VirtualClock
from tests.conftest import Running
from tests.manager.test_event_driven import ok
from tests.manager.test_missing_readings_http import FOUR, Site, site_of


async def limit(site: Site, max_total_ma: int) -> None:
    await ok(site.http, site.running, "cmd=set_params", {"max_total_current": max_total_ma})
    await site.mgr.wait_woken()


async def settle(site: Site, house_ma: int, seconds: int = 6) -> dict[str, int]:
    for _ in range(seconds):
        await site.second(FOUR, house_ma=house_ma)
    return {d: site.decision(d)[0] for d in FOUR}


async def four_cars_at_8_a(virtual: tuple[Running, VirtualClock],
                          http: aiohttp.ClientSession) -> Site:
    """A 38 A site, a grid meter, 6 A of household and four cars charging at 8 A."""
    site = await site_of(virtual, http, 38000)
    await site.grid_meter()
    for dev_id in FOUR:
        await site.wallbox(dev_id)
    assert set((await settle(site, 6000, 12)).values()) == {8000}
    return site


async def test_a_car_stopped_by_a_lower_limit_waits_without_a_timer(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    site = await four_cars_at_8_a(virtual, http)
    # The admin lowers the connection limit: 20 A for four cars, one must stop.
    await limit(site, 26000)
    currents = await settle(site, 6000)
    paused = [d for d, ma in currents.items() if ma == 0]
    assert len(paused) == 1 and sorted(currents.values()) == [0, 6600, 6600, 6600]
    assert site.pause_timers() == {}
    assert not site.decision(paused[0])[1].startswith("pause timer")
    # The house takes less: the stopped car charges again as soon as the manager trusts
    # that (a minute at most), not after 300 s.
    assert set((await settle(site, 0, 60)).values()) == {6500}
    # The limit is lowered again within the minimum pause: a car stops and this time
    # keeps its timer if it is the one released before.
    await limit(site, 20000)
    currents = await settle(site, 0)
    again = [d for d, ma in currents.items() if ma == 0]
    assert len(again) == 1
    assert (again[0] in site.pause_timers()) == (again[0] == paused[0])


async def test_a_car_stopped_by_the_household_keeps_its_timer(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    site = await four_cars_at_8_a(virtual, http)
    currents = await settle(site, 18000)  # 20 A left for four cars
    paused = [d for d, ma in currents.items() if ma == 0]
    assert len(paused) == 1
    assert set(site.pause_timers()) == set(paused)
    # The house takes less again: once the step's penalty is over (120 s) there would be
    # room, and the stopped car waits out its timer.
    currents = await settle(site, 6000, 150)
    assert currents[paused[0]] == 0
    assert site.decision(paused[0])[1].startswith("pause timer")
