"""Guessing the admin password: how many guesses get checked, and whether the right
password waits while others guess.

The App runs in this process on loopback with a virtual clock. The attacker is a separate
process (its CPU is not the server's) sending `cmd=get_users` with wrong passwords, each
request on a new connection from the source address the attack gives it:

* `same`: 8 parallel loops from 127.0.0.1, every request a new guess;
* `net`: one guess per source address, all addresses in 127.0.77.0/24;
* `rotate`: one guess per source address, each in its own /24 of 127.0.0.0/8;
* `repeat`: 8 parallel loops from 127.0.0.1, each sending its own wrong password again
  and again.

Guesses checked: during `same`, `net` and `rotate`, this process moves the virtual clock
on by `STEP_S` whenever no password check runs or waits, so the throttle's time passes
as if scrypt were free: the figure is what the throttle lets through (the server's own
count of failed checks per hour of its clock), not what the CPU manages. The baseline is
no throttle at all: what two scrypt threads check in an hour (measured here).

The right password: requests from 127.0.0.1 (logged in once, so trusted and known) or
127.0.0.2 while an attack runs, answered one after the other; the slowest of them, with
the same requests without an attack as the baseline, and the longest a check of theirs
waited for a scrypt thread (the server's own record, in real time). "Checked with scrypt
each time": the server forgets the right password before each request, as after a
restart.

Run alone: `python -m bench --only auth`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import HOST, Figure, free_port, module_main, run_child

if TYPE_CHECKING:
    from chargebrain.app import App
    from chargebrain.clock import VirtualClock

PASSWORD = "correct horse battery"
LOOPS = 8
STEP_S = 6.0  # virtual seconds per tick
TICK_S = 0.005  # real seconds per tick
MAX_REQUESTS = 200_000  # per attack, a hard upper bound
ATTACK_MAX_S = 120.0  # an attacker stopped by the measurement never runs longer


def _basic(password: str) -> str:
    return base64.b64encode(f"admin:{password}".encode()).decode()


# --- the attacker (runs in its own process) -------------------------------------------


async def _request(port: int, password: str, source: str) -> int:
    """One GET of an admin command on a new connection from `source`; the status."""
    reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
    try:
        writer.write(f"GET /cnf?cmd=get_users HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: "
                     f"Basic {_basic(password)}\r\nConnection: close\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return int(head.split(b" ", 2)[1])


def _source(mode: str, n: int) -> str:
    if mode == "net":
        return f"127.0.77.{1 + n % 254}"
    if mode == "rotate":
        return f"127.{1 + n // 250 % 250}.{n % 250}.1"
    return HOST


async def attack(port: int, mode: str, seconds: float) -> dict[str, int]:
    counts: Counter[str] = Counter()
    sent = [0]
    stop_at = time.perf_counter() + seconds

    async def loop(k: int) -> None:
        while time.perf_counter() < stop_at and sent[0] < MAX_REQUESTS:
            n = sent[0]
            sent[0] += 1
            password = f"wrong {k}" if mode == "repeat" else f"guess {n}"
            try:
                counts[str(await _request(port, password, _source(mode, n)))] += 1
            except OSError:
                counts["error"] += 1

    await asyncio.gather(*(loop(k) for k in range(LOOPS)))
    return dict(counts)


def _attacker(values: list[str]) -> None:
    port, mode, seconds = values
    print(json.dumps(asyncio.run(attack(int(port), mode, float(seconds)))))


# --- the server side -------------------------------------------------------------------


async def _admin_requests(port: int, count: int, source: str = HOST, fresh: bool = False
                          ) -> tuple[list[float], Counter[int]]:
    """Right-password requests one after the other: seconds each, and their statuses.
    `fresh`: the server forgets the right password before each (as after a restart), so
    that each costs a scrypt run."""
    from chargebrain.api import auth

    times: list[float] = []
    statuses: Counter[int] = Counter()
    for _ in range(count):
        if fresh:
            auth.forget_verified()
        started = time.perf_counter()
        statuses[await _request(port, PASSWORD, source)] += 1
        times.append(time.perf_counter() - started)
    return times, statuses


async def _scrypt_rate(seconds: float) -> float:
    """Checks per second two scrypt threads manage with 8 callers: no throttle at all."""
    from chargebrain.api.passwords import CheckPool, hash_password

    pool = CheckPool(time.monotonic)
    stored = hash_password(PASSWORD)
    done = [0]
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < stop_at:
            await pool.check(1, stored, "guess")
            done[0] += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(LOOPS)))
    return done[0] / (time.perf_counter() - started)


async def _guesses_per_hour(mode: str, hours: float) -> float:
    """Failed checks per hour of the throttle's time during one attack, on a fresh server.

    The virtual clock moves only while no password check runs or waits, as if scrypt
    took no time: what is measured is what the throttle lets through, not what the CPU
    manages."""
    async with _server() as (app, clock):
        throttle, pool = app.throttle, app.password_checks
        child = asyncio.create_task(run_child(
            "bench.bench_auth", ["--attack", str(app.http_bound_port), mode,
                                 str(ATTACK_MAX_S)], timeout=ATTACK_MAX_S + 30))
        try:
            deadline = time.perf_counter() + 20
            while throttle.failures_total == 0:  # the attack has begun
                if child.done() or time.perf_counter() > deadline:
                    raise RuntimeError(f"the {mode} attack did not start")
                await asyncio.sleep(TICK_S)
            before, start = throttle.failures_total - 1, clock.monotonic()
            while clock.monotonic() - start < hours * 3600:
                if child.done():
                    raise RuntimeError(f"the {mode} attack ended early: {await child}")
                await asyncio.sleep(TICK_S)
                if pool.busy == 0:
                    clock.advance(STEP_S)
            return (throttle.failures_total - before) / hours
        finally:
            child.cancel()  # kills the attacker
            with contextlib.suppress(asyncio.CancelledError):
                await child


@dataclass
class Under:
    """The right password's answers without and during an attack."""

    quiet_s: float  # slowest answer without an attack
    attacked_s: float  # slowest answer during the attack
    statuses: Counter[int]  # of the answers during the attack
    waited_s: float  # the longest a password check waited for a scrypt thread


async def _right_password_under(mode: str, source: str, fresh: bool, seconds: float,
                                count: int) -> Under:
    from chargebrain.api.passwords import CheckPool

    async with _server() as (app, _clock):
        port = app.http_bound_port
        quiet, _ = await _admin_requests(port, count, source, fresh)
        app.password_checks = CheckPool(time.monotonic)  # waits in real seconds
        child = asyncio.create_task(run_child(
            "bench.bench_auth", ["--attack", str(port), mode, str(ATTACK_MAX_S)],
            timeout=ATTACK_MAX_S + 30))
        try:
            deadline = time.perf_counter() + 20
            while app.throttle.failures_total < LOOPS:  # every loop has guessed
                if child.done() or time.perf_counter() > deadline:
                    raise RuntimeError(f"the {mode} attack did not start")
                await asyncio.sleep(0.05)
            await asyncio.sleep(seconds / 4)
            app.password_checks.longest_wait_s = 0.0  # from here on: the admin's checks
            attacked, statuses = await _admin_requests(port, count, source, fresh)
            if child.done():
                raise RuntimeError(f"the {mode} attack ended before the measurement")
        finally:
            child.cancel()  # kills the attacker
            with contextlib.suppress(asyncio.CancelledError):
                await child
        return Under(max(quiet), max(attacked), statuses, app.password_checks.longest_wait_s)


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[tuple[App, VirtualClock]]:
    from chargebrain.api import auth
    from chargebrain.app import App, Config
    from chargebrain.clock import VirtualClock

    logging.getLogger("chargebrain").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="chargebrain-bench-") as tmp:
        clock = VirtualClock()
        app = App(Config(Path(tmp) / "data", HOST, free_port(), 0), clock=clock)
        auth.set_admin_password(app.store, PASSWORD)
        await app.start()
        try:
            await _admin_requests(app.http_bound_port, 1)  # logged in once: trusted
            yield app, clock
        finally:
            await app.stop()


async def _measure(quick: bool) -> list[Figure]:
    seconds = 3.0 if quick else 6.0
    hours = 0.1 if quick else 1.0
    count = 10 if quick else 50
    raw = await _scrypt_rate(1.0 if quick else 3.0)
    figures = [Figure(
        name="auth: admin-password checks/s without a throttle (2 scrypt threads, 8 callers)",
        value=round(raw, 1), unit="checks/s", goal="report")]
    for mode, what in (("same", "one address, 8 loops of new guesses"),
                       ("net", "a new address per guess, all in one /24"),
                       ("rotate", "a new /24 of 127.0.0.0/8 per guess")):
        per_hour = await _guesses_per_hour(mode, hours)
        figures.append(Figure(
            name=f"auth: guesses checked per hour in the first {hours:g} h, {what} "
                 "(baseline: no throttle)",
            value=round(per_hour, 1), unit="guesses/h", baseline=round(raw * 3600),
            ratio=round(per_hour / (raw * 3600), 6), goal="report"))
    for mode, source, fresh, what in (
        ("repeat", HOST, False, "known to the server, 8 loops repeating wrong passwords "
                                "from its address"),
        ("repeat", HOST, True, "checked with scrypt each time, 8 loops repeating wrong "
                               "passwords from its address"),
        ("same", "127.0.0.2", True, "checked with scrypt each time, 8 loops of new "
                                    "guesses from 127.0.0.1, the admin on 127.0.0.2"),
    ):
        under = await _right_password_under(mode, source, fresh, seconds, count)
        if set(under.statuses) != {200}:
            raise RuntimeError(f"the right password was answered {dict(under.statuses)}")
        figures.append(Figure(
            name=f"auth: right password {what}: slowest of {count} (baseline: the same "
                 "without attack)",
            value=round(under.attacked_s * 1000, 2), unit="ms",
            baseline=round(under.quiet_s * 1000, 2),
            ratio=round(under.attacked_s / under.quiet_s, 2), goal="no wait"))
        if fresh:
            figures.append(Figure(
                name=f"auth: longest wait of a password check for a scrypt thread, {what}",
                value=round(under.waited_s * 1000, 2), unit="ms", goal="0"))
    under = await _right_password_under("same", HOST, False, seconds, count)
    refused = under.statuses[429] / count
    figures.append(Figure(
        name="auth: right password from the address of 8 loops of new guesses: share "
             f"refused (429 at once), slowest answer of {count} in ms as baseline",
        value=round(refused, 3), unit="share", baseline=round(under.attacked_s * 1000, 2),
        goal="report"))
    return figures


def run(quick: bool) -> list[Figure]:
    return asyncio.run(_measure(quick))


def _main(argv: list[str]) -> int:
    return module_main(argv, "python -m bench.bench_auth", run, (
        "--attack", ("PORT", "MODE", "SECONDS"),
        "only run the attacker against PORT and print its counts as JSON", _attacker))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
