"""Fixtures that run chargebrain for real: in-process on free ports, or as a process."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from chargebrain.app import App, Config
from chargebrain.clock import VirtualClock

ROOT = Path(__file__).resolve().parent.parent


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))  # free on every interface, hence on loopback too
        except OSError:
            return False
    return True


# Not the `random` module: hypothesis seeds it in every example, so a test drawing ports
# inside one (the stateful restart machine) drew the same ports in every run, and so did
# the same test running at the same time in another checkout.
_PORTS = random.SystemRandom()


def free_ports(count: int = 1) -> int:
    """The first of `count` consecutive free TCP ports on loopback."""
    for _ in range(200):
        base = _PORTS.randint(20_000, 60_000)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free ports")


@dataclass
class Running:
    app: App
    base_url: str
    modbus_port: int

    def url(self, query: str) -> str:
        return f"{self.base_url}/cnf?{query}"


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """The whole app in this process, on real sockets."""
    modbus_port = free_ports(3)
    http_port = free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", http_port, modbus_port))
    await app.start()
    try:
        yield Running(app, f"http://127.0.0.1:{http_port}", modbus_port)
    finally:
        await app.stop()


@pytest.fixture
async def virtual(tmp_path: Path) -> AsyncIterator[tuple[Running, VirtualClock]]:
    """The app on real sockets with a virtual clock (time moves only when told)."""
    clock = VirtualClock()
    port = free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", port, 0), clock=clock)
    await app.start()
    try:
        yield Running(app, f"http://127.0.0.1:{port}", 0), clock
    finally:
        await app.stop()


async def observe_only(running: Running) -> None:
    """The charging manager stops writing to the controller (observe mode), as when an
    outside Modbus master (evcc, say) controls the wallbox."""
    mgr = running.app.manager
    mgr.settings.set(mgr.site.with_changes(lb_enabled=False), persist=False)
    await mgr.wait_cycle()
    await mgr.wait_cycle()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class Process:
    data: Path
    http_port: int
    modbus_port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def url(self, query: str) -> str:
        return f"{self.base_url}/cnf?{query}"

    def start(self, *extra: str) -> None:
        """Start and wait until this process listens (its own log says so: a connection
        could reach another program that took the port meanwhile). A port taken between
        choosing and binding it is chosen anew."""
        for _ in range(5):
            if self._start(extra):
                return
            self.http_port = free_ports(1)
            self.modbus_port = free_ports(3) if self.modbus_port else 0
        raise RuntimeError(f"chargebrain found no free port: {self.output()}")

    def _start(self, extra: tuple[str, ...]) -> bool:
        self.log_path = self.data.parent / f"process-{time.monotonic_ns()}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chargebrain", "run", "--data", str(self.data),
             "--http", f"127.0.0.1:{self.http_port}", "--modbus-port", str(self.modbus_port),
             *(() if "--ocpp-port" in extra else ("--ocpp-port", "0")), *extra],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        listening = f"HTTP API on http://127.0.0.1:{self.http_port}/"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "is already in use" in self.output():
                    self.proc = None
                    return False
                raise RuntimeError(f"chargebrain exited: {self.output()}")
            if listening in self.output():
                return True
            time.sleep(0.05)
        raise RuntimeError("chargebrain did not start")

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        finally:
            self.proc = None


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Process]:
    """chargebrain as a separate process (for restarts and signals). Its data directory is
    not the in-process app's: one data directory serves one server."""
    p = Process(tmp_path / "process-data", free_ports(1), free_ports(3))
    try:
        yield p
    finally:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


async def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async or sync predicate until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)
