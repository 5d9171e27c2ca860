"""Shared shape of a benchmark figure and helpers to time things.

Each bench module exposes `run(quick: bool) -> list[Figure]`. A figure carries its own
baseline measured in the same run, so the ratio is meaningful on any machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None  # value / baseline, or as the figure's note says
    goal: str = ""

    def json_line(self) -> str:
        d = asdict(self)
        return json.dumps({k: d[k] for k in ("name", "value", "unit", "baseline", "ratio")})


def per_call_seconds(
    fn: Callable[[], object], min_time: float = 0.2, max_calls: int = 1_000_000,
    repeat: int = 1,
) -> float:
    """Mean wall seconds per call of `fn`, repeated until `min_time` has passed; with
    `repeat`, the least of that many such means (what the code costs when nothing else
    on the machine gets in its way)."""
    fn()
    best = float("inf")
    for _ in range(max(1, repeat)):
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time or calls >= max_calls:
                break
        best = min(best, elapsed / calls)
    return best


# --- loopback utilities shared by the network benches ----------------------------------


def free_port(count: int = 1) -> int:
    """The first of `count` consecutive free TCP ports on loopback."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            base: int = s.getsockname()[1]
        if base + count > 65535:
            continue
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free ports on loopback")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


async def http_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The head and the body of one HTTP/1.1 answer with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


class KeepAliveHttp:
    """One keep-alive HTTP/1.1 connection sending GETs; an answer other than 200 raises."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> bytes:
        if self._r is None or self._w is None:
            self._r, self._w = await asyncio.open_connection(HOST, self.port)
        self._w.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode())
        head, body = await http_answer(self._r)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{path}: {head.decode(errors='replace')} {body!r}")
        return body

    def close(self) -> None:
        if self._w is not None:
            self._w.close()


@contextlib.contextmanager
def quiet_logs(level: int = logging.ERROR) -> Iterator[None]:
    """chargebrain's logger at `level` for a block (a measured App logs every decision),
    then as it was: a bench run in-process (the smoke tests) leaves the logging alone."""
    logger = logging.getLogger("chargebrain")
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def raise_nofile_limit(wanted: int) -> int:
    """Raise the soft limit of open files towards `wanted` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation; values need not be sorted."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def push_idle_evses(app: Any, dev_ids: Sequence[str]) -> None:
    """Push to the App's HTTP-input EVSEs `dev_ids` a reading without a car (in process)."""
    from chargebrain.core.model import EvseReading, EvseState
    from chargebrain.core.phases import Phases

    reading = EvseReading(state=EvseState.WAITING, currents=Phases(0, 0, 0),
                          total_energy_wh=1000.0, has_meter=True)
    for dev_id in dev_ids:
        app.manager.pushes.push_evse(dev_id, reading)


async def keep_idle_fresh(app: Any, dev_ids: Sequence[str]) -> None:
    """HTTP-input EVSEs go stale after 30 s without a push: push them every 10 s."""
    while True:
        push_idle_evses(app, dev_ids)
        await asyncio.sleep(10.0)


class CycleReads:
    """Counts, after every cycle of an App's manager, the EVSEs whose reading was taken
    since that cycle was called (and how many EVSEs there are). `worst` is the least
    count from the first cycle that read them all to the last one that did (before, charge
    points may still be connecting; after, the probe has hung up): the number of EVSEs
    when every EVSE was read in every cycle between, 0 when no cycle read them all."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: list[int] = []
        self.evses = 0
        mgr = app.manager
        cycle = mgr.cycle

        async def counted(poll: bool = True) -> Any:
            since = app.clock.monotonic()
            alloc = await cycle(poll)
            self.count(since)
            return alloc

        mgr.cycle = counted  # the manager's loop calls it through the instance

    def count(self, since: float) -> None:
        mgr = self.app.manager
        evses = [rt.evse for rt in mgr.devices.values() if rt.evse is not None]
        self.evses = len(evses)
        read = sum(1 for ev in evses if ev.last_read is not None and ev.last_read >= since)
        if self.counts or read == len(evses):
            self.counts.append(read)

    @property
    def worst(self) -> int:
        counts = self.counts
        if not counts:
            return 0
        last = max(i for i, n in enumerate(counts) if n == self.evses)
        return min(counts[:last + 1])

    @property
    def cycles(self) -> int:
        """The number of cycles `worst` is taken over."""
        counts = self.counts
        return max((i + 1 for i, n in enumerate(counts) if n == self.evses), default=0)


@contextlib.contextmanager
def kept_heap() -> Iterator[None]:
    """The heap kept as `chargebrain run` keeps it (`chargebrain.heap.HeapKeeper`: what
    exists now and what survives a full collection left out of later collections) for a
    block, in a running event loop; a measured App would otherwise have every full
    collection walk its thousand devices (150-250 ms with 1000 EVSEs)."""
    from chargebrain.heap import HeapKeeper

    keeper = HeapKeeper()
    keeper.start()
    try:
        yield
    finally:
        keeper.stop()


def rss_kib(pid: int | None = None) -> int:
    """VmRSS of process `pid` (default: this one) in KiB (Linux)."""
    where = "self" if pid is None else str(pid)
    for line in Path(f"/proc/{where}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {where}")


def child_env() -> dict[str, str]:
    """Environment for a bench child process: the project root importable, unbuffered."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


async def run_child(module: str, args: Sequence[str], timeout: float) -> Any:
    """Run `python -m module args…`, return the JSON of its last output line.

    The child is killed if it outlives `timeout` or if the caller is cancelled.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, cwd=ROOT, env=child_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{module} exited with {proc.returncode}: {err.decode()[-2000:]}")
    lines = out.decode().strip().splitlines()
    if not lines:
        raise RuntimeError(f"{module} printed nothing: {err.decode()[-2000:]}")
    return json.loads(lines[-1])



class ChargebrainProcess:
    """`python -m chargebrain run` on a free loopback port (Modbus TCP and OCPP off), its
    output in a log beside its data directory."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data.parent / f"chargebrain-{self.port}.log"

    def url(self, query: str) -> str:
        """The URL of the API command `query` (`get_dev_info`, `set_ajax_evse&dev_id=E2`)."""
        return f"http://{HOST}:{self.port}/cnf?cmd={query}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until it accepts connections."""
        self.data.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chargebrain", "run", "--data", str(self.data),
                 "--http", f"{HOST}:{self.port}", "--modbus-port", "0", "--ocpp-port", "0",
                 "--log-level", "WARNING"],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chargebrain exited: {self.log.read_text()[-2000:]}")
            try:
                _r, w = await asyncio.open_connection(HOST, self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        await self.stop()
        raise RuntimeError(f"chargebrain did not start within {timeout:g} s")

    async def stop(self) -> None:
        """SIGTERM, and a kill if it has not stopped within 15 s."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


Connection = Callable[[float, list[int]], Awaitable[tuple[int, int]]]


async def run_load(connect: Connection, connections: int, seconds: float, max_requests: int,
                   warmup: float = 0.2) -> dict[str, float]:
    """Run `connections` request loops (each `connect(stop_at, budget) -> (done, errors)`)
    after a short warm-up; requests per second over the measured part."""
    warm = [max(1, max_requests // 10)]
    warm_results = await asyncio.gather(*(
        connect(time.perf_counter() + warmup, warm) for _ in range(connections)))
    budget = [max_requests]
    start = time.perf_counter()
    results = await asyncio.gather(*(connect(start + seconds, budget) for _ in range(connections)))
    elapsed = time.perf_counter() - start
    done = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    return {"requests": done, "errors": errors, "seconds": elapsed, "rate": done / elapsed,
            "total": done + errors + sum(r[0] + r[1] for r in warm_results)}


ChildMode = tuple[str, tuple[str, ...], str, Callable[[list[str]], None]]


def module_main(
    argv: list[str],
    prog: str,
    run: Callable[[bool], list[Figure]],
    child: ChildMode | None = None,
    more_children: Sequence[ChildMode] = (),
) -> int:
    """The command line of a bench module run on its own: `--quick`, or one of the
    module's child modes (`child` = option, metavars, help, function given the option's
    values; `more_children` more of them) that run in a separate process for the figures."""
    import argparse

    children = ([] if child is None else [child]) + list(more_children)
    parser = argparse.ArgumentParser(prog=prog)
    for option, metavar, help_text, _ in children:
        parser.add_argument(option, nargs=len(metavar), metavar=metavar, help=help_text)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    for option, _, _, fn in children:
        values = getattr(args, option.lstrip("-"))
        if values:
            fn(list(values))
            return 0
    for fig in run(args.quick):
        print(fig.json_line())
    return 0
