"""How fast this machine runs plain Python: a yardstick for the absolute figures.

Every other figure is a ratio against a baseline of the same run, but some goals are
absolute (a day of the office in 10 s, an allocation in 1 ms), and the same code took
twice as long on one of the machines it was measured on as on another. This module times
a fixed piece of pure Python shaped like the charging manager's work — small objects
with slots, attribute reads, dict lookups, calls and integer arithmetic — so that figures
from two machines can be compared: divide each by its machine's yardstick. It also
names the machine (CPU model, CPUs, Python) on stderr.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

from bench.common import Figure

ROUNDS = 100_000  # objects built per timed pass
REPEAT = 7  # the least of this many passes: other work on a shared machine only adds


class _Point:
    __slots__ = ("a", "b", "c")

    def __init__(self, a: int, b: int, c: int) -> None:
        self.a = a
        self.b = b
        self.c = c


def _share(p: _Point, room: int) -> int:
    q = (room - p.a) // (p.c + 1)
    return q - q % 100 if q > 0 else 0


def yardstick() -> int:
    """The fixed workload; returns a checksum so that nothing can be skipped."""
    table: dict[int, _Point] = {}
    total = 0
    for i in range(ROUNDS):
        p = _Point(i & 0xFFF, i * 3, i % 7)
        table[i & 1023] = p
        other = table.get((i * 7) & 1023, p)
        total += _share(p, 200_000) + other.b % 13 + len(table)
    return total


def machine_name() -> str:
    """`CPU model · n CPUs · Python x.y.z` as far as the system tells."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} · {os.cpu_count()} CPUs · Python {platform.python_version()}"


def run(quick: bool) -> list[Figure]:
    print(f"bench: machine: {machine_name()}", file=sys.stderr, flush=True)
    expected = yardstick()
    best = float("inf")
    for _ in range(3 if quick else REPEAT):
        start = time.perf_counter()
        got = yardstick()
        best = min(best, time.perf_counter() - start)
        if got != expected:
            raise RuntimeError("the yardstick gave two different answers")
    return [Figure(
        name=f"machine: pure-Python yardstick, {ROUNDS} small objects built and looked up "
             "(divide absolute figures by it to compare machines)",
        value=round(best * 1000, 2), unit="ms", goal="report",
    )]
