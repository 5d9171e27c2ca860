"""How many OCPP charge points one process serves, against HTTP-input EVSEs.

The whole App runs in this process on loopback: its OCPP 1.6J central system, its control
cycle every second, its HTTP API. A separate client process (its CPU time is not the
server's) connects N charge points, each on its own WebSocket through the project's OCPP
adapter (every message checked against the OCPP schemas, as a wallbox's OCPP library
does): BootNotification, StatusNotification, StartTransaction, then MeterValues (three
currents, power, energy register) every `period` seconds, staggered over the period; it
answers what the central system asks (ChangeConfiguration, SetChargingProfile,
TriggerMessage, whose message it then sends). Its car draws what the last charging
profile allows. The baseline, in the same run, is the same site with N HTTP-input EVSEs
instead: each pushes set_ajax_evse (the same figures) as often, on a keep-alive
connection of its own, and its car draws the current the answer gives. Every 5 s the
site limit moves between N × 8 A and N × 10 A, so that every EVSE's current changes: an
OCPP charge point then gets a charging profile (and is asked for fresh meter values 5 s
later), an HTTP-input EVSE reads its new current in the answer to its next push.

Measured: this process's CPU time (all its threads: the `ocpp` library validates in
worker threads) per wall-clock second while the client reports, after a warm-up; OCPP
and HTTP rounds alternate, a fresh App each round; the median per side. Figures per
reporting period (10 s: the interval the central system asks of an OCPP wallbox; 1 s:
every reading as fresh as the control cycle):

- charge points one core serves: N × wall / CPU (linear from N; the ratio against the
  HTTP-input EVSEs is what OCPP costs more);
- the server's CPU per 1 s cycle period with N charge points, in ms.

Then, with 250 charge points connected at once (50 in quick mode), against as many
HTTP-input EVSEs:

- the server's RSS growth per connected charge point: one round per side in a fresh
  process of its own (`--round`), VmRSS after the App started against VmRSS at the end
  of the measured window, divided by N;
- one control cycle, median and p95 of every cycle in that round's measured window
  (goal: 1 s);
- the reaction to an overload pushed over HTTP, until the lower charging profile
  reaches the charge point, p50 and p99 (goal: 1 s): see `bench.ocpp_reaction`.

A round fails (and with it the module) unless every charge point is connected, seen with
its car and without communication error at its end, no report failed, and every OCPP
charge point accepted charging profiles.

The charge points the client plays are in `bench.ocpp_points`. chargebrain is imported
inside functions, so that the client process starts quickly.

Run alone: `python -m bench --only ocpp`.
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
from typing import TYPE_CHECKING, Any

from bench.common import (
    HOST,
    ROOT,
    Figure,
    child_env,
    free_port,
    module_main,
    percentile,
    raise_nofile_limit,
    rss_kib,
    run_child,
)
from bench.ocpp_points import Box, Counts, Pusher

if TYPE_CHECKING:
    from chargebrain.app import App

STEP_MA = (8000, 10_000)  # per EVSE: the site limit moves between N × these
MOVE_S = 5.0  # the site limit moves this often
WARMUP_S = 4.0  # after every charge point is set up, before the measured window
MODES = ("ocpp", "http")


# --- the client (runs in its own process) ------------------------------------------------


async def _reporting(point: Box | Pusher, period: float, offset: float) -> None:
    start = time.monotonic() + offset
    k = 0
    while True:
        await asyncio.sleep(max(0.0, start + k * period - time.monotonic()))
        await point.report(period)
        k += 1


async def client(mode: str, port: int, count: int, seconds: float, period: float,
                 warmup: float) -> None:
    """Set up `count` charge points, report for `warmup` seconds, print "ready", report
    for `seconds`, print the counts of that window as JSON."""
    raise_nofile_limit(count + 256)
    counts = Counts()
    points: list[Box | Pusher] = [
        Box(f"ws://{HOST}:{port}", f"CP-{i + 2}", counts) if mode == "ocpp"
        else Pusher(port, f"E{i + 2}", counts) for i in range(count)]
    for group in range(0, count, 50):  # (not all handshakes at once)
        await asyncio.gather(*(p.open() for p in points[group:group + 50]))
    loops = [asyncio.create_task(_reporting(p, period, period * i / count))
             for i, p in enumerate(points)]
    await asyncio.sleep(warmup)
    before = Counts(counts.sent, counts.errors, counts.profiles)
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    print(json.dumps({"sent": counts.sent - before.sent, "errors": counts.errors,
                      "profiles": counts.profiles}), flush=True)
    await asyncio.gather(*(p.close() for p in points), return_exceptions=True)


def _client_main(args: list[str]) -> None:
    mode, port, count, seconds, period, warmup = args
    asyncio.run(client(mode, int(port), int(count), float(seconds), float(period),
                       float(warmup)))


# --- the server --------------------------------------------------------------------------


async def _moving_limit(app: App, count: int) -> None:
    mgr = app.manager
    while True:
        for per_evse in STEP_MA:
            limit = min(2_000_000, count * per_evse)
            mgr.settings.set(mgr.site.with_changes(max_total_current=limit))
            await asyncio.sleep(MOVE_S)


async def one_round(mode: str, count: int, seconds: float, period: float,
                    warmup: float = WARMUP_S) -> dict[str, float]:
    """A fresh App with `count` EVSEs of `mode`, the client against it: this process's
    CPU seconds per wall second in the measured window, and the client's counts."""
    from chargebrain.app import App, Config
    from chargebrain.manager.config import DeviceConfig

    with tempfile.TemporaryDirectory(prefix="chargebrain-bench-") as tmp:
        app = App(Config(Path(tmp) / "data", HOST, free_port(), 0, ocpp_port=free_port()))
        await app.start()
        rss_before = rss_kib()
        cycles = CycleTimes(app)
        mover: asyncio.Task[None] | None = None
        proc: asyncio.subprocess.Process | None = None
        try:
            for i in range(count):
                dev_id = f"E{i + 2}"
                app.manager.inventory.upsert_device(
                    DeviceConfig(dev_id, "evse_ocpp", address=f"CP-{i + 2}", id=1)
                    if mode == "ocpp" else DeviceConfig(dev_id, "evse_ajax"))
            mover = asyncio.create_task(_moving_limit(app, count))
            port = app.ocpp_bound_port if mode == "ocpp" else app.http_bound_port
            errors = Path(tmp) / "client.err"  # (a pipe nobody reads could fill up)
            with errors.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.bench_ocpp", "--client", mode, str(port),
                    str(count), str(seconds), str(period), str(warmup), cwd=ROOT,
                    env=child_env(),
                    stdout=asyncio.subprocess.PIPE, stderr=err)
            assert proc.stdout is not None
            try:
                ready = await asyncio.wait_for(proc.stdout.readline(), 120)
                if ready.strip() != b"ready":
                    raise RuntimeError(f"client: {ready!r}")
                cpu, wall = time.process_time(), time.perf_counter()
                cycles.times_ms.clear()
                line = await asyncio.wait_for(proc.stdout.readline(), seconds + 60)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                cycles_ms = list(cycles.times_ms)
                rss_after = rss_kib()
                result = json.loads(line)
            except (TimeoutError, ValueError, RuntimeError) as exc:
                tail = errors.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{mode} client failed ({exc!r}): {tail}") from None
            _check(app, mode, count, result)
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if mover is not None:
                mover.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await mover
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
            await app.stop()
    return {"load": cpu / wall, "sent": result["sent"], "profiles": result["profiles"],
            "rss_before_kib": rss_before, "rss_after_kib": rss_after, "cycles_ms": cycles_ms}


class CycleTimes:
    """Listens to the manager: the duration of every control cycle that ends (periodic
    ones and those a relevant push woke), in ms."""

    def __init__(self, app: App) -> None:
        self.manager = app.manager
        self.times_ms: list[float] = []
        app.manager.listeners.append(self)

    def on_cycle(self, now: float) -> None:
        self.times_ms.append(self.manager.cycle_duration_s * 1000)

    def on_plug(self, rt: object, now: float) -> None:
        pass

    def on_unplug(self, rt: object, now: float) -> None:
        pass

    def on_rfid(self, rt: object, rfid: str, now: float) -> None:
        pass


def _check(app: App, mode: str, count: int, result: dict[str, Any]) -> None:
    """Every charge point served to the end (connected, its car seen charging); OCPP
    ones accepted charging profiles."""
    served = [rt for dev_id, rt in app.manager.devices.items()
              if dev_id != "E1" and rt.evse is not None and not rt.status.com_err
              and rt.evse.reading is not None and rt.evse.reading.state.plugged]
    if len(served) < count or result["errors"]:
        raise RuntimeError(f"{mode}: {len(served)} of {count} charge points served, "
                           f"{result['errors']} failed reports")
    if mode == "ocpp" and result["profiles"] < count:
        raise RuntimeError(f"ocpp: only {result['profiles']} charging profiles for "
                           f"{count} charge points")


def _round_main(values: list[str]) -> None:
    """One round in this (fresh) process, its result as JSON: what the process holds
    before and after the charge points are not shared with any earlier round."""
    mode, count, seconds, period = values
    logging.getLogger("chargebrain").setLevel(logging.ERROR)
    raise_nofile_limit(int(count) * 2 + 256)
    print(json.dumps(asyncio.run(one_round(mode, int(count), float(seconds),
                                           float(period)))))


async def _measure(count: int, seconds: float, rounds: int, period: float
                   ) -> dict[str, float]:
    logging.getLogger("chargebrain").setLevel(logging.ERROR)
    raise_nofile_limit(count * 2 + 256)
    loads: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            loads[mode].append((await one_round(mode, count, seconds, period))["load"])
    return {m: statistics.median(v) for m, v in loads.items()}


SITE = 250  # charge points connected at once for memory, cycle and reaction
SITE_QUICK = 50


async def _fresh_round(mode: str, count: int, seconds: float) -> dict[str, Any]:
    """`one_round` in a fresh process of its own (reports every 10 s)."""
    result: dict[str, Any] = await run_child(
        "bench.bench_ocpp", ["--round", mode, str(count), str(seconds), "10"],
        timeout=300 + seconds)
    return result


def site_figures(count: int, sides: dict[str, dict[str, Any]]) -> list[Figure]:
    """Memory per connection and cycle times from one fresh-process round per side."""
    growth = {m: (s["rss_after_kib"] - s["rss_before_kib"]) / count for m, s in sides.items()}
    figures = [Figure(
        name=(f"ocpp: server RSS growth per connected charge point, {count} connected "
              "(baseline: per HTTP-input EVSE pushing)"),
        value=round(growth["ocpp"], 1), unit="KiB", baseline=round(growth["http"], 1),
        ratio=round(growth["ocpp"] / max(growth["http"], 1e-9), 3), goal="report")]
    for name, stat in (("median", statistics.median),
                       ("p95", lambda v: percentile(v, 95))):
        ocpp, http = (stat(sides[m]["cycles_ms"]) for m in MODES)
        figures.append(Figure(
            name=(f"ocpp: one control cycle with {count} charge points reporting every "
                  f"10 s, {name} of {len(sides['ocpp']['cycles_ms'])} (baseline: {count} "
                  "HTTP-input EVSEs)"),
            value=round(ocpp, 2), unit="ms", baseline=round(http, 2),
            ratio=round(ocpp / max(http, 1e-9), 3), goal="<= 1000 ms"))
    return figures


def run(quick: bool) -> list[Figure]:
    from bench import ocpp_reaction

    count, seconds, rounds = (40, 6.0, 1) if quick else (200, 15.0, 2)
    site, samples = (SITE_QUICK, 10) if quick else (SITE, 30)
    figures = []
    for period in (10.0, 1.0):
        load = asyncio.run(_measure(count, seconds, rounds, period))
        served = {m: count / max(load[m], 1e-9) for m in MODES}
        figures.append(Figure(
            name=(f"ocpp: charge points one core serves, each reporting every {period:g} s "
                  "(baseline: HTTP-input EVSEs pushing as often)"),
            value=round(served["ocpp"]), unit="charge points",
            baseline=round(served["http"]), ratio=round(served["ocpp"] / served["http"], 3),
            goal="report"))
        figures.append(Figure(
            name=(f"ocpp: server CPU per 1 s cycle period, {count} charge points reporting "
                  f"every {period:g} s (baseline: {count} HTTP-input EVSEs)"),
            value=round(load["ocpp"] * 1000, 1), unit="ms",
            baseline=round(load["http"] * 1000, 1),
            ratio=round(load["ocpp"] / load["http"], 3), goal="report"))
    sides = {m: asyncio.run(_fresh_round(m, site, 2 * seconds)) for m in MODES}
    figures += site_figures(site, sides)
    figures += ocpp_reaction.run(site, samples)
    return figures


if __name__ == "__main__":
    sys.exit(module_main(sys.argv[1:], "python -m bench.bench_ocpp", run,
                         child=("--client", ("MODE", "PORT", "COUNT", "SECONDS", "PERIOD",
                                             "WARMUP"),
                                "run the client side (in its own process)", _client_main),
                         more_children=[("--round", ("MODE", "COUNT", "SECONDS", "PERIOD"),
                                         "run one round in this process; print JSON",
                                         _round_main)]))
