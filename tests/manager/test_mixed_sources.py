"""A pushed grid meter beside the polled built-in EVSE: a grid sample that already shows
the car's new draw must be matched with the car's fresh reading, not an old one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from chargebrain.app import App, Config
from chargebrain.manager.config import DeviceConfig
from chargebrain.powerbrain.hardware import SimCar
from tests.conftest import Running, free_ports, wait_for

HOUSE_MA = 5_000
SITE_MA = 25_000  # room for the house and a 16 A car, not for the house and two cars


async def e1_draw_ma(http: aiohttp.ClientSession, running: Running) -> int:
    async with http.get(running.url("cmd=modbus&device=evse&read=8064d")) as resp:
        assert resp.status == 200
        return int(await resp.json()) * 100


async def push_grid(http: aiohttp.ClientSession, running: Running, ma: int) -> None:
    async with http.get(running.url(
            f"cmd=set_ajax_meter&dev_id=M3&current={ma},{ma},{ma}")) as resp:
        assert resp.status == 200, await resp.text()


async def grid_follows_the_car(http: aiohttp.ClientSession, running: Running, car: Running,
                               evse_id: str) -> None:
    """Start the car behind `car`'s built-in EVSE, then push the grid as it is (house +
    car) several times a second for 3 s: `running`'s manager must never pause `evse_id`
    (the car taken for household load)."""
    async def charging() -> bool:
        await push_grid(http, running, HOUSE_MA + await e1_draw_ma(http, car))
        return await e1_draw_ma(http, car) == 16_000

    await wait_for(charging)
    evse = running.app.manager.devices[evse_id].evse
    assert evse is not None
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        await push_grid(http, running, HOUSE_MA + await e1_draw_ma(http, car))
        assert evse.decision is not None and evse.decision.charging_enabled
        await asyncio.sleep(0.02)
    assert await e1_draw_ma(http, car) == 16_000


async def test_the_car_keeps_charging_when_the_grid_sample_is_newer_than_its_reading(
        running: Running, http: aiohttp.ClientSession) -> None:
    mgr = running.app.manager
    mgr.settings.set(mgr.site.with_changes(max_total_current=SITE_MA))
    mgr.inventory.upsert_device(DeviceConfig("M3", "meter_ajax", name="grid", role=3))
    running.app.hardware.plug(SimCar(max_ma=16_000, phases=3))
    await grid_follows_the_car(http, running, running, "E1")


async def test_a_remote_power_brain_keeps_charging_beside_a_pushed_grid_meter(
        running: Running, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """The same over Modbus TCP: a second controller in observe mode is the charging
    manager's EVSE E2. A cycle woken by a grid push reads it again before deciding."""
    http_port, modbus_port = free_ports(1), free_ports(3)
    remote = App(Config(tmp_path / "remote", "127.0.0.1", http_port, modbus_port))
    await remote.start()
    peer = Running(remote, f"http://127.0.0.1:{http_port}", modbus_port)
    try:
        rmgr = remote.manager
        rmgr.settings.set(rmgr.site.with_changes(lb_enabled=False), persist=False)
        mgr = running.app.manager
        mgr.settings.set(mgr.site.with_changes(max_total_current=SITE_MA))
        mgr.inventory.upsert_device(DeviceConfig("M3", "meter_ajax", name="grid", role=3))
        mgr.inventory.upsert_device(DeviceConfig(
            "E2", "evse_powerbrain", name="remote", address=f"127.0.0.1:{modbus_port}",
            id=1, max_charging_cur=16_000))
        remote.hardware.plug(SimCar(max_ma=16_000, phases=3))
        await grid_follows_the_car(http, running, peer, "E2")
        assert mgr.guard.lowered == 0  # no overload: the guard never acted
    finally:
        await remote.stop()
