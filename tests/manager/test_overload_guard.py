"""The overload guard over Modbus TCP: a second controller is the charging manager's EVSE
E2, a pushed grid meter measures the site, and a display meter polled through a relay
that the test can hold stands for a slow device. While a cycle woken by an overloading
grid sample waits for that slow device, the guard has already lowered E2; the decision
that follows writes its own value. A group with its own grid meter is guarded alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from chargebrain.app import App, Config
from chargebrain.manager.config import DeviceConfig
from chargebrain.manager.ports import CycleListener
from chargebrain.powerbrain.hardware import SimCar
from tests.conftest import Running, free_ports, wait_for
from tests.manager.test_mixed_sources import HOUSE_MA, SITE_MA, e1_draw_ma, push_grid


class Relay:
    """A TCP relay to a port: while held, what clients send waits (their reads stall)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.open = asyncio.Event()
        self.open.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       gated: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(4096):
                    if gated:
                        await self.open.wait()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for task in (asyncio.create_task(pipe(reader, up_writer, True)),
                     asyncio.create_task(pipe(up_reader, writer, False))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self.open.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()


async def limit_da(http: aiohttp.ClientSession, peer: Running) -> tuple[int, int]:
    """(charging limit in 0.1 A, charging enabled) as the remote controller holds them."""
    values = []
    for register in (8093, 8094):
        async with http.get(peer.url(f"cmd=modbus&device=evse&read={register}")) as resp:
            assert resp.status == 200
            values.append(int(await resp.json()))
    return values[0], values[1]


@contextlib.asynccontextmanager
async def guarded_site(running: Running, http: aiohttp.ClientSession,
                       tmp_path: Path) -> AsyncIterator[tuple[Running, Relay]]:
    """The site: E2 a remote controller whose car draws 16 A, the grid pushed as it is
    (house + car), M4 a display meter read through the relay; long cycles (the read
    budget of a cycle is 60 % of it), no peak hold."""
    http_port, modbus_port = free_ports(1), free_ports(3)
    remote = App(Config(tmp_path / "remote", "127.0.0.1", http_port, modbus_port))
    await remote.start()
    peer = Running(remote, f"http://127.0.0.1:{http_port}", modbus_port)
    relay = Relay(modbus_port + 1)
    await relay.start()
    try:
        rmgr = remote.manager
        rmgr.settings.set(rmgr.site.with_changes(lb_enabled=False), persist=False)
        mgr = running.app.manager
        mgr.decider.hold.hold_s = 0.0
        mgr.settings.set(mgr.site.with_changes(max_total_current=SITE_MA, cycle_ms=8000))
        mgr.inventory.upsert_device(DeviceConfig("M3", "meter_ajax", name="grid", role=3))
        mgr.inventory.upsert_device(DeviceConfig(
            "E2", "evse_powerbrain", name="remote", address=f"127.0.0.1:{modbus_port}",
            id=1, max_charging_cur=16_000))
        mgr.inventory.upsert_device(DeviceConfig(
            "M4", "meter_powerbrain", name="slow", address=f"127.0.0.1:{relay.port}", id=2))
        remote.hardware.plug(SimCar(max_ma=16_000, phases=3))

        async def charging() -> bool:
            await push_grid(http, running, HOUSE_MA + await e1_draw_ma(http, peer))
            return await e1_draw_ma(http, peer) == 16_000 and await limit_da(
                http, peer) == (160, 1)

        await wait_for(charging, timeout=15.0)
        await mgr.wait_cycle()  # no read of M4 is still under way
        assert mgr.devices["M4"].meter is not None and not mgr.devices["M4"].status.com_err
        yield peer, relay
    finally:
        await relay.stop()
        await remote.stop()


async def changed_limit(http: aiohttp.ClientSession, peer: Running) -> tuple[int, int]:
    """The remote controller's limit once it is no longer 16 A charging."""
    async def changed() -> tuple[int, int] | None:
        regs = await limit_da(http, peer)
        return regs if regs != (160, 1) else None

    result: tuple[int, int] = await wait_for(changed)
    return result


async def test_the_guard_lowers_a_remote_wallbox_before_the_cycle_has_read(
        running: Running, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    mgr = running.app.manager
    async with guarded_site(running, http, tmp_path) as (peer, relay):
        relay.open.clear()  # M4 stops answering
        decisions = mgr.decider.cycles
        # 6 A more than the site's 25 A leave room for: 2 A over the limit.
        await push_grid(http, running, HOUSE_MA + 16_000 + 6_000)
        assert await changed_limit(http, peer) == (140, 1)  # 2 A less, at once
        # ... while the cycle woken by that sample still waits for M4: no decision yet.
        assert mgr.decider.cycles == decisions
        assert mgr.guard.lowered == 1
        relay.open.set()
        await wait_for(lambda: mgr.decider.cycles > decisions)
        evse = mgr.devices["E2"].evse
        assert evse is not None and evse.decision is not None
        decided = evse.decision.current_ma // 100

        async def own_value() -> bool:  # the decision writes what it decided
            return await limit_da(http, peer) == (decided, 1)

        await wait_for(own_value)

        async def restored() -> bool:
            # The grid as it is: the decisions that follow give the car its 16 A back.
            await push_grid(http, running, HOUSE_MA + await e1_draw_ma(http, peer))
            return await limit_da(http, peer) == (160, 1)

        await wait_for(restored, timeout=15.0)
        assert mgr.guard.lowered == 1


async def test_the_guard_never_goes_below_the_minimum_and_leaves_pausing_to_the_decision(
        running: Running, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    mgr = running.app.manager
    async with guarded_site(running, http, tmp_path) as (peer, relay):
        relay.open.clear()
        decisions = mgr.decider.cycles
        # 20 A more: the car would have to stop, which is the decision's to say.
        await push_grid(http, running, HOUSE_MA + 16_000 + 20_000)
        assert await changed_limit(http, peer) == (60, 1)  # its minimum, 6 A, not off
        assert mgr.decider.cycles == decisions
        relay.open.set()
        await wait_for(lambda: mgr.decider.cycles > decisions)
        evse = mgr.devices["E2"].evse
        assert evse is not None and evse.decision is not None
        assert not evse.decision.charging_enabled  # the decision pauses it

        async def off() -> bool:
            return (await limit_da(http, peer))[1] == 0

        await wait_for(off)


class HeldLimits(CycleListener):
    """Notes at the end of every cycle the limit the manager last wrote to one EVSE."""

    def __init__(self, running: Running, dev_id: str) -> None:
        self.evse = running.app.manager.devices[dev_id].evse
        self.limits: list[int] = []

    def on_cycle(self, now: float) -> None:
        assert self.evse is not None and self.evse.last_command is not None
        self.limits.append(self.evse.last_command.current_ma)


async def test_a_cycle_reading_when_the_overload_comes_writes_no_more_than_the_guard(
        running: Running, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """The overload arrives while a cycle (woken before it) waits for M4: the guard lowers
    E2 at once; that cycle decided on the grid sample before the overload, and its
    16 A must not go out over the guard's limit. The next cycle decides on the overload."""
    mgr = running.app.manager
    async with guarded_site(running, http, tmp_path) as (peer, relay):
        relay.open.clear()
        mgr.wake()  # a cycle that now waits for M4
        await wait_for(lambda: mgr.waits_for_io)
        decisions = mgr.decider.cycles
        held = HeldLimits(running, "E2")
        mgr.listeners.append(held)
        await push_grid(http, running, HOUSE_MA + 16_000 + 6_000)
        assert await changed_limit(http, peer) == (140, 1)
        assert mgr.decider.cycles == decisions and mgr.writer.caps["E2"][0] == 14_000
        relay.open.set()
        await wait_for(lambda: len(held.limits) >= 2)
        assert held.limits[0] == 14_000  # the cycle before the overload: the guard's limit
        assert held.limits[1] <= 14_000  # the next one decided on the overload
        assert "E2" not in mgr.writer.caps  # (and the guard's ceiling ended with it)


async def test_the_guard_lowers_the_evses_under_a_group_whose_own_grid_meter_is_over(
        running: Running, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """E2 in group E10 (20 A), whose feed a pushed grid meter M5 measures: a sample of M5
    2 A over the group's limit lowers E2 by 2 A at once, while the site's meter M3 (not
    pushed again) shows no overload; the decision follows once M4 answers."""
    mgr = running.app.manager
    async with guarded_site(running, http, tmp_path) as (peer, relay):
        mgr.inventory.upsert_device(DeviceConfig(
            "E10", "evse_group", name="carport", max_charging_cur=20_000))
        e2 = mgr.devices["E2"].config
        mgr.inventory.upsert_device(DeviceConfig(
            "E2", "evse_powerbrain", name=e2.name, address=e2.address, id=e2.id,
            max_charging_cur=16_000, group=10))
        mgr.inventory.upsert_device(DeviceConfig(
            "M5", "meter_ajax", name="carport feed", role=3, group=10))

        async def push_both(extra_ma: int = 0) -> None:
            car = await e1_draw_ma(http, peer)
            await push_grid(http, running, HOUSE_MA + car)
            async with http.get(running.url(
                    f"cmd=set_ajax_meter&dev_id=M5&current={car + extra_ma},"
                    f"{car + extra_ma},{car + extra_ma}")) as resp:
                assert resp.status == 200, await resp.text()

        async def charging() -> bool:
            await push_both()
            return await limit_da(http, peer) == (160, 1)

        await wait_for(charging, timeout=15.0)
        await mgr.wait_cycle()
        assert mgr.decider.group_limits[10] == 20_000
        relay.open.clear()
        decisions, lowered = mgr.decider.cycles, mgr.guard.lowered
        car = await e1_draw_ma(http, peer)
        async with http.get(running.url(
                f"cmd=set_ajax_meter&dev_id=M5&current={car + 6_000},{car + 6_000},"
                f"{car + 6_000}")) as resp:
            assert resp.status == 200
        assert await changed_limit(http, peer) == (140, 1)  # 22 A on a 20 A feed: 2 A less
        assert mgr.decider.cycles == decisions and mgr.guard.lowered == lowered + 1
        relay.open.set()
        await wait_for(lambda: mgr.decider.cycles > decisions)
