"""The longest event-loop stall one hostile request causes in a running server.

A child process (`python -m bench.bench_stall --serve DATA PORT`) runs chargebrain (HTTP
on a free loopback port, Modbus TCP off, no admin password: every client is admin) and a
lag probe on its event loop: a task that sleeps 1 ms again and again and notes every
wake-up that comes more than 2 ms late, with the time it was due (CLOCK_MONOTONIC, which
both processes share). The parent sends the largest requests the API takes, one after
the other with idle time in between:

- set_cm_vars with 256 variables of 4 KiB formulas, and the most formula text one request
  may carry;
- set_meter_def with a 256 KiB definition, the largest upload;
- set_device with the largest classic rules and rule set, set_user with the largest
  user rules (the next control cycle compiles rules, so its window includes two cycles);
- a 2 MiB JSON body and a 2 MiB form body;

and an idle window of the same length as the baseline. A request's figure is the longest
stall the probe saw from its start until 2.5 s after its answer (with the longest garbage
collection in that window and the time it took to answer), the median of three rounds,
each with a fresh server (one with --quick). The child's resident memory is read before
and after the requests.

Run alone: `python -m bench --only stall`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import HOST, ROOT, Figure, child_env, free_port, module_main, rss_kib

PROBE_SLEEP_S = 0.001
PROBE_REPORT_S = 0.002  # a wake-up later than this is noted
AFTER_S = 2.5  # the window after an answer: the next control cycles
GOAL_MS = 50.0
ROUNDS = 3

# --- the server side ------------------------------------------------------------------


async def _probe(stalls: list[tuple[float, float]]) -> None:
    while True:
        due = time.monotonic() + PROBE_SLEEP_S
        await asyncio.sleep(PROBE_SLEEP_S)
        late = time.monotonic() - due
        if late > PROBE_REPORT_S:
            stalls.append((due, late))


def _watch_gc(pauses: list[tuple[float, float]]) -> None:
    """Note every garbage collection longer than PROBE_REPORT_S (start, seconds)."""
    started = [0.0]

    def callback(phase: str, _info: dict[str, int]) -> None:
        now = time.monotonic()
        if phase == "start":
            started[0] = now
        elif now - started[0] > PROBE_REPORT_S:
            pauses.append((started[0], now - started[0]))

    gc.callbacks.append(callback)


async def _serve(data: Path, port: int) -> tuple[list[tuple[float, float]],
                                                 list[tuple[float, float]]]:
    from chargebrain.app import App, Config

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    app = App(Config(data, HOST, port, 0))
    await app.start()
    gc.freeze()  # as `chargebrain run` does
    stalls: list[tuple[float, float]] = []
    pauses: list[tuple[float, float]] = []
    _watch_gc(pauses)
    probe = asyncio.create_task(_probe(stalls))
    print(json.dumps({"ready": True}), flush=True)
    await stop.wait()
    probe.cancel()
    await app.stop()
    return stalls, pauses


def serve(values: list[str]) -> None:
    """Child mode: run the server with the probe until SIGTERM, then print the stalls."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    stalls, pauses = asyncio.run(_serve(Path(values[0]), int(values[1])))
    print(json.dumps({"stalls": stalls, "gc": pauses}), flush=True)


# --- hostile requests -----------------------------------------------------------------

_TERMS = ("M1.current", "E1.power_w * 2", "CM.a1 - 3", "min(1, date.hour)", "(4 + M2.power_w)",
          "max(E1.current, 16000)", "12.5")


def formula(length: int, seed: int = 0) -> str:
    """A valid formula of about `length` characters (never more), one per seed."""
    parts = [str(seed)]
    size = len(parts[0])
    i = seed
    while True:
        term = _TERMS[i % len(_TERMS)]
        if size + len(term) + 3 > length:
            break
        parts.append(term)
        size += len(term) + 3
        i += 1
    return " + ".join(parts)


def meter_definition(size: int) -> bytes:
    """The bundled SDM630 definition with an array that brings it to `size` bytes."""
    base = (ROOT / "src/chargebrain/meterdefs/sdm630.json").read_text().rstrip()
    base = base.replace('"dev_type": "sdm630"', '"dev_type": "bench_stall"')
    head = base[:-1].rstrip() + '\n  "padding": ['
    count = (size - len(head) - 4) // 2
    return (head + ",".join(["1"] * count) + "]\n}").encode()


def _rules(key: str, total: int, seed: int = 0) -> list[dict[str, Any]]:
    out = []
    per = 4000
    for i in range(seed, seed + total // per):
        rule: dict[str, Any] = {"enabled": True, "mode": 0, "current": 6000} if key == "expr" \
            else {"id": i + 1, "ena": True, "ctype": 0, "atype": 0}
        rule[key] = formula(per, i) + " > 0"
        out.append(rule)
    return out


def rules_device(total: int) -> dict[str, Any]:
    half = total // 2
    return {"devices": [{"dev_id": "E1", "charging_rules": _rules("expr", half),
                         "crule_set": {"selected_id": "a",
                                       "rule_set": {"a": _rules("cexpr", half, 100)}}}]}


@dataclass
class Hostile:
    name: str
    method: str
    query: str
    body: bytes
    content_type: str


def hostile_requests(quick: bool) -> list[Hostile]:
    def js(obj: object) -> bytes:
        return json.dumps(obj).encode()

    big_vars = {"vars": [{"name": f"v{i}", "expr": formula(4096, i)} for i in range(256)]}
    limit_vars = {"vars": [{"name": f"w{i}", "expr": formula(4096, i)} for i in range(16)]}
    user = {"id": "bench1", "name": "bench", "charging_rules": _rules("expr", 32 * 1024, 200)}
    two_mib = 2 * 1024 * 1024 - 64
    json_body = b"[" + b",".join([b"{}"] * ((two_mib - 2) // 3)) + b"]"
    # aiohttp takes at most 1000 fields; percent-escapes are the costly part.
    field = two_mib // 1000 // 3 - 4
    form_body = b"&".join(b"a%d=" % i + b"%41" * field for i in range(1000))
    return [
        Hostile("set_cm_vars: 256 variables of 4 KiB formulas", "POST", "cmd=set_cm_vars",
                js(big_vars), "application/json"),
        Hostile("set_cm_vars: 16 variables of 4 KiB formulas (64 KiB)", "POST",
                "cmd=set_cm_vars&clear=1", js(limit_vars), "application/json"),
        Hostile("set_meter_def: 256 KiB definition", "POST", "cmd=set_meter_def",
                meter_definition(256 * 1024 - 16), "application/json"),
        Hostile("set_params: 64 KiB of rule formulas on E1", "POST", "cmd=set_params",
                js(rules_device(64 * 1024)), "application/json"),
        Hostile("set_user: 32 KiB of user rule formulas", "POST", "cmd=set_user",
                js(user), "application/json"),
        Hostile("2 MiB JSON body (set_params)", "POST", "cmd=set_params", json_body,
                "application/json"),
        Hostile("2 MiB form body (get_params)", "POST", "cmd=get_params", form_body,
                "application/x-www-form-urlencoded"),
    ]


# --- the client side ------------------------------------------------------------------


@dataclass
class Window:
    name: str
    start: float
    end: float
    status: int
    seconds: float


class Server:
    """The child process with the probe."""

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_stall", "--serve", str(data), str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=child_env())

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/cnf"

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the bench server did not start")

    def stop(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The probe's stalls and the garbage collections, each as (when, seconds)."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        lines = out.decode().strip().splitlines()
        found = json.loads(lines[-1])
        return ([(float(t), float(s)) for t, s in found["stalls"]],
                [(float(t), float(s)) for t, s in found["gc"]])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def _send(http: aiohttp.ClientSession, url: str, h: Hostile) -> Window:
    start = time.monotonic()
    async with http.request(h.method, f"{url}?{h.query}", data=h.body,
                            headers={"Content-Type": h.content_type}) as resp:
        await resp.read()
        status = resp.status
    end = time.monotonic()
    return Window(h.name, start, end, status, end - start)


async def _poll(http: aiohttp.ClientSession, url: str, until: Callable[[], bool],
                slowest: list[float]) -> None:
    while not until():
        t = time.monotonic()
        async with http.get(f"{url}?cmd=get_dev_info") as resp:
            await resp.read()
        slowest[0] = max(slowest[0], time.monotonic() - t)
        await asyncio.sleep(0.1)


async def _drive(server: Server, requests: list[Hostile]) -> tuple[list[Window], float,
                                                                    dict[str, int]]:
    rss = {"start": rss_kib(server.proc.pid)}
    windows: list[Window] = []
    slowest = [0.0]
    done = False
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        poller = asyncio.create_task(_poll(http, server.url, lambda: done, slowest))
        idle_start = time.monotonic()
        await asyncio.sleep(AFTER_S)
        windows.append(Window("idle (baseline)", idle_start, idle_start, 0, 0.0))
        for h in requests:
            windows.append(await _send(http, server.url, h))
            await asyncio.sleep(AFTER_S)
            if h.query == "cmd=set_cm_vars" and "256" in h.name:
                rss["after 256 x 4 KiB formulas"] = rss_kib(server.proc.pid)
        rss["end"] = rss_kib(server.proc.pid)
        done = True
        await poller
    return windows, slowest[0], rss


Round = tuple[list[tuple[Window, float, float]], float, dict[str, int]]


def measure_round(quick: bool) -> Round:
    """One server, every request once: each window with the longest stall and the longest
    garbage collection in it (s), the slowest get_dev_info (s), RSS (KiB)."""
    with tempfile.TemporaryDirectory(prefix="chargebrain-stall-") as tmp:
        server = Server(Path(tmp) / "data")
        try:
            server.wait_ready()
            windows, slowest, rss = asyncio.run(_drive(server, hostile_requests(quick)))
            stalls, pauses = server.stop()
        finally:
            server.kill()
    out = []
    for w in windows:
        worst = max((s for t, s in stalls if w.start <= t <= w.end + AFTER_S), default=0.0)
        collect = max((s for t, s in pauses if w.start <= t <= w.end + AFTER_S), default=0.0)
        out.append((w, worst, collect))
    return out, slowest, rss


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def run(quick: bool) -> list[Figure]:
    rounds = [measure_round(quick) for _ in range(1 if quick else ROUNDS)]
    first = rounds[0][0]
    idle = _ms([r[0][0][1] for r in rounds])
    figures = []
    for i, (w, _worst, _collect) in enumerate(first):
        if i == 0:
            figures.append(Figure(f"stall: {w.name}", idle, "ms", goal=f"<= {GOAL_MS:g} ms"))
            continue
        name = f"stall: {w.name} [{w.status}]"
        figures.append(Figure(name, _ms([r[0][i][1] for r in rounds]), "ms", baseline=idle,
                              goal=f"<= {GOAL_MS:g} ms"))
        figures.append(Figure(f"{name}: longest garbage collection",
                              _ms([r[0][i][2] for r in rounds]), "ms", goal="report"))
        figures.append(Figure(f"{name}: answer time",
                              _ms([r[0][i][0].seconds for r in rounds]), "ms", goal="report"))
    figures.append(Figure("stall: slowest get_dev_info during the requests",
                          _ms([r[1] for r in rounds]), "ms", goal="report"))
    for key in rounds[0][2]:
        kib = statistics.median(r[2][key] for r in rounds)
        start = statistics.median(r[2]["start"] for r in rounds)
        figures.append(Figure(f"stall: server RSS, {key}", round(kib / 1024, 1), "MiB",
                              baseline=round(start / 1024, 1), goal="report"))
    return figures


def _main(argv: list[str]) -> int:
    return module_main(argv, "python -m bench.bench_stall", run,
                       child=("--serve", ("DATA", "PORT"), "run the server with the probe",
                              serve))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

