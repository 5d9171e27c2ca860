"""Event-driven cycles: a pushed reading runs a cycle at once only when it matters.

Over real HTTP with the application on a virtual clock (time moves only when a test says
so, so the periodic cycle runs only when the clock is advanced past it), and on a bare
manager whose devices are all HTTP inputs (`cycle_now`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from chargebrain.clock import VirtualClock
from chargebrain.core.model import EvseReading, EvseState, MeterReading
from chargebrain.core.phases import Phases
from chargebrain.devices.ajax import AjaxEvse
from chargebrain.devices.registry import DeviceTypes
from chargebrain.manager import config as C
from chargebrain.manager.assembly import build_manager
from chargebrain.manager.config import ConfigError, DeviceConfig, SiteParams
from chargebrain.manager.persistence import ManagerStore
from chargebrain.manager.pushes import WAKE_EVSE_OVER_MA, WAKE_METER_MA
from chargebrain.manager.runtime import ChargingManager
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.store.db import Store
from tests.conftest import Running, wait_for

QUIET_S = 0.3  # how long a test waits to be sure that no cycle runs


async def ok(http: aiohttp.ClientSession, running: Running, query: str,
             body: Any = None) -> Any:
    if body is None:
        async with http.get(running.url(query)) as resp:
            answer = await resp.json()
            status = resp.status
    else:
        async with http.post(running.url(query), json=body) as resp:
            answer = await resp.json()
            status = resp.status
    assert status == 200, (query, answer)
    return answer


async def site(http: aiohttp.ClientSession, running: Running) -> ChargingManager:
    """E1 off, HTTP-input EVSE E2 (16 A, three phases), grid meter M3 on 3 x 32 A; every
    configuration change has been acted on when this returns."""
    await ok(http, running, "cmd=set_params", {"max_total_current": 32000, "reserve_current": 0,
                                               "max_imbalance_cur": 0, "disable_policy": 0})
    for dev in ({"dev_id": "E1", "device_enabled": 0},
                {"dev_type": "evse_ajax", "dev_id": "E2", "name": "car",
                 "max_charging_cur": 16000, "used_phases": 7},
                {"dev_type": "meter_ajax", "dev_id": "M3", "name": "grid", "role": C.ROLE_GRID}):
        await ok(http, running, "cmd=set_params", {"devices": [dev]})
    mgr = running.app.manager
    await mgr.wait_cycle()
    return mgr


async def settled(mgr: ChargingManager) -> int:
    """The cycle count once nothing is pending any more."""
    await mgr.wait_woken()
    await asyncio.sleep(QUIET_S)
    await mgr.wait_woken()
    return mgr.cycle_count


async def evse_push(http: aiohttp.ClientSession, running: Running, fields: str) -> Any:
    return await ok(http, running, f"cmd=set_ajax_evse&dev_id=E2&{fields}")


async def meter_push(http: aiohttp.ClientSession, running: Running, amps: float) -> None:
    ma = round(amps * 1000)
    await ok(http, running, f"cmd=set_ajax_meter&dev_id=M3&current={ma},{ma},{ma}")


# --- over HTTP ---------------------------------------------------------------------------


async def test_a_push_that_changes_nothing_urgent_runs_no_cycle(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, _ = virtual
    mgr = await site(http, running)
    await meter_push(http, running, 5)
    first = await evse_push(http, running, "state=3&current=0,0,0&total_energy=1000")
    assert first["charging_current"] == 16000  # a first reading: decided at once
    count = await settled(mgr)
    # The car draws a little of what it was given, the energy counter moves on, the house
    # draws a little more: nothing for a cycle at once.
    again = await evse_push(http, running, "state=3&current=6000,6000,6000&total_energy=1010")
    await meter_push(http, running, 6)
    assert again == first  # answered with the decision in force
    await asyncio.sleep(QUIET_S)
    assert mgr.cycle_count == count
    rt = mgr.devices["E2"]
    assert rt.evse is not None and rt.evse.reading is not None
    assert rt.evse.reading.total_energy_wh == 1000  # kept for the next cycle


async def test_a_push_that_matters_runs_a_cycle_at_once(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, _ = virtual
    mgr = await site(http, running)
    await meter_push(http, running, 5)
    await evse_push(http, running, "state=2")
    count = await settled(mgr)
    # The car starts charging: a cycle runs before the answer.
    answer = await evse_push(http, running, "state=3&current=0,0,0")
    assert mgr.cycle_count == count + 1
    assert answer["charging_current"] == 16000
    count = await settled(mgr)
    # The house draws 3 A more than the last decision counted: the load rises.
    await meter_push(http, running, 5 + (WAKE_METER_MA + 1000) / 1000)
    await wait_for(lambda: mgr.cycle_count == count + 1)
    count = await settled(mgr)
    # The car draws clearly more than the 16 A it was given (and the meter shows it).
    over = 16000 + WAKE_EVSE_OVER_MA + 500
    await evse_push(http, running, f"state=3&current={over},{over},{over}")
    assert mgr.cycle_count == count + 1
    await meter_push(http, running, 8 + over / 1000)
    count = await settled(mgr)
    # The car is unplugged.
    await evse_push(http, running, "state=1")
    assert mgr.cycle_count == count + 1


async def test_the_periodic_cycle_still_runs_and_takes_what_was_kept(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, clock = virtual
    mgr = await site(http, running)
    await meter_push(http, running, 5)
    await evse_push(http, running, "state=3&current=0,0,0&total_energy=1000")
    count = await settled(mgr)
    await evse_push(http, running, "state=3&current=0,0,0&total_energy=1500")
    await asyncio.sleep(QUIET_S)
    assert mgr.cycle_count == count
    clock.advance(mgr.site.cycle_ms / 1000.0)
    await wait_for(lambda: mgr.cycle_count > count)
    rt = mgr.devices["E2"]
    assert rt.evse is not None and rt.evse.reading is not None
    assert rt.evse.reading.total_energy_wh == 1500


async def test_a_setting_changed_is_acted_on_at_once(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, _ = virtual
    mgr = await site(http, running)
    await meter_push(http, running, 5)
    await evse_push(http, running, "state=3&current=0,0,0")
    await settled(mgr)
    await ok(http, running, "cmd=set_params", {"devices": [{"dev_id": "E2",
                                                            "max_charging_cur": 10000}]})
    await mgr.wait_woken()
    rt = mgr.devices["E2"]
    assert rt.evse is not None and rt.evse.decision is not None
    assert rt.evse.decision.current_ma == 10000


# --- the due logic -----------------------------------------------------------------------


def bare_manager(cycle_ms: int = 3000) -> tuple[ChargingManager, VirtualClock, Store]:
    """A manager whose devices are all HTTP inputs: E1 (16 A, three phases), grid M1."""
    clock = VirtualClock(start=1_700_000_000.0)
    store = Store(":memory:")
    mgr = build_manager(clock, PowerBrain(None), DeviceTypes(), ManagerStore(store))
    mgr.settings.set(SiteParams(max_total_current=32000, reserve_current=0, max_imbalance_cur=0,
                                cycle_ms=cycle_ms))
    mgr.inventory.upsert_device(DeviceConfig("E1", "evse_ajax", max_charging_cur=16000,
                                             used_phases=7))
    mgr.inventory.upsert_device(DeviceConfig("M1", "meter_ajax", role=C.ROLE_GRID))
    return mgr, clock, store


def charging(ma: int = 0) -> EvseReading:
    return EvseReading(EvseState.CHARGING, Phases(ma, ma, ma), ma * 0.69, 0.0, True)


def grid(amps: float) -> MeterReading:
    ma = round(amps * 1000)
    return MeterReading(power_w=ma * 0.69, currents=Phases(ma, ma, ma))


def test_the_periodic_cycle_is_due_every_cycle_ms_and_a_wake_in_between() -> None:
    mgr, clock, store = bare_manager(cycle_ms=3000)
    try:
        assert mgr.due_cycle() is True  # the first one at once
        assert mgr.due_cycle() is None
        mgr.wake()
        assert mgr.due_cycle() is False  # woken: on the pushed data
        assert mgr.due_cycle() is None
        clock.advance(2.9)
        assert mgr.due_cycle() is None
        clock.advance(0.1)
        mgr.wake()
        assert mgr.due_cycle() is True  # the periodic cycle covers the wake
        assert mgr.due_cycle() is None
        clock.advance(3.0)
        assert mgr.due_cycle() is True
        clock.advance(10.0)  # late (a slow cycle): once now, the next a full period later
        assert mgr.due_cycle() is True
        assert mgr.due_cycle() is None
        clock.advance(2.9)
        assert mgr.due_cycle() is None
        clock.advance(0.1)
        assert mgr.due_cycle() is True
    finally:
        store.close()


def test_pushes_wake_only_when_they_matter() -> None:
    mgr, clock, store = bare_manager()
    try:
        mgr.pushes.push_meter("M1", grid(5))
        mgr.pushes.push_evse("E1", charging())
        assert mgr.due_cycle() is True
        mgr.cycle_now()
        d = mgr.devices["E1"].evse
        assert d is not None and d.decision is not None and d.decision.current_ma == 16000
        clock.advance(1)
        # noise, a car following its offer, the house a little up: nothing urgent
        mgr.pushes.push_meter("M1", grid(5 + (WAKE_METER_MA - 500) / 1000))
        mgr.pushes.push_evse("E1", charging(15000))
        mgr.pushes.push_evse("E1", charging(16000 + WAKE_EVSE_OVER_MA - 100))
        assert mgr.due_cycle() is None
        # the house clearly up
        mgr.pushes.push_meter("M1", grid(5 + (WAKE_METER_MA + 500) / 1000))
        assert mgr.due_cycle() is False
        mgr.cycle_now(poll=False)
        # drawing clearly more than it was given and drew at the last decision (16.9 A)
        mgr.pushes.push_evse("E1", charging(16900 + WAKE_EVSE_OVER_MA + 100))
        assert mgr.due_cycle() is False
        mgr.cycle_now(poll=False)
        # a card, and a state change
        mgr.pushes.push_evse("E1", EvseReading(EvseState.EV_PRESENT, has_meter=True, rfid="1234"))
        assert mgr.due_cycle() is False
        mgr.cycle_now(poll=False)
        mgr.pushes.push_evse("E1", EvseReading(EvseState.WAITING, has_meter=True))
        assert mgr.due_cycle() is False
    finally:
        store.close()


def test_a_reading_after_a_communication_error_matters() -> None:
    mgr, clock, store = bare_manager()
    try:
        mgr.pushes.push_meter("M1", grid(5))
        mgr.pushes.push_evse("E1", charging())
        mgr.due_cycle()
        mgr.cycle_now()
        clock.advance(31)  # nothing pushed: both go stale at the next periodic cycle
        assert mgr.due_cycle() is True
        mgr.cycle_now()
        assert mgr.devices["E1"].status.com_err and mgr.devices["M1"].status.com_err
        mgr.pushes.push_evse("E1", charging())
        assert mgr.due_cycle() is False
        mgr.cycle_now(poll=False)
        mgr.pushes.push_meter("M1", grid(5))
        assert mgr.due_cycle() is False
    finally:
        store.close()


def test_a_meter_a_formula_reads_wakes_on_a_change_either_way() -> None:
    mgr, _, store = bare_manager()
    try:
        mgr.inventory.upsert_device(DeviceConfig("M2", "meter_ajax", name="heat pump"))
        mgr.inventory.upsert_device(DeviceConfig("M4", "meter_ajax", name="display only"))
        mgr.inventory.upsert_device(DeviceConfig("E1", "evse_ajax", used_phases=7,
                                       max_charging_cur="32000 - M2.current"))
        for dev in ("M1", "M2", "M4"):
            mgr.pushes.push_meter(dev, grid(10))
        mgr.pushes.push_evse("E1", charging())
        mgr.due_cycle()
        mgr.cycle_now()
        mgr.pushes.push_meter("M4", grid(30))  # nobody looks at it now
        assert mgr.due_cycle() is None
        mgr.pushes.push_meter("M2", grid(10 - (WAKE_METER_MA + 500) / 1000))
        assert mgr.due_cycle() is False
    finally:
        store.close()


def test_cycle_now_needs_devices_without_io() -> None:
    mgr, _, store = bare_manager()
    try:
        mgr.inventory.upsert_device(DeviceConfig("M2", "meter_powerbrain", address="meter1", id=2))
        with pytest.raises(RuntimeError):
            mgr.cycle_now()
    finally:
        store.close()


def test_device_values_are_filled_for_a_formula_only_when_asked_for() -> None:
    mgr, clock, store = bare_manager()
    try:
        fills = []
        fill = mgr.decider.fill_devices

        def counted(ctx: Any) -> None:
            fills.append(mgr.cycle_count)
            fill(ctx)

        mgr.decider.fill_devices = counted  # type: ignore[method-assign]
        mgr.pushes.push_meter("M1", grid(10))
        unmetered = EvseReading(EvseState.CHARGING)  # its draw counts as what it is given
        mgr.pushes.push_evse("E1", unmetered)
        mgr.due_cycle()
        mgr.cycle_now()
        assert fills == []  # no formula anywhere: the values are not built in the cycle
        # one asked for afterwards (an API call) is filled then
        assert mgr.decider.ctx.resolve("dev", "M1", "current_l1") == 10000.0
        assert fills == [1]
        # a formula in the configuration: evaluated on the values the cycle started with
        mgr.inventory.upsert_device(DeviceConfig("E1", "evse_ajax", used_phases=7,
                                       max_charging_cur="E1.offered + 1000"))
        clock.advance(3)
        mgr.due_cycle()
        mgr.cycle_now()
        ev = mgr.devices["E1"].evse
        assert ev is not None and ev.decision is not None
        first = ev.decision.current_ma
        clock.advance(3)
        mgr.due_cycle()
        mgr.cycle_now()
        assert ev.decision.current_ma == first + 1000  # last cycle's offer + 1 A
    finally:
        store.close()


def test_a_changed_override_reaches_the_balancer_although_the_reading_is_the_same() -> None:
    mgr, clock, store = bare_manager()
    try:
        mgr.pushes.push_meter("M1", grid(5))
        mgr.pushes.push_evse("E1", charging(16000))
        mgr.due_cycle()
        mgr.cycle_now()
        ev = mgr.devices["E1"].evse
        assert ev is not None and ev.decision is not None
        assert ev.decision.current_ma == 16000
        ev.ov_cur = 8000
        clock.advance(3)
        mgr.due_cycle()
        mgr.cycle_now()
        assert ev.decision.current_ma == 8000
    finally:
        store.close()


def test_pushing_several_evse_readings_at_once_is_pushing_each() -> None:
    mgr, clock, store = bare_manager()
    try:
        mgr.inventory.upsert_device(DeviceConfig("E2", "evse_ajax", max_charging_cur=16000,
                                       used_phases=7))
        mgr.pushes.push_meter("M1", grid(5))
        mgr.pushes.push_evses([("E1", charging()), ("E2", charging())])
        mgr.due_cycle()
        mgr.cycle_now()
        clock.advance(1)
        mgr.pushes.push_evses([("E1", charging(2000)), ("E2", charging(3000))])
        assert mgr.due_cycle() is None
        for dev in ("E1", "E2"):
            driver = mgr.devices[dev].driver
            assert isinstance(driver, AjaxEvse) and driver.pushed_at == clock.monotonic()
        mgr.pushes.push_evses([("E1", charging(2000)), ("E2", EvseReading(EvseState.WAITING))])
        assert mgr.due_cycle() is False
        with pytest.raises(ConfigError):
            mgr.pushes.push_evses([("E9", charging())])
    finally:
        store.close()
