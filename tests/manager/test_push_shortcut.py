"""Readings pushed again (the very objects the last cycle took) take shortcuts: in
`Pushes.push_evses`, in taking them for a cycle (`Readers._read_pushed`) and in making the
EVSEs' balancer inputs. Over random sequences of pushes, repeats, cards, errors, stale
spells and cycles, a manager fed that way must wake, keep, count and decide exactly as
one fed equal copies (new objects, so that no shortcut applies) reading by reading
through `push_evse`."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from chargebrain.clock import VirtualClock
from chargebrain.core.model import EvseReading, EvseState, MeterReading
from chargebrain.core.phases import Phases
from chargebrain.devices.ajax import AjaxEvse
from chargebrain.devices.registry import DeviceTypes
from chargebrain.manager import config as C
from chargebrain.manager.assembly import build_manager
from chargebrain.manager.config import DeviceConfig, SiteParams
from chargebrain.manager.persistence import ManagerStore
from chargebrain.manager.runtime import ChargingManager
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.store.db import Store

EVSES = ("E1", "E2", "E3")


def _manager() -> tuple[ChargingManager, VirtualClock, Store]:
    clock = VirtualClock(start=1_700_000_000.0)
    store = Store(":memory:")
    mgr = build_manager(clock, PowerBrain(None), DeviceTypes(), ManagerStore(store))
    mgr.settings.set(SiteParams(max_total_current=32000, reserve_current=0,
                                max_imbalance_cur=0, cycle_ms=3000))
    for dev in EVSES:
        mgr.inventory.upsert_device(DeviceConfig(dev, "evse_ajax", max_charging_cur=16000,
                                                 used_phases=7))
    mgr.inventory.upsert_device(DeviceConfig("M1", "meter_ajax", role=C.ROLE_GRID))
    return mgr, clock, store


def _pool(rnd: random.Random) -> list[EvseReading]:
    """A few reading objects, pushed again and again (some with a card)."""
    out = []
    for _ in range(8):
        ma = rnd.choice([0, 2000, 6000, 12000, 20000])
        state = rnd.choice([EvseState.WAITING, EvseState.EV_PRESENT, EvseState.CHARGING])
        # With and without a meter and an energy counter (else the energy is counted).
        out.append(EvseReading(state, Phases(ma, ma, rnd.choice([0, ma])), ma * 0.69,
                               rnd.choice([0.0, 1234.5]), rnd.random() < 0.7,
                               rfid=rnd.choice(["", "", "", "1234"]),
                               energy_known=rnd.random() < 0.5))
    return out


def _seen(mgr: ChargingManager) -> tuple[object, ...]:
    """What the pushes and cycles left behind that the two managers must agree on."""
    out: list[object] = [mgr.signal.wakes, mgr.cycle_count]
    for dev in EVSES:
        rt = mgr.devices[dev]
        driver = rt.driver
        assert isinstance(driver, AjaxEvse) and rt.evse is not None
        d = rt.evse.decision
        ev = rt.evse
        st = rt.status
        out += [driver.last, driver.pushed_at, st.com_err, st.last_ok, st.error_since,
                ev.reading, ev.taken_at, ev.changed_at, ev.last_read, ev.building_currents,
                ev.total_energy_wh, ev.soft_meter_wh, ev.charging_secs, ev.max_power_w,
                ev.plugged, ev.wake_above_ma, ev.input,
                None if d is None else (d.current_ma, d.charging_enabled, d.reason)]
    return tuple(out)


@pytest.mark.parametrize("seed", range(12))
def test_pushes_again_through_the_shortcut_act_as_pushes_one_by_one(seed: int) -> None:
    rnd = random.Random(seed)
    pool = _pool(rnd)
    batched, clock_a, store_a = _manager()
    single, clock_b, store_b = _manager()
    try:
        for _ in range(120):
            step = rnd.choice([1.0, 1.0, 1.0, 40.0])  # sometimes long enough to go stale
            clock_a.advance(step)
            clock_b.advance(step)
            meter = MeterReading(power_w=0.0, currents=Phases(*[rnd.randrange(30000)] * 3))
            batched.pushes.push_meter("M1", meter)
            single.pushes.push_meter("M1", meter)
            # Mostly the reading each EVSE had last (the same object), sometimes another.
            items = []
            for dev in rnd.sample(EVSES, rnd.randrange(len(EVSES) + 1)):
                ev = batched.devices[dev].evse
                assert ev is not None
                last = ev.source
                reading = last if last is not None and rnd.random() < 0.8 else rnd.choice(pool)
                items.append((dev, reading))
            if rnd.random() < 0.2:
                # A wake level below what the reading shows (an EVSE whose decision was
                # made on its attached meter's currents): the shortcut must still wake.
                dev = rnd.choice(EVSES)
                for mgr in (batched, single):
                    ev = mgr.devices[dev].evse
                    assert ev is not None
                    ev.wake_above_ma = 500
            batched.pushes.push_evses(items)
            for dev, reading in items:
                single.pushes.push_evse(dev, replace(reading))  # an equal, new object
            due_a, due_b = batched.due_cycle(), single.due_cycle()
            assert due_a == due_b
            if due_a is not None:
                batched.cycle_now(poll=due_a)
                single.cycle_now(poll=due_b)
            assert _seen(batched) == _seen(single)
    finally:
        store_a.close()
        store_b.close()
