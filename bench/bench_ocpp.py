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

A round fails (and with it the module) unless every charge point is connected, seen with
its car and without communication error at its end, no report failed, and every OCPP
charge point accepted charging profiles.

chargebrain is imported inside functions, so that the client process starts quickly.

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    HOST,
    ROOT,
    Figure,
    child_env,
    free_port,
    http_answer,
    module_main,
    raise_nofile_limit,
)

if TYPE_CHECKING:
    from chargebrain.app import App
    from chargebrain.servers.ocpp.adapter import Payload, Peer

MAX_A = 16.0  # what a car draws at most on each phase (and the EVSEs' maximum)
MIN_A = 6.0
VOLTAGE = 230.0
STEP_MA = (8000, 10_000)  # per EVSE: the site limit moves between N × these
MOVE_S = 5.0  # the site limit moves this often
WARMUP_S = 4.0  # after every charge point is set up, before the measured window
MODES = ("ocpp", "http")


# --- the client (runs in its own process) ------------------------------------------------


def draw_a(given_a: float) -> float:
    """What a car draws on each phase when given `given_a` (before any: its minimum)."""
    return min(given_a, MAX_A) if given_a >= MIN_A else 0.0


@dataclass
class Counts:
    sent: int = 0  # reports (MeterValues, set_ajax_evse) answered
    errors: int = 0
    profiles: int = 0  # SetChargingProfile accepted


class Box:
    """One OCPP charge point with connector 1, charging."""

    def __init__(self, url: str, cp_id: str, counts: Counts) -> None:
        self.url = f"{url}/{cp_id}"
        self.cp_id = cp_id
        self.counts = counts
        self.peer: Peer | None = None
        self.tx: int | None = None
        self.energy_wh = 0.0
        self.given_a = MIN_A  # the limit of the last charging profile
        self.tasks: set[asyncio.Task[Any]] = set()
        self._triggered: list[str] = []

    async def open(self) -> None:
        from chargebrain.servers.ocpp import cp_messages as CP
        from chargebrain.servers.ocpp.adapter import Peer, connect

        self.peer = Peer(await connect(self.url), self._on_call, name=self.cp_id,
                         answered=self._answered)
        self._spawn(self.peer.run())
        await self.peer.call("BootNotification", CP.boot("bench", "Box", self.cp_id, "1"))
        await self._status("Preparing")
        started = await self.peer.call("StartTransaction", CP.start_transaction(
            1, "BENCH", self.energy_wh, time.time()))
        self.tx = CP.integer(started, "transactionId")
        await self._status("Charging")

    async def _status(self, status: str) -> None:
        from chargebrain.servers.ocpp import cp_messages as CP

        assert self.peer is not None
        await self.peer.call("StatusNotification", CP.status(1, status, time.time()))

    async def report(self, period: float) -> None:
        from chargebrain.servers.ocpp import cp_messages as CP

        assert self.peer is not None
        amps = draw_a(self.given_a)
        self.energy_wh += 3 * amps * VOLTAGE * period / 3600
        try:
            await self.peer.call("MeterValues", CP.meter_values(
                1, time.time(), CP.sampled([amps] * 3, 3 * amps * VOLTAGE, self.energy_wh),
                self.tx))
            self.counts.sent += 1
        except Exception:  # counted; the round fails on errors
            self.counts.errors += 1

    async def _on_call(self, action: str, payload: Payload) -> Payload:
        from chargebrain.servers.ocpp.adapter import NOT_SUPPORTED, OcppFault

        if action == "SetChargingProfile":
            self.counts.profiles += 1
            with contextlib.suppress(LookupError, TypeError, ValueError):
                schedule = payload["csChargingProfiles"]["chargingSchedule"]
                self.given_a = float(schedule["chargingSchedulePeriod"][0]["limit"])
            return {"status": "Accepted"}
        if action in ("ChangeConfiguration", "ClearChargingProfile"):
            return {"status": "Accepted"}
        if action == "TriggerMessage":
            self._triggered.append(str(payload.get("requestedMessage")))
            return {"status": "Accepted"}
        raise OcppFault(NOT_SUPPORTED, action)

    def _answered(self, action: str) -> None:
        for what in self._triggered:
            if what == "StatusNotification":
                self._spawn(self._status("Charging"))
            elif what == "MeterValues":
                self._spawn(self.report(0.0))
        self._triggered.clear()

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close("done")
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class Pusher:
    """One HTTP-input EVSE pushing set_ajax_evse on a keep-alive connection."""

    def __init__(self, port: int, dev_id: str, counts: Counts) -> None:
        self.port = port
        self.dev_id = dev_id
        self.counts = counts
        self.energy_wh = 0.0
        self.given_a = MIN_A  # the charging current of the last answer
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        await self.report(0.0)

    async def report(self, period: float) -> None:
        assert self.reader is not None and self.writer is not None
        amps = draw_a(self.given_a)
        self.energy_wh += 3 * amps * VOLTAGE * period / 3600
        ma = round(amps * 1000)
        path = (f"/cnf?cmd=set_ajax_evse&dev_id={self.dev_id}&state=3"
                f"&current={ma},{ma},{ma}&power_w={3 * amps * VOLTAGE:.0f}"
                f"&total_energy={self.energy_wh:.0f}")
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head, body = await http_answer(self.reader)
        if head.startswith(b"HTTP/1.1 200"):
            self.counts.sent += 1
            self.given_a = int(json.loads(body).get("charging_current", 0)) / 1000
        else:
            self.counts.errors += 1

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


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
                line = await asyncio.wait_for(proc.stdout.readline(), seconds + 60)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
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
    return {"load": cpu / wall, "sent": result["sent"], "profiles": result["profiles"]}


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


async def _measure(count: int, seconds: float, rounds: int, period: float
                   ) -> dict[str, float]:
    logging.getLogger("chargebrain").setLevel(logging.ERROR)
    raise_nofile_limit(count * 2 + 256)
    loads: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            loads[mode].append((await one_round(mode, count, seconds, period))["load"])
    return {m: statistics.median(v) for m, v in loads.items()}


def run(quick: bool) -> list[Figure]:
    count, seconds, rounds = (40, 6.0, 1) if quick else (200, 15.0, 2)
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
    return figures


if __name__ == "__main__":
    sys.exit(module_main(sys.argv[1:], "python -m bench.bench_ocpp", run,
                         child=("--client", ("MODE", "PORT", "COUNT", "SECONDS", "PERIOD",
                                             "WARMUP"),
                                "run the client side (in its own process)", _client_main)))
