"""How a cycle schedules the reads of polled devices: a read that outlasts the cycle's
budget carries over, and once it has ended the next cycle reads that device again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from chargebrain.app import App, Config
from chargebrain.manager.config import DeviceConfig
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.powerbrain.hardware import SimEvseHardware
from chargebrain.servers.modbus_tcp import ModbusTcpServers
from tests.conftest import free_ports

SLOW_S = 0.9  # the first answers are this late: beyond the read budget of a 1 s cycle


@contextlib.asynccontextmanager
async def slow_then_quick_controller() -> AsyncIterator[int]:
    """Another controller's EVSE behind a proxy that holds back everything the controller
    sends during the first `SLOW_S` of each connection; yields the proxy's port."""
    brain = PowerBrain(store=None, hardware=SimEvseHardware())
    brain.start()
    port = free_ports()
    server = ModbusTcpServers([brain.banks["evse"]], "127.0.0.1", port)
    await server.start()

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, hold: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + hold
        while data := await src.read(4096):
            await asyncio.sleep(max(0.0, until - loop.time()))
            dst.write(data)
        dst.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(reader, up_w, 0.0), pipe(up_r, writer, SLOW_S),
                             return_exceptions=True)

    proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield int(proxy.sockets[0].getsockname()[1])
    finally:
        proxy.close()
        await server.stop()


async def test_a_read_that_carried_over_and_ended_is_read_again_next_cycle(
        tmp_path: Path) -> None:
    async with slow_then_quick_controller() as port:
        app = App(Config(tmp_path / "data", "127.0.0.1", free_ports(), 0))
        try:
            mgr = app.manager
            mgr.inventory.upsert_device(DeviceConfig(
                "E2", "evse_powerbrain", name="remote", address=f"127.0.0.1:{port}", id=1))
            ev = mgr.devices["E2"].evse
            assert ev is not None
            await mgr.cycle()  # its read outlasts the cycle's budget and carries over
            assert ev.last_read is None
            await asyncio.sleep(SLOW_S)  # meanwhile the read ends, between two cycles
            assert ev.last_read is not None
            before = app.clock.monotonic()
            await mgr.cycle()
            assert ev.last_read >= before  # read again in this cycle, not skipped
            assert not mgr.devices["E2"].status.com_err
        finally:
            await app.stop()
