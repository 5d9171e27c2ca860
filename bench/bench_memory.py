"""Resident memory of a chargebrain process with 250 EVSEs against one with none added.

Two real processes (`python -m chargebrain run`, temporary data dir, HTTP on a free
loopback port, Modbus TCP off), one after the other. The baseline keeps only the built-in
devices. The other gets 250 HTTP-input EVSEs through `set_params` (one device per POST,
as the UI does), each then pushed a reading with `set_ajax_evse`. After a few control
cycles the resident set size is read from /proc/<pid>/status (VmRSS).

Run alone: `python -m bench --only memory`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import aiohttp

from bench.common import ChargebrainProcess, Figure, rss_kib

EVSES = 250
PUSH_CONCURRENCY = 8


class Chargebrain(ChargebrainProcess):
    """`python -m chargebrain run` on a free loopback port, stopped on exit."""

    async def __aenter__(self) -> Chargebrain:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


async def _call(http: aiohttp.ClientSession, url: str, body: object = None) -> None:
    if body is None:
        async with http.get(url) as resp:
            text = await resp.text()
    else:
        async with http.post(url, json=body) as resp:
            text = await resp.text()
    if resp.status != 200:
        raise RuntimeError(f"{url}: {resp.status} {text[:200]}")


async def _add_evses(cb: Chargebrain, count: int) -> None:
    async with aiohttp.ClientSession() as http:
        for n in range(2, count + 2):
            await _call(http, cb.url("set_params"), {"devices": [
                {"dev_type": "evse_ajax", "dev_id": f"E{n}", "name": f"Sim-{n}"}]})
        queue = list(range(2, count + 2))

        async def pusher() -> None:
            while queue:
                n = queue.pop()
                state = 3 if n % 2 else 1
                current = "16000,16000,16000" if state == 3 else "0,0,0"
                await _call(http, cb.url(f"set_ajax_evse&dev_id=E{n}&state={state}"
                                         f"&current={current}&total_energy={1000 * n}"))

        await asyncio.gather(*(pusher() for _ in range(PUSH_CONCURRENCY)))
        await _call(http, cb.url("get_dev_info"))


async def _rss(evses: int, settle: float) -> int:
    with tempfile.TemporaryDirectory(prefix="chargebrain-bench-") as tmp:
        async with Chargebrain(Path(tmp) / "data") as cb:
            if evses:
                await _add_evses(cb, evses)
            await asyncio.sleep(settle)
            return rss_kib(cb.pid)


def run(quick: bool) -> list[Figure]:
    settle = 3.0 if quick else 10.0
    base = asyncio.run(_rss(0, settle))
    loaded = asyncio.run(_rss(EVSES, settle))
    per_evse = (loaded - base) / EVSES
    return [
        Figure(
            name=f"memory: RSS with {EVSES} HTTP-input EVSEs (baseline: built-in devices only)",
            value=round(loaded / 1024, 1), unit="MiB", baseline=round(base / 1024, 1),
            ratio=round(loaded / base, 3), goal="report"),
        Figure(
            name="memory: RSS growth per configured EVSE",
            value=round(per_evse, 1), unit="KiB", goal="report"),
    ]


if __name__ == "__main__":
    for fig in run(quick="--quick" in sys.argv[1:]):
        print(fig.json_line())
