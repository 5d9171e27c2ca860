"""Reaction time to an overload: grid sample in over HTTP, reduced limit out over Modbus TCP.

The App runs in this process on loopback (HTTP API, Modbus TCP, controller and manager
loops all started). Its built-in EVSE has a car plugged in that takes what it is offered,
up to 16 A on three phases. The other EVSEs are HTTP-input EVSEs without a car (pushed
every 10 s so they stay online): the manager reads, decides and answers for every one of
them in each cycle, and the built-in EVSE is the one the overload must lower (with cars
at the others, the balancer's fairness rules would decide which EVSE gives way, which is
not what this measures). A grid meter (HTTP input, role grid) gives the building's total
current; the site limit leaves 4 A of headroom and the overloading sample adds 6 A.

A separate probe process plays the grid meter and watches the EVSE. For each sample: push
the normal grid sample (5 A of other load plus what the built-in EVSE draws now, read
over Modbus TCP) and wait for the EVSE's limit (registers 8093-8094, read over Modbus
TCP) to be back at its normal value; then push the overloading sample with
`set_ajax_meter` (HTTP) and poll the registers until a lower limit (or charging off)
shows. The latency is from just before the HTTP request is sent to the first read that
shows the reduced limit. The same is done with 10 and with 250 EVSEs; their ratio shows
whether the reaction depends on the number of EVSEs.

Run alone: `python -m bench --only reaction`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    HOST,
    CycleReads,
    Figure,
    KeepAliveHttp,
    free_port,
    keep_idle_fresh,
    kept_heap,
    module_main,
    percentile,
    push_idle_evses,
    raise_nofile_limit,
    run_child,
)

if TYPE_CHECKING:
    from chargebrain.app import App

EVSE_MA = 16_000
OTHER_LOAD_MA = 5_000  # non-EVSE load in the normal sample, per phase
HEADROOM_MA = 4_000
OVERLOAD_MA = 6_000
SITE_LIMIT_MA = EVSE_MA + OTHER_LOAD_MA + HEADROOM_MA
GOAL_MS = 1000.0
RESTORE_TIMEOUT_S = 10.0
REACT_TIMEOUT_S = 5.0
POLL_S = 0.0005


# --- the probe (runs in its own process) -----------------------------------------------


class _Modbus:
    """One Modbus TCP connection reading the EVSE's charging limit and enable flag."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._tid = 0
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    async def read(self, address: int, count: int) -> bytes:
        """The data bytes of an FC3 read of `count` registers at `address` (unit 1)."""
        if self._r is None or self._w is None:
            self._r, self._w = await asyncio.open_connection(HOST, self.port)
        self._tid = (self._tid + 1) & 0xFFFF
        self._w.write(struct.pack(">HHHBBHH", self._tid, 0, 6, 1, 3, address, count))
        header = await self._r.readexactly(7)
        tid, _proto, length, _unit = struct.unpack(">HHHB", header)
        body = await self._r.readexactly(length - 1)
        if tid != self._tid or body[0] != 3 or body[1] != 2 * count:
            raise RuntimeError(f"bad Modbus answer {body!r}")
        return body[2:]

    async def limit(self) -> tuple[int, int]:
        """(charging_cur_limit in 0.1 A, charging_enable) = registers 8093, 8094."""
        limit, enable = struct.unpack(">HH", await self.read(8093, 2))
        return limit, enable

    async def draw_ma(self) -> int:
        """The largest phase current the EVSE's meter measures (8064-8069, 0.1 A)."""
        currents: tuple[int, int, int] = struct.unpack(">iii", await self.read(8064, 6))
        return max(currents) * 100

    def close(self) -> None:
        if self._w is not None:
            self._w.close()


def _reduced(regs: tuple[int, int], normal: tuple[int, int]) -> bool:
    return regs[1] == 0 or regs[0] < normal[0]


async def _until(modbus: _Modbus, predicate: Any, timeout: float) -> tuple[int, int] | None:
    """Poll the limit registers until `predicate` holds; None after `timeout` seconds."""
    deadline = time.perf_counter() + timeout
    while True:
        regs = await modbus.limit()
        if predicate(regs):
            return regs
        if time.perf_counter() > deadline:
            return None
        await asyncio.sleep(POLL_S)


async def probe(http_port: int, modbus_port: int, samples: int) -> dict[str, Any]:
    http = KeepAliveHttp(http_port)
    modbus = _Modbus(modbus_port)

    pushes = 0

    async def push(overload: bool) -> None:
        nonlocal pushes
        pushes += 1
        # A few mA of meter noise: a grid meter repeating itself exactly for 20 s counts
        # as frozen (a restore between samples can take that long with remote wallboxes).
        amps = OTHER_LOAD_MA + await modbus.draw_ma() + (OVERLOAD_MA if overload else 0) + (
            pushes % 7)
        await http.get(f"/cnf?cmd=set_ajax_meter&dev_id=M3&current={amps},{amps},{amps}")

    async def settled(normal: tuple[int, int]) -> bool:
        """The limit is back at normal and the car draws it (so the grid shows it)."""
        deadline = time.perf_counter() + RESTORE_TIMEOUT_S
        while time.perf_counter() < deadline:
            await push(False)
            back = await _until(modbus, lambda r: r == normal, 0.5) is not None
            if back and await modbus.draw_ma() >= normal[0] * 100:
                return True
            await asyncio.sleep(0.05)
        return False

    latencies: list[float] = []
    misses = 0
    try:
        await push(False)
        await asyncio.sleep(1.0)
        normal = await modbus.limit()
        if normal[1] != 1:
            raise RuntimeError(f"the EVSE does not charge in the normal state: {normal}")
        for _ in range(samples):
            if not await settled(normal):
                raise RuntimeError(f"the limit did not come back to {normal}")
            # Start at a random phase of the manager's own 1 s period.
            await asyncio.sleep(random.uniform(0.0, 0.05))
            amps = OTHER_LOAD_MA + await modbus.draw_ma() + OVERLOAD_MA
            start = time.perf_counter()
            await http.get(f"/cnf?cmd=set_ajax_meter&dev_id=M3&current={amps},{amps},{amps}")
            if await _until(modbus, lambda r: _reduced(r, normal), REACT_TIMEOUT_S) is None:
                misses += 1
                continue
            latencies.append((time.perf_counter() - start) * 1000)
        await push(False)
    finally:
        http.close()
        modbus.close()
    return {"latencies_ms": latencies, "misses": misses, "normal": list(normal)}


# --- the measured App ------------------------------------------------------------------


def _configure(app: App, evses: int) -> None:
    from chargebrain.manager.config import DeviceConfig
    from chargebrain.powerbrain.hardware import SimCar

    mgr = app.manager
    # The peak hold delays only giving room back after a load falls, never the reaction
    # to a rise measured here; without it each restore between samples is quick.
    mgr.decider.hold.hold_s = 0.0
    app.hardware.plug(SimCar(max_ma=EVSE_MA, phases=3, name="car"))
    mgr.settings.set(mgr.site.with_changes(max_total_current=SITE_LIMIT_MA, min_pause_time=0))
    mgr.inventory.upsert_device(DeviceConfig("M3", "meter_ajax", name="grid", role=3))
    for n in range(2, evses + 1):
        mgr.inventory.upsert_device(DeviceConfig(f"E{n}", "evse_ajax", name=f"Sim-{n}"))
    push_idle_evses(app, _others(evses))


def _others(evses: int) -> list[str]:
    return [f"E{n}" for n in range(2, evses + 1)]


async def measure(evses: int, samples: int) -> dict[str, Any]:
    from chargebrain.app import App, Config

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("chargebrain").setLevel(logging.ERROR)
    raise_nofile_limit(1024)
    with tempfile.TemporaryDirectory(prefix="chargebrain-bench-") as tmp:
        app = App(Config(Path(tmp) / "data", HOST, free_port(), free_port(3)))
        await app.start()
        fresh: asyncio.Task[None] | None = None
        try:
            _configure(app, evses)
            fresh = asyncio.create_task(keep_idle_fresh(app, _others(evses)))
            await app.manager.wait_cycle()
            reads = CycleReads(app)
            with kept_heap():
                result: dict[str, Any] = await run_child(
                    "bench.bench_reaction",
                    ["--probe", str(app.http_bound_port), str(app.config.modbus_port),
                     str(samples)],
                    timeout=30 + samples * (RESTORE_TIMEOUT_S + REACT_TIMEOUT_S))
            result.update(worst_read=reads.worst, evses=reads.evses, cycles=reads.cycles)
        finally:
            if fresh is not None:
                fresh.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fresh
            await app.stop()
    return result


def run(quick: bool) -> list[Figure]:
    samples = 20 if quick else 200
    small = asyncio.run(measure(10, samples))
    large = asyncio.run(measure(250, samples))
    figures = []
    stats: dict[int, tuple[float, float]] = {}
    for evses, m in ((10, small), (250, large)):
        lat: list[float] = m["latencies_ms"]
        if m["misses"] or len(lat) < samples:
            raise RuntimeError(f"{evses} EVSEs: {m['misses']} overloads without a reaction")
        stats[evses] = (statistics.median(lat), percentile(lat, 99))
    for evses in (10, 250):
        p50, p99 = stats[evses]
        if evses == 10:
            base50, base99, note = GOAL_MS, GOAL_MS, "baseline: the 1 s goal"
        else:
            base50, base99 = stats[10]
            note = "baseline: the same with 10 EVSEs"
        figures.append(Figure(
            name=f"reaction: overload pushed over HTTP to lower limit over Modbus, {evses} "
                 f"EVSEs, p50 of {samples} ({note})",
            value=round(p50, 2), unit="ms", baseline=round(base50, 2),
            ratio=round(p50 / base50, 3), goal="report"))
        figures.append(Figure(
            name=f"reaction: overload pushed over HTTP to lower limit over Modbus, {evses} "
                 f"EVSEs, p99 of {samples} ({note})",
            value=round(p99, 2), unit="ms", baseline=round(base99, 2),
            ratio=round(p99 / base99, 3),
            goal="<= 1000 ms" if evses == 10 else "<= 1000 ms, ratio near 1"))
    figures.append(Figure(
        name=f"reaction: EVSEs read within their cycle, worst of {large['cycles']} cycles "
             f"with {large['evses']} EVSEs (baseline: all)",
        value=large["worst_read"], unit="EVSEs", baseline=float(large["evses"]),
        ratio=round(large["worst_read"] / max(large["evses"], 1), 3), goal="all"))
    return figures


def _probe(values: list[str]) -> None:
    http_port, modbus_port, samples = (int(v) for v in values)
    print(json.dumps(asyncio.run(probe(http_port, modbus_port, samples))))


def _main(argv: list[str]) -> int:
    return module_main(argv, "python -m bench.bench_reaction", run, (
        "--probe", ("HTTP_PORT", "MODBUS_PORT", "SAMPLES"),
        "only run the probe against a running App; print JSON", _probe))

if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
