"""Reaction to an overload with N OCPP charge points, against N HTTP-input EVSEs.

Part of the OCPP benchmark (`python -m bench --only ocpp`). The App runs in this process
on loopback (HTTP API, OCPP central system, control loop started); its site has a grid
meter (HTTP input, role grid) and N EVSEs of one kind. A separate probe process plays
them: the first EVSE has a car that draws what it is given (up to 16 A on three phases),
the others are connected without a car (OCPP charge points: booted, status Available;
HTTP-input EVSEs: pushed by this process every 10 s so that they stay online), as in the
reaction bench: with cars at the others, the balancer's fairness rules would decide
which EVSE gives way. The site limit leaves 4 A of headroom; the overloading sample adds
6 A, so the watched EVSE's limit must drop.

For each sample the probe brings the site back to normal (the watched EVSE given its
normal limit and drawing it, a normal grid sample pushed), then pushes the overloading
grid sample with `set_ajax_meter` (HTTP) and waits for the lower limit at the EVSE:
the OCPP charge point until a SetChargingProfile with a lower limit arrives (it then
sends its meter values at once, as a wallbox does when its current changes); the
HTTP-input EVSE pushes set_ajax_evse one after the other on its connection and waits
until an answer carries the lower current. The latency is from just before the HTTP
request with the overload is sent.

chargebrain is imported inside functions, so that the probe process starts quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.bench_reaction import (
    EVSE_MA,
    HEADROOM_MA,
    OTHER_LOAD_MA,
    OVERLOAD_MA,
    REACT_TIMEOUT_S,
    RESTORE_TIMEOUT_S,
)
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
    quiet_logs,
    raise_nofile_limit,
    run_child,
)
from bench.ocpp_points import Box, Counts, Pusher

if TYPE_CHECKING:
    pass

SITE_LIMIT_MA = EVSE_MA + OTHER_LOAD_MA + HEADROOM_MA
HTTP_PUSH_GAP_S = 0.002  # between the watched HTTP-input EVSE's pushes
OCPP_REPORT_S = 1.0  # the watched charge point's meter values, besides after a profile
MODES = ("ocpp", "http")


# --- the probe (runs in its own process) -------------------------------------------------


async def _keep_pushing(point: Pusher) -> None:
    while True:
        await point.report(HTTP_PUSH_GAP_S)
        await asyncio.sleep(HTTP_PUSH_GAP_S)


async def _keep_reporting(point: Box) -> None:
    while True:
        await asyncio.sleep(OCPP_REPORT_S)
        await point.report(OCPP_REPORT_S)


async def _until(point: Box | Pusher, holds: Callable[[float], bool], timeout: float) -> bool:
    """Wait until the limit `point` was last given satisfies `holds`; False on timeout."""
    deadline = time.perf_counter() + timeout
    while not holds(point.given_a):
        point.changed.clear()
        left = deadline - time.perf_counter()
        if left <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(point.changed.wait(), left)
    return True


async def probe(mode: str, http_port: int, ocpp_port: int, count: int,
                samples: int) -> dict[str, Any]:
    counts = Counts()
    watched: Box | Pusher
    points: list[Box] = []
    if mode == "ocpp":
        points = [Box(f"ws://{HOST}:{ocpp_port}", f"CP-{i + 2}", counts, charging=i == 0)
                  for i in range(count)]
        watched = points[0]
        watched.report_on_profile = True
    else:
        watched = Pusher(http_port, "E2", counts)
    for group in range(0, len(points), 50):  # (not all handshakes at once)
        await asyncio.gather(*(p.open() for p in points[group:group + 50]))
    if isinstance(watched, Pusher):
        await watched.open()
        loop = asyncio.create_task(_keep_pushing(watched))
    else:
        loop = asyncio.create_task(_keep_reporting(watched))
    http = KeepAliveHttp(http_port)

    async def push_grid(overload: bool) -> None:
        ma = OTHER_LOAD_MA + round(watched.draw() * 1000) + (OVERLOAD_MA if overload else 0)
        await http.get(f"/cnf?cmd=set_ajax_meter&dev_id=M3&current={ma},{ma},{ma}")

    async def settled(normal: float) -> bool:
        """Given its normal limit again, drawing it, and the grid showing it."""
        deadline = time.perf_counter() + RESTORE_TIMEOUT_S
        while time.perf_counter() < deadline:
            await push_grid(False)
            if await _until(watched, lambda a: a == normal, 1.0):
                await asyncio.sleep(0.3)  # (the charge point's new draw reaches the App)
                await push_grid(False)
                await asyncio.sleep(0.3)
                if watched.given_a == normal:
                    return True
        return False

    latencies: list[float] = []
    misses = 0
    normal = 0.0
    try:
        await push_grid(False)
        await asyncio.sleep(1.5)
        await push_grid(False)
        await asyncio.sleep(1.0)
        normal = watched.given_a
        if normal * 1000 < EVSE_MA:
            raise RuntimeError(f"{mode}: the watched EVSE is given {normal} A, not its maximum")
        for _ in range(samples):
            if not await settled(normal):
                raise RuntimeError(f"{mode}: the limit did not come back to {normal} A")
            await asyncio.sleep(random.uniform(0.0, 0.05))  # any phase of the 1 s cycle
            start = time.perf_counter()
            await push_grid(True)
            if await _until(watched, lambda a: a < normal, REACT_TIMEOUT_S):
                latencies.append((time.perf_counter() - start) * 1000)
            else:
                misses += 1
        await push_grid(False)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        http.close()
        await asyncio.gather(*(p.close() for p in [*points, watched]), return_exceptions=True)
    return {"latencies_ms": latencies, "misses": misses, "normal_a": normal,
            "errors": counts.errors}


def _probe_main(values: list[str]) -> None:
    mode, http_port, ocpp_port, count, samples = values
    raise_nofile_limit(int(count) + 256)
    print(json.dumps(asyncio.run(probe(mode, int(http_port), int(ocpp_port), int(count),
                                       int(samples)))))


# --- the measured App ------------------------------------------------------------------


async def measure(mode: str, count: int, samples: int) -> dict[str, Any]:
    """One App with `count` EVSEs of `mode` and the probe against it: its latencies."""
    from chargebrain.app import App, Config
    from chargebrain.manager.config import DeviceConfig

    raise_nofile_limit(count * 2 + 256)
    with quiet_logs(), tempfile.TemporaryDirectory(prefix="chargebrain-bench-") as tmp:
        app = App(Config(Path(tmp) / "data", HOST, free_port(), 0, ocpp_port=free_port()))
        await app.start()
        fresh: asyncio.Task[None] | None = None
        try:
            mgr = app.manager
            # As in the reaction bench: the peak hold only delays giving room back.
            mgr.decider.hold.hold_s = 0.0
            mgr.settings.set(mgr.site.with_changes(max_total_current=SITE_LIMIT_MA,
                                                   min_pause_time=0))
            mgr.inventory.upsert_device(DeviceConfig("M3", "meter_ajax", name="grid", role=3))
            for i in range(count):
                dev_id = f"E{i + 2}"
                mgr.inventory.upsert_device(
                    DeviceConfig(dev_id, "evse_ocpp", address=f"CP-{i + 2}", id=1,
                                 max_charging_cur=EVSE_MA)
                    if mode == "ocpp" else
                    DeviceConfig(dev_id, "evse_ajax", max_charging_cur=EVSE_MA))
            if mode == "http":
                fresh = asyncio.create_task(keep_idle_fresh(
                    app, [f"E{n}" for n in range(3, count + 2)]))
            reads = CycleReads(app)
            with kept_heap():
                result: dict[str, Any] = await run_child(
                    "bench.ocpp_reaction",
                    ["--probe", mode, str(app.http_bound_port), str(app.ocpp_bound_port),
                     str(count), str(samples)],
                    timeout=120 + samples * (RESTORE_TIMEOUT_S + REACT_TIMEOUT_S))
            result.update(worst_read=reads.worst, evses=reads.evses, cycles=reads.cycles)
        finally:
            if fresh is not None:
                fresh.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fresh
            await app.stop()
    if result["misses"] or result["errors"] or len(result["latencies_ms"]) < samples:
        raise RuntimeError(f"{mode}: {result['misses']} overloads without a reaction, "
                           f"{result['errors']} failed reports")
    return result


def figures(count: int, samples: int, results: dict[str, dict[str, Any]]) -> list[Figure]:
    """p50 and p99 of the OCPP reaction against the HTTP-input EVSEs' in the same run."""
    lat = {m: results[m]["latencies_ms"] for m in MODES}
    out = []
    for name, stat, goal in (("p50", statistics.median, "report"),
                             ("p99", lambda v: percentile(v, 99), "<= 1000 ms")):
        ocpp, http = stat(lat["ocpp"]), stat(lat["http"])
        out.append(Figure(
            name=(f"ocpp: overload pushed over HTTP to lower charging profile at the charge "
                  f"point, {count} connected, {name} of {samples} (baseline: lower current "
                  f"in a push answer, {count} HTTP-input EVSEs)"),
            value=round(ocpp, 1), unit="ms", baseline=round(http, 1),
            ratio=round(ocpp / max(http, 1e-9), 3), goal=goal))
    return out


def read_figures(results: dict[str, dict[str, Any]]) -> list[Figure]:
    """For each side, the EVSEs read within their cycle in its worst cycle."""
    return [Figure(
        name=(f"ocpp: {mode} side, EVSEs read within their cycle, worst of "
              f"{r['cycles']} cycles with {r['evses']} EVSEs (baseline: all)"),
        value=r["worst_read"], unit="EVSEs", baseline=float(r["evses"]),
        ratio=round(r["worst_read"] / max(r["evses"], 1), 3), goal="all")
        for mode, r in results.items()]


def run(count: int, samples: int) -> list[Figure]:
    results = {m: asyncio.run(measure(m, count, samples)) for m in MODES}
    return figures(count, samples, results) + read_figures(results)


if __name__ == "__main__":
    sys.exit(module_main(
        sys.argv[1:], "python -m bench.ocpp_reaction", lambda quick: run(*(
            (50, 10) if quick else (250, 30))),
        child=("--probe", ("MODE", "HTTP_PORT", "OCPP_PORT", "COUNT", "SAMPLES"),
               "run the probe against a running App; print JSON", _probe_main)))
