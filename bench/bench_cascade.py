"""Cascaded charging managers: how long a lower limit at the master takes to reach the
wallboxes behind its slaves, against the same change made to one manager directly.

`chargebrain run` processes on loopback. The cascade: a master and 4 slaves, each slave
with 250 HTTP-input EVSEs (`evse_cm` devices on the master, `cm_master_enabled` on the
slaves). The baseline, measured first in the same run: one manager with the 250 EVSEs of
one slave and no master. This process plays the wallboxes (`set_ajax_evse`), as their
feeders do: one in five has a car that charges on three phases and draws what it was
last offered, pushed about every 2 s; the others report no car, every 10 s. Each slave's
connection is 2000 A per phase (the API's largest current); the limit under test starts
at 10 A per car, so that every car charges.

A sample lowers the limit under test (the master's `max_total_current`, or the single
manager's) by 0.4 A per car with `set_params` and measures, from just before that
request, until the wallboxes' offers fit under it: on the single manager, its EVSEs'
allocation (`get_cm_slave`, "allocated") at most the new limit; in the cascade, every
slave showing its new share from the master (`get_cm_slave`, "limit") and its EVSEs'
allocation within that share, the slowest slave being the sample. After nine decreases
the limit goes back up, the cars follow, and the next round starts. Every observation of
the cascade is checked against the tree's fuses: each slave's offers within its
connection, the master's shares together within its limit. Decreases are what fuses
depend on; a raise waits for the cars to come down first by design (load-management.md,
"Handing current over").

Run alone: `python -m bench --only cascade` (`--quick`: 2 slaves × 50 EVSEs, 5 samples).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    HOST,
    ChargebrainProcess,
    Figure,
    module_main,
    percentile,
    raise_nofile_limit,
)

SLAVE_WIRING_MA = 2_000_000
PER_CAR_MA = 10_000  # the limit under test at the start of a round, per car
STEP_PER_CAR_MA = 400  # each decrease
STEPS = 9  # decreases per round: down to 6.4 A per car, every car still charging
CAR_EVERY = 5  # one EVSE in five has a car
EVSE_MAX_MA = 16_000
IDLE_EVERY = 5  # EVSEs without a car are pushed every 5th round (10 s)
TIMEOUT_S = 20.0
POLL_S = 0.01


@dataclass(frozen=True)
class Size:
    slaves: int
    evses: int  # per slave (and on the single manager)
    samples: int
    push_every_s: float = 2.0  # how often a car's wallbox is pushed


FULL = Size(4, 250, 20)
QUICK = Size(2, 50, 5)
TINY = Size(1, 5, 2, push_every_s=0.3)  # the smoke test's


async def _call(http: aiohttp.ClientSession, url: str, body: object = None) -> Any:
    ctx = http.get(url) if body is None else http.post(url, json=body)
    async with ctx as resp:
        text = await resp.text()
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status} {text[:200]}")
        return await resp.json(content_type=None)


@dataclass
class Wallboxes:
    """The HTTP-input EVSEs of one manager and the cars at some of them."""

    proc: ChargebrainProcess
    evses: list[str]
    cars: set[str]
    push_every_s: float
    offers: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    async def push_all(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        """The cars draw what they were offered last, pushed every `push_every_s`; the
        wallboxes without a car five times less often."""
        rounds = 0
        while not stop.is_set():
            started = time.monotonic()
            rounds += 1
            for dev in self.evses:
                if dev not in self.cars:
                    if rounds % IDLE_EVERY == 1:
                        await _call(http, self.proc.url(f"set_ajax_evse&dev_id={dev}&state=1"))
                    continue
                draw = self.offers.get(dev, 0)
                answer = await _call(http, self.proc.url(
                    f"set_ajax_evse&dev_id={dev}&state={3 if draw else 2}"
                    f"&current={draw},{draw},{draw}"))
                self.offers[dev] = answer["charging_current"] if answer[
                    "charging_enabled"] else 0
                if stop.is_set():
                    return
            if sum(self.offers.values()) > SLAVE_WIRING_MA:
                self.violations.append(f"{self.proc.port}: offers above the connection")
            rest = self.push_every_s - (time.monotonic() - started)
            if rest > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), rest)

    def all_charging(self) -> bool:
        return sum(1 for v in self.offers.values() if v) == len(self.cars)

    async def state(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        state: dict[str, Any] = await _call(http, self.proc.url("get_cm_slave"))
        return state

    async def fits(self, http: aiohttp.ClientSession, target: int, master: bool) -> float:
        """When its EVSEs' allocation was seen within `target` (perf_counter); with
        `master`, once the master's limit shown is `target` too."""
        deadline = time.perf_counter() + TIMEOUT_S
        while True:
            state = await self.state(http)
            if (not master or (state["from_master"] and state["limit"] == target)) and (
                    max(state["allocated"]) <= target):
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{self.proc.port}: {state} does not fit {target}")
            await asyncio.sleep(POLL_S)


async def _wallboxes(http: aiohttp.ClientSession, proc: ChargebrainProcess, size: Size,
                     params: dict[str, Any]) -> Wallboxes:
    await _call(http, proc.url("set_params"), {**params, "min_pause_time": 0})
    names = [f"E{n}" for n in range(2, size.evses + 2)]
    for dev in names:
        await _call(http, proc.url("set_params"), {"devices": [{
            "dev_type": "evse_ajax", "dev_id": dev, "max_charging_cur": EVSE_MAX_MA,
            "used_phases": 7}]})
    return Wallboxes(proc, names, set(names[::CAR_EVERY]), size.push_every_s)


async def _shares(http: aiohttp.ClientSession, master: ChargebrainProcess, count: int) -> list[int]:
    """The master's decision for each slave (its EVSEs E2..)."""
    info = await _call(http, master.url("get_dev_info"))
    by_id = {d["dev_id"]: d["evse"] for d in info["devices"] if "evse" in d}
    return [by_id[f"E{i + 2}"]["current"] if by_id[f"E{i + 2}"]["enabled"] else 0
            for i in range(count)]


async def _decided(http: aiohttp.ClientSession, master: ChargebrainProcess, count: int, limit: int,
                   before: list[int]) -> list[int]:
    """The master's shares once it has decided on `limit` (a share changed, or 2 s)."""
    deadline = time.perf_counter() + 2.0
    while True:
        shares = await _shares(http, master, count)
        if sum(shares) <= limit and (shares != before or time.perf_counter() > deadline):
            return shares
        if time.perf_counter() > deadline + TIMEOUT_S:
            raise RuntimeError(f"the master's shares {shares} stay above {limit}")
        await asyncio.sleep(POLL_S / 2)


Sample = Callable[[aiohttp.ClientSession, int], Awaitable[float]]


async def _rounds(http: aiohttp.ClientSession, limiter: ChargebrainProcess, boxes: list[Wallboxes],
                  size: Size, sample: Sample) -> list[float]:
    """Rounds of decreasing limits at `limiter`, each timed by `sample(http, limit)`
    (the ms from just before the change until it was seen); the latencies."""
    cars = sum(len(b.cars) for b in boxes)
    high = PER_CAR_MA * cars
    step = STEP_PER_CAR_MA * cars
    await _call(http, limiter.url("set_params"), {"max_total_current": high})
    deadline = time.monotonic() + 180
    while not all(b.all_charging() for b in boxes):
        if time.monotonic() > deadline:
            raise RuntimeError("the cars did not all start")
        await asyncio.sleep(0.5)
    await asyncio.sleep(3 * size.push_every_s)
    latencies: list[float] = []
    while len(latencies) < size.samples:
        limit = high
        for _ in range(min(STEPS, size.samples - len(latencies))):
            limit -= step
            latencies.append(await sample(http, limit))
            await asyncio.sleep(size.push_every_s)
        await _call(http, limiter.url("set_params"), {"max_total_current": high})
        await asyncio.sleep(4 * size.push_every_s)
    return latencies


async def _feeding(boxes: list[Wallboxes], work: Callable[[aiohttp.ClientSession],
                   Awaitable[list[float]]]) -> list[float]:
    """`work` while the cars at `boxes` are fed."""
    stop = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        feeders = [asyncio.create_task(b.push_all(http, stop)) for b in boxes]
        try:
            return await work(http)
        finally:
            stop.set()
            await asyncio.gather(*feeders, return_exceptions=True)


async def direct(tmp: Path, size: Size) -> list[float]:
    """The baseline: the same change made to one manager with one slave's EVSEs."""
    proc = ChargebrainProcess(tmp / "direct" / "data")
    await proc.start()
    try:
        async with aiohttp.ClientSession() as http:
            boxes = await _wallboxes(http, proc, size, {})

        async def sample(http: aiohttp.ClientSession, limit: int) -> float:
            t0 = time.perf_counter()
            await _call(http, proc.url("set_params"), {"max_total_current": limit})
            return (await boxes.fits(http, limit, master=False) - t0) * 1000

        return await _feeding([boxes], lambda http: _rounds(http, proc, [boxes], size,
                                                            sample))
    finally:
        await proc.stop()


async def cascade(tmp: Path, size: Size) -> tuple[list[float], list[str]]:
    """The cascade's latencies and every fuse found exceeded."""
    master = ChargebrainProcess(tmp / "master" / "data")
    procs = [ChargebrainProcess(tmp / f"slave{i}" / "data") for i in range(size.slaves)]
    violations: list[str] = []
    try:
        await asyncio.gather(*(p.start() for p in (master, *procs)))
        async with aiohttp.ClientSession() as http:
            slaves = list(await asyncio.gather(*(_wallboxes(http, p, size, {
                "cm_master_enabled": True, "max_total_current": SLAVE_WIRING_MA})
                for p in procs)))
            await _call(http, master.url("set_params"), {"max_imbalance_cur": 0})
            for i, p in enumerate(procs):
                await _call(http, master.url("set_params"), {"devices": [{
                    "dev_type": "evse_cm", "dev_id": f"E{i + 2}",
                    "address": f"{HOST}:{p.port}", "max_charging_cur": SLAVE_WIRING_MA,
                    "used_phases": 7}]})

        async def sample(http: aiohttp.ClientSession, limit: int) -> float:
            before = await _shares(http, master, len(slaves))
            t0 = time.perf_counter()
            await _call(http, master.url("set_params"), {"max_total_current": limit})
            shares = await _decided(http, master, len(slaves), limit, before)
            if sum(shares) > limit:
                violations.append(f"slave shares {sum(shares)} > {limit}")
            seen = await asyncio.gather(*(s.fits(http, share, master=True)
                                          for s, share in zip(slaves, shares, strict=True)))
            return (max(seen) - t0) * 1000

        latencies = await _feeding(slaves, lambda http: _rounds(
            http, master, slaves, size, sample))
        for s in slaves:
            violations.extend(s.violations)
        return latencies, violations
    finally:
        await asyncio.gather(*(p.stop() for p in (master, *procs)))


async def measure(size: Size) -> dict[str, Any]:
    raise_nofile_limit(4096)
    with tempfile.TemporaryDirectory(prefix="bench-cascade-") as tmp:
        base = await direct(Path(tmp), size)
        lat, violations = await cascade(Path(tmp), size)
    return {"direct": base, "cascade": lat, "violations": violations}


def figures(size: Size, result: dict[str, Any]) -> list[Figure]:
    lat, base = result["cascade"], result["direct"]
    what = (f"cascade: a lower limit at the master to the offers of {size.slaves} slaves x "
            f"{size.evses} HTTP-input EVSEs")
    note = f"baseline: the same change to one manager with {size.evses} EVSEs"
    out = []
    for p, goal in ((50, "report"), (99, "<= 2000 ms")):
        value, ref = percentile(lat, p), percentile(base, p)
        out.append(Figure(f"{what}, p{p} of {len(lat)} ({note})", round(value, 1), "ms",
                          baseline=round(ref, 1), ratio=round(value / ref, 3), goal=goal))
    out.append(Figure("cascade: fuses exceeded by offers or slave limits",
                      len(result["violations"]), "times", goal="0"))
    return out


def run(quick: bool) -> list[Figure]:
    size = QUICK if quick else FULL
    return figures(size, asyncio.run(measure(size)))


if __name__ == "__main__":
    sys.exit(module_main(sys.argv[1:], "bench.bench_cascade", run))
