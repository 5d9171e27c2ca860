"""Reaction to an overload at N wallboxes the manager reaches over Modbus TCP.

Part of `bench.bench_reaction1000` (kind "modbus-remote"). A separate process simulates N
Power Brain controllers (`bench.bench_cycle.serve`: each its own `PowerBrain` serving its
EVSE bank on its own port; only the first has a car, drawing up to 16 A on three
phases). This process holds the App with its loops started: a grid meter (HTTP input,
role grid) and the N controllers configured as `evse_powerbrain` devices at
`127.0.0.1:port`, polled every cycle; the site limit leaves 4 A of headroom. The probe
of `bench.bench_reaction` runs in a third process: it pushes the grid samples over HTTP
and reads the first controller's limit registers (8093-8094) over Modbus TCP, from just
before the overloading HTTP request until they show a lower limit.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.bench_cycle import Controllers
from bench.bench_reaction import (
    EVSE_MA,
    OTHER_LOAD_MA,
    REACT_TIMEOUT_S,
    RESTORE_TIMEOUT_S,
    SITE_LIMIT_MA,
)
from bench.common import (
    HOST,
    CycleReads,
    free_port,
    kept_heap,
    quiet_logs,
    raise_nofile_limit,
    run_child,
)

if TYPE_CHECKING:
    from chargebrain.app import App

CONNECT_TIMEOUT_S = 120.0  # until every controller has been read once


def _configure(app: App, ports: list[int]) -> None:
    from chargebrain.manager.config import DeviceConfig

    mgr = app.manager
    # As in bench.bench_reaction: the peak hold only delays the restores between samples;
    # so does the jitter band of a falling load (the overloads the samples push make the
    # site's load jump by 6 A every few seconds, which that band takes for its noise).
    mgr.decider.hold.hold_s = 0.0
    mgr.decider.hold.fall_band = 0.0
    mgr.settings.set(mgr.site.with_changes(max_total_current=SITE_LIMIT_MA, min_pause_time=0))
    mgr.inventory.upsert_device(DeviceConfig("M3", "meter_ajax", name="grid", role=3))
    for i, port in enumerate(ports):
        mgr.inventory.upsert_device(DeviceConfig(
            f"E{i + 2}", "evse_powerbrain", name=f"Box {i + 2}", address=f"{HOST}:{port}",
            id=1, max_charging_cur=EVSE_MA))


async def _all_read(app: App) -> None:
    """Run cycles until every remote controller has answered once (connections open)."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    devices = app.manager.devices
    while time.monotonic() < deadline:
        await app.manager.wait_cycle(timeout=5.0)
        if all(rt.evse is None or rt.evse.reading is not None for rt in devices.values()
               if rt.config.dev_type == "evse_powerbrain"):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the simulated controllers were not all read in time")


async def _charging(app: App) -> None:
    """Push the grid as it is (other load + the car) until the watched EVSE E2 is given
    its 16 A and its car draws them: the state the probe starts from."""
    from chargebrain.core.model import MeterReading
    from chargebrain.core.phases import Phases

    mgr = app.manager
    evse = mgr.devices["E2"].evse
    assert evse is not None
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    pushes = 0
    while time.monotonic() < deadline:
        draw = evse.reading.currents.peak() if evse.reading is not None else 0
        pushes += 1
        amps = OTHER_LOAD_MA + draw + pushes % 7  # meter noise: never frozen
        mgr.pushes.push_meter("M3", MeterReading(power_w=3 * 230.0 * amps / 1000,
                                                 currents=Phases(amps, amps, amps)))
        d = evse.decision
        if d is not None and d.charging_enabled and d.current_ma == EVSE_MA and (
                draw >= EVSE_MA):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the watched EVSE did not start charging")


async def measure(evses: int, samples: int) -> dict[str, Any]:
    """An App with `evses` remote controllers and the probe on the first: latencies, and
    the EVSEs read within their cycle (`CycleReads`)."""
    from chargebrain.app import App, Config

    raise_nofile_limit(4 * evses + 256)
    lifetime = CONNECT_TIMEOUT_S + 60 + samples * (RESTORE_TIMEOUT_S + REACT_TIMEOUT_S)
    # The watched controller (with the car) answers from a process of its own, as a
    # wallbox does with its own CPU; the others share one process, without cars.
    watched = Controllers(1, lifetime, car_every=1)
    sims = Controllers(evses - 1, lifetime, car_every=0)
    await watched.start()
    try:
        await sims.start()
    except BaseException:
        await watched.stop()
        raise
    try:
        with quiet_logs(), tempfile.TemporaryDirectory(prefix="chargebrain-bench-") as tmp:
            app = App(Config(Path(tmp) / "data", HOST, free_port(), 0))
            await app.start()
            try:
                _configure(app, watched.ports + sims.ports)
                await _all_read(app)
                await _charging(app)
                reads = CycleReads(app)
                with kept_heap():
                    result: dict[str, Any] = await run_child(
                        "bench.bench_reaction",
                        ["--probe", str(app.http_bound_port), str(watched.ports[0]),
                         str(samples)],
                        timeout=30 + samples * (RESTORE_TIMEOUT_S + REACT_TIMEOUT_S))
                result.update(worst_read=reads.worst, evses=reads.evses, cycles=reads.cycles)
            finally:
                await app.stop()
    finally:
        await sims.stop()
        await watched.stop()
    return result
