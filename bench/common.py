"""Shared shape of a benchmark figure and helpers to time things.

Each bench module exposes `run(quick: bool) -> list[Figure]`. A figure carries its own
baseline measured in the same run, so the ratio is meaningful on any machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


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
    fn: Callable[[], object], min_time: float = 0.2, max_calls: int = 1_000_000
) -> float:
    """Mean wall seconds per call of `fn`, repeated until `min_time` has passed."""
    fn()
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or calls >= max_calls:
            return elapsed / calls
