"""One full control cycle with 250 EVSEs reached over Modbus TCP on loopback.

A separate process simulates 250 Power Brain controllers: each a `PowerBrain` with its own
`ModbusTcpServers` serving only its EVSE bank on its own port, half of them with a car
plugged in, all ticked twice a second. This process holds an App (temporary data dir)
with those 250 controllers configured as `evse_powerbrain` devices at `127.0.0.1:port`
and times `await app.manager.cycle()`: read every EVSE (two FC3 reads each: the gap
8072-8079 between the two blocks answers exception 02, so one read cannot span them),
decide, write what changed. The App's own loops are not started, so each timed cycle is
exactly one `cycle()` call and nothing else runs in this process meanwhile.

Figures: median and p95 of the cycle time (the first cycle, which opens the 250
connections and reads each controller's identity, is reported on its own), against the
vendor's 3 s cycle; the CPU time each process spends during a cycle, this one (the
manager) and the simulated controllers', against the cycle's time (on a machine with
fewer cores than busy processes, the rest is waiting for a core); and the share of EVSEs
whose reading was refreshed within the cycle (reads slower than the cycle's read budget
carry over to the next cycle, which would otherwise hide a slow cycle behind a
fast-looking number).

Run alone: `python -m bench --only cycle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    HOST,
    Figure,
    child_env,
    free_port,
    module_main,
    percentile,
    raise_nofile_limit,
)

if TYPE_CHECKING:
    from chargebrain.app import App

EVSES = 250
VENDOR_CYCLE_MS = 3000.0
GOAL_MS = 1000.0
TICK_S = 0.5
SITE_MAX_MA = 300_000  # a site that can feed about fifty cars at 6 A
ROOT = Path(__file__).resolve().parent.parent


# --- the simulated controllers (run in their own process) ------------------------------


async def serve(count: int, lifetime: float, car_every: int = 2) -> None:
    """Serve `count` simulated controllers, a car plugged in at every `car_every`th from
    the first (none if `car_every` is 0); print their ports; stop at stdin EOF."""
    from chargebrain.powerbrain.controller import PowerBrain
    from chargebrain.powerbrain.hardware import SimCar, SimEvseHardware
    from chargebrain.servers.modbus_tcp import ModbusTcpServers

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("chargebrain").setLevel(logging.ERROR)
    raise_nofile_limit(4 * count + 256)
    brains: list[PowerBrain] = []
    servers: list[ModbusTcpServers] = []
    ports: list[int] = []
    try:
        for i in range(count):
            car = SimCar(max_ma=16_000, phases=3) if car_every and i % car_every == 0 else None
            brain = PowerBrain(store=None, hardware=SimEvseHardware(car=car))
            brain.start()
            for _ in range(5):
                port = free_port()
                server = ModbusTcpServers([brain.banks["evse"]], HOST, port)
                try:
                    await server.start()
                except Exception:  # the port was taken meanwhile: try another
                    continue
                break
            else:
                raise RuntimeError("no free port for a simulated controller")
            brains.append(brain)
            servers.append(server)
            ports.append(port)
        print(json.dumps({"ports": ports}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        eof = asyncio.ensure_future(reader.read())
        deadline = time.monotonic() + lifetime
        last = time.monotonic()
        while not eof.done() and time.monotonic() < deadline:
            await asyncio.wait({eof}, timeout=TICK_S)
            now = time.monotonic()
            for brain in brains:
                brain.tick(now - last, now)
            last = now
        eof.cancel()
    finally:
        for server in servers:
            await server.stop()


class Controllers:
    """The simulated-controller process, seen from the measuring side."""

    def __init__(self, count: int, lifetime: float, car_every: int = 2) -> None:
        self.count = count
        self.lifetime = lifetime
        self.car_every = car_every
        self.ports: list[int] = []
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bench_cycle", "--serve", str(self.count),
            str(self.lifetime), str(self.car_every), cwd=ROOT, env=child_env(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), timeout=120)
            if not line:
                raise RuntimeError("the simulated controllers did not start")
            self.ports = [int(p) for p in json.loads(line)["ports"]]
        except BaseException:
            await self.stop()
            raise

    def cpu_s(self) -> float:
        """CPU seconds the controllers' process has used so far (Linux, 10 ms ticks)."""
        assert self._proc is not None
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --- the measuring side ----------------------------------------------------------------


def _configure(app: App, ports: list[int]) -> None:
    from chargebrain.manager.config import DeviceConfig

    mgr = app.manager
    app.powerbrain.start()
    mgr.inventory.load_devices(app.manager_store.load_devices())
    mgr.inventory.ensure_internal_devices(app.manager_store.stored_ids())
    mgr.settings.set(mgr.site.with_changes(max_total_current=SITE_MAX_MA))
    for i, port in enumerate(ports):
        mgr.inventory.upsert_device(DeviceConfig(
            f"E{i + 2}", "evse_powerbrain", name=f"Box {i + 2}", address=f"{HOST}:{port}",
            id=1, max_charging_cur=16_000))


def _fresh(app: App, since: float) -> int:
    """EVSEs over Modbus TCP whose reading was refreshed after `since` (monotonic)."""
    return sum(
        1 for rt in app.manager.devices.values()
        if rt.config.dev_type == "evse_powerbrain" and rt.config.address.startswith(HOST)
        and rt.evse is not None and rt.evse.last_read is not None
        and rt.evse.last_read >= since
    )


async def _timed_cycle(app: App) -> tuple[float, int]:
    since = app.clock.monotonic()
    start = time.perf_counter()
    await app.manager.cycle()
    elapsed_ms = (time.perf_counter() - start) * 1000
    return elapsed_ms, _fresh(app, since)


async def measure(evses: int, cycles: int, pause: float) -> dict[str, Any]:
    from chargebrain.app import App, Config

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("chargebrain").setLevel(logging.ERROR)
    raise_nofile_limit(4 * evses + 256)
    lifetime = 60.0 + cycles * (pause + 5.0)
    sims = Controllers(evses, lifetime)
    await sims.start()
    try:
        with tempfile.TemporaryDirectory(prefix="chargebrain-bench-") as tmp:
            app = App(Config(Path(tmp) / "data", HOST, free_port(), 0))
            try:
                _configure(app, sims.ports)
                first_ms, first_fresh = await _timed_cycle(app)
                times: list[float] = []
                fresh: list[int] = []
                own_cpu = sims_cpu = 0.0
                for _ in range(cycles):
                    await asyncio.sleep(pause)
                    own, theirs = time.process_time(), sims.cpu_s()
                    ms, n = await _timed_cycle(app)
                    own_cpu += time.process_time() - own
                    sims_cpu += sims.cpu_s() - theirs
                    times.append(ms)
                    fresh.append(n)
                errors = sum(1 for rt in app.manager.devices.values() if rt.status.com_err
                             and rt.config.address.startswith(HOST))
            finally:
                await app.stop()
    finally:
        await sims.stop()
    return {"first_ms": first_ms, "first_fresh": first_fresh, "times": times,
            "fresh": fresh, "com_errors": errors, "own_cpu_ms": own_cpu * 1000 / cycles,
            "sims_cpu_ms": sims_cpu * 1000 / cycles}


def run(quick: bool) -> list[Figure]:
    cycles, pause = (6, 0.3) if quick else (30, 0.5)
    m = asyncio.run(measure(EVSES, cycles, pause))
    times: list[float] = m["times"]
    median = statistics.median(times)
    p95 = percentile(times, 95)
    fresh = min(m["fresh"]) / EVSES
    if m["com_errors"]:
        raise RuntimeError(f"{m['com_errors']} simulated controllers had communication errors")
    return [
        Figure(
            name=f"cycle: {EVSES} EVSEs over Modbus TCP, median of {len(times)} "
                 "(baseline: vendor 3 s cycle)",
            value=round(median, 1), unit="ms", baseline=VENDOR_CYCLE_MS,
            ratio=round(median / VENDOR_CYCLE_MS, 3), goal="<= 1000 ms"),
        Figure(
            name=f"cycle: {EVSES} EVSEs over Modbus TCP, p95 (baseline: vendor 3 s cycle)",
            value=round(p95, 1), unit="ms", baseline=VENDOR_CYCLE_MS,
            ratio=round(p95 / VENDOR_CYCLE_MS, 3), goal="<= 1000 ms"),
        Figure(
            name=f"cycle: first cycle, {EVSES} connections opened and identities read "
                 "(baseline: vendor 3 s cycle)",
            value=round(m["first_ms"], 1), unit="ms", baseline=VENDOR_CYCLE_MS,
            ratio=round(m["first_ms"] / VENDOR_CYCLE_MS, 3), goal="report"),
        Figure(
            name=f"cycle: CPU of the measured process per cycle, mean of {len(times)} "
                 "(baseline: the median cycle)",
            value=round(m["own_cpu_ms"], 1), unit="ms", baseline=round(median, 1),
            ratio=round(m["own_cpu_ms"] / median, 3), goal="report"),
        Figure(
            name=f"cycle: CPU of the simulated controllers' process per cycle, mean of "
                 f"{len(times)} (baseline: the median cycle)",
            value=round(m["sims_cpu_ms"], 1), unit="ms", baseline=round(median, 1),
            ratio=round(m["sims_cpu_ms"] / median, 3), goal="report"),
        Figure(
            name="cycle: EVSEs read within their cycle, worst cycle (baseline: all)",
            value=round(fresh * EVSES), unit="EVSEs", baseline=float(EVSES),
            ratio=round(fresh, 3), goal="all"),
    ]


def _serve(values: list[str]) -> None:
    count, lifetime, car_every = values
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(count), float(lifetime), int(car_every)))


def _main(argv: list[str]) -> int:
    return module_main(argv, "python -m bench.bench_cycle", run, (
        "--serve", ("COUNT", "LIFETIME", "CAR_EVERY"),
        "only serve COUNT simulated controllers, a car at every CAR_EVERYth (until stdin "
        "closes)", _serve))

if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
