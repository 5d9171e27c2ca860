"""HTTP API throughput: chargebrain's `/cnf` against a bare aiohttp handler.

The whole App runs in this process on loopback (with its controller and charging-manager
loops). A bare aiohttp application in the same process answers `/cnf` with fixed bytes:
the very body chargebrain gave for the same request. A separate client process (so its
CPU time is not charged to the server) keeps a few keep-alive connections busy, one
request at a time each, against one server and then the other, alternating for several
rounds. Figures: `cmd=modbus&device=meter1&read=all` and `cmd=get_dev_info` with 12
devices, then `cmd=get_dev_info` again once HTTP-input EVSEs and meters bring the site to
200 devices, each against the bare handler; plus the server's CPU time per request.

chargebrain and aiohttp's server are imported inside functions, so that the client
process, which runs this module with `--client`, starts quickly.

Run alone: `python -m bench --only http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import (
    HOST,
    Figure,
    free_port,
    http_answer,
    module_main,
    run_child,
    run_load,
)

if TYPE_CHECKING:
    from aiohttp import web

    from chargebrain.app import App

CONNECTIONS = 4
MAX_REQUESTS = 1_000_000  # per round, all connections together: a hard upper bound
READ_ALL = "/cnf?cmd=modbus&device=meter1&read=all"
DEV_INFO = "/cnf?cmd=get_dev_info"
EXTRA_EVSES = 6  # with the 3 built-in devices and 3 meters: 12 devices
EXTRA_METERS = 3
LARGE_SITE = 200  # devices in all for the second get_dev_info figure
GOAL_RATIO = 0.6


# --- the client ------------------------------------------------------------------------


async def _connection(port: int, path: str, stop_at: float, budget: list[int]
                      ) -> tuple[int, int]:
    """Sequential keep-alive GETs on one connection until `stop_at` or the budget is used."""
    reader, writer = await asyncio.open_connection(HOST, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    done = errors = 0
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            writer.write(request)
            head, body = await http_answer(reader)
            if head.startswith(b"HTTP/1.1 200") and body:
                done += 1
            else:
                errors += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return done, errors


async def load(port: int, path: str, connections: int, seconds: float, max_requests: int,
               warmup: float = 0.2) -> dict[str, float]:
    """Requests per second on `connections` keep-alive connections, after a warm-up."""
    return await run_load(lambda stop_at, budget: _connection(port, path, stop_at, budget),
                          connections, seconds, max_requests, warmup)


# --- the servers -----------------------------------------------------------------------


class Bare:
    """An aiohttp server whose only handler answers `/cnf` with the bytes it is given."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def handle(self, _request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(body=self.body, content_type="application/json")

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/cnf", self.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, HOST, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _add_devices(app: App, evses: int, meters: int) -> None:
    """HTTP-input EVSEs E2.. and meters M3.. (the first of them the grid meter) until
    there are `evses` and `meters` of them."""
    from chargebrain.manager.config import DeviceConfig

    mgr = app.manager
    for i in range(evses):
        if f"E{i + 2}" not in mgr.devices:
            mgr.inventory.upsert_device(DeviceConfig(f"E{i + 2}", "evse_ajax",
                                                     name=f"Sim-{i + 2}"))
    for i in range(meters):
        if f"M{i + 3}" not in mgr.devices:
            mgr.inventory.upsert_device(DeviceConfig(f"M{i + 3}", "meter_ajax",
                                                     name=f"Meter-{i + 3}",
                                                     role=3 if i == 0 else 0))


def _push_all(app: App) -> None:
    from chargebrain.core.model import EvseReading, EvseState, MeterReading
    from chargebrain.core.phases import Phases

    mgr = app.manager
    for dev_id, rt in list(mgr.devices.items()):
        if rt.config.dev_type == "evse_ajax" and dev_id.startswith("E"):
            mgr.pushes.push_evse(dev_id, EvseReading(
                state=EvseState.CHARGING, currents=Phases(6000, 6000, 6000), power_w=4140.0))
        elif rt.config.dev_type == "meter_ajax" and dev_id.startswith("M"):
            mgr.pushes.push_meter(dev_id, MeterReading(
                power_w=2300.0, currents=Phases(3000, 3000, 4000)))


async def _keep_fresh(app: App) -> None:
    while True:
        _push_all(app)
        await asyncio.sleep(5.0)


async def _compare(out: dict[str, list[float]], label: str, path: str, ours_port: int,
                   bare: Bare, rounds: int, seconds: float) -> None:
    """Alternating rounds against chargebrain and the bare handler (given chargebrain's
    answer to `path` at the start)."""
    bare.body = await _fetch(ours_port, path)
    out[f"{label}.bytes"] = [float(len(bare.body))]
    for _ in range(rounds):
        for side, port in (("ours", ours_port), ("bare", bare.port)):
            rate, cpu_us = await server_round(port, path, seconds)
            out.setdefault(f"{label}.{side}.rate", []).append(rate)
            out.setdefault(f"{label}.{side}.cpu_us", []).append(cpu_us)


async def _fetch(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{path}: {head.decode(errors='replace')}")
    return body


async def server_round(port: int, path: str, seconds: float) -> tuple[float, float]:
    """One round of the client process against `port`: requests per second, and this
    process's CPU time per request in µs (the server runs in this process)."""
    cpu = time.process_time()
    result = await run_child(
        "bench.bench_http",
        ["--client", str(port), path, str(CONNECTIONS), str(seconds), str(MAX_REQUESTS)],
        timeout=seconds + 30)
    cpu = time.process_time() - cpu
    if result["errors"]:
        raise RuntimeError(f"{path}: {result['errors']} bad answers")
    return float(result["rate"]), cpu / max(1, int(result["total"])) * 1e6


async def _measure(rounds: int, seconds: float) -> dict[str, list[float]]:
    from chargebrain.app import App, Config

    logging.getLogger("chargebrain").setLevel(logging.ERROR)
    out: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="chargebrain-bench-") as tmp:
        app = App(Config(Path(tmp) / "data", HOST, free_port(), 0))
        bare = Bare()
        await app.start()
        fresh: asyncio.Task[None] | None = None
        try:
            await bare.start()
            _add_devices(app, EXTRA_EVSES, EXTRA_METERS)
            fresh = asyncio.create_task(_keep_fresh(app))
            await app.manager.wait_cycle()
            ours_port = app.http_bound_port
            for label, path in (("read_all", READ_ALL), ("dev_info", DEV_INFO)):
                await _compare(out, label, path, ours_port, bare, rounds, seconds)
            out["dev_info.devices"] = [float(len(app.manager.devices))]
            extra = LARGE_SITE - len(app.manager.devices)
            evses = EXTRA_EVSES + extra // 2
            _add_devices(app, evses, EXTRA_METERS + extra - extra // 2)
            _push_all(app)
            await app.manager.wait_cycle()
            await app.manager.wait_cycle()
            await _compare(out, "dev_info_large", DEV_INFO, ours_port, bare, rounds, seconds)
            out["dev_info_large.devices"] = [float(len(app.manager.devices))]
        finally:
            if fresh is not None:
                fresh.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fresh
            await bare.stop()
            await app.stop()
    return out


def run(quick: bool) -> list[Figure]:
    rounds, seconds = (2, 1.0) if quick else (4, 3.0)
    m = asyncio.run(_measure(rounds, seconds))

    def med(key: str) -> float:
        return statistics.median(m[key])

    devices = int(m["dev_info.devices"][0])
    large = int(m["dev_info_large.devices"][0])
    kb = med("dev_info_large.bytes") / 1000
    figures = []
    for label, what, goal in (
        ("read_all", "cmd=modbus&device=meter1&read=all", f"ratio >= {GOAL_RATIO}"),
        ("dev_info", f"cmd=get_dev_info, {devices} devices", "report"),
        ("dev_info_large", f"cmd=get_dev_info, {large} devices ({kb:.0f} kB)", "report"),
    ):
        ours, bare = med(f"{label}.ours.rate"), med(f"{label}.bare.rate")
        figures.append(Figure(
            name=f"http: {what} requests/s, {CONNECTIONS} connections "
                 "(baseline: bare aiohttp handler, same bytes)",
            value=round(ours), unit="req/s", baseline=round(bare),
            ratio=round(ours / bare, 3), goal=goal))
        ours_cpu, bare_cpu = med(f"{label}.ours.cpu_us"), med(f"{label}.bare.cpu_us")
        figures.append(Figure(
            name=f"http: server CPU per {what} request (baseline: bare aiohttp handler)",
            value=round(ours_cpu, 1), unit="us", baseline=round(bare_cpu, 1),
            ratio=round(ours_cpu / bare_cpu, 3), goal="report"))
    return figures


def _client(values: list[str]) -> None:
    port, path, conns, seconds, max_requests = values
    result = asyncio.run(load(int(port), path, int(conns), float(seconds), int(max_requests)))
    print(json.dumps(result))


def _main(argv: list[str]) -> int:
    return module_main(argv, "python -m bench.bench_http", run, (
        "--client", ("PORT", "PATH", "CONNS", "SECONDS", "MAX"),
        "only run the client against PORT and print its JSON result", _client))

if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
