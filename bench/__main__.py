"""Benchmark runner: `python -m bench [--quick] [--only NAME]` (or `make bench`).

Discovers every `bench/bench_*.py` module and runs its `run(quick)`, one module after the
other in this process. A module that raises is reported as failed and the others still
run; the exit status is 1 if any failed. Prints a table for people, then one JSON line
per figure (`{"name", "value", "unit", "baseline", "ratio"}`) for tools. Progress goes to
stderr.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bench.common import Figure

PACKAGE_DIR = Path(__file__).resolve().parent
PREFIX = "bench_"

RunFn = Callable[[bool], list[Figure]]


@dataclass
class Outcome:
    """What one module gave: its figures, or the error it failed with."""

    module: str
    figures: list[Figure] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.error)


def discover(directory: Path = PACKAGE_DIR) -> list[str]:
    """Short names (`modbus` for bench_modbus.py) of the bench modules, sorted."""
    return sorted(
        info.name[len(PREFIX):] for info in pkgutil.iter_modules([str(directory)])
        if info.name.startswith(PREFIX)
    )


def load(name: str) -> RunFn:
    module = importlib.import_module(f"bench.{PREFIX}{name}")
    fn = getattr(module, "run", None)
    if not callable(fn):
        raise TypeError(f"bench.{PREFIX}{name} has no run(quick) function")
    run_fn: RunFn = fn
    return run_fn


def run_one(name: str, run_fn: RunFn | None, quick: bool) -> Outcome:
    """Run one module; any exception (even while importing it) becomes a failed outcome."""
    outcome = Outcome(name)
    start = time.perf_counter()
    try:
        fn = run_fn if run_fn is not None else load(name)
        figures = fn(quick)
        for fig in figures:
            if not isinstance(fig, Figure):
                raise TypeError(f"run() returned {type(fig).__name__}, not Figure")
        outcome.figures = list(figures)
    except Exception as exc:  # reported; the other modules still run
        outcome.error = f"{type(exc).__name__}: {exc}".strip()
        traceback.print_exc(file=sys.stderr)
    outcome.seconds = time.perf_counter() - start
    return outcome


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) >= 100:
        return f"{int(value)}"
    return f"{value:.4g}"


def table(outcomes: Sequence[Outcome]) -> str:
    """A plain-text table of every figure, failed modules included."""
    header = ("name", "value", "unit", "baseline", "ratio", "goal")
    rows: list[tuple[str, ...]] = []
    for o in outcomes:
        if o.failed:
            rows.append((f"{o.module}: FAILED ({o.error})"[:160], "-", "", "-", "-", ""))
        for f in o.figures:
            rows.append((f.name, _number(f.value), f.unit, _number(f.baseline),
                         _number(f.ratio), f.goal))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    right = {1, 3, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def report(outcomes: Sequence[Outcome], out: TextIO) -> None:
    print(table(outcomes), file=out)
    print(file=out)
    for o in outcomes:
        for f in o.figures:
            print(f.json_line(), file=out)


def main(argv: Sequence[str] | None = None,
         modules: dict[str, RunFn] | None = None,
         out: TextIO | None = None) -> int:
    """Run the benchmarks; `modules` replaces discovery (name -> run function)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="shorter runs (fewer rounds and samples)")
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help="run only this module (e.g. modbus or bench_modbus); repeatable")
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    args = parser.parse_args(argv)
    stream = out if out is not None else sys.stdout
    available = sorted(modules) if modules is not None else discover()
    if args.list:
        print("\n".join(available), file=stream)
        return 0
    names = available
    if args.only:
        wanted = [n.removeprefix(PREFIX).removesuffix(".py") for n in args.only]
        unknown = [n for n in wanted if n not in available]
        if unknown:
            parser.error(f"no such bench module: {', '.join(unknown)} "
                         f"(have: {', '.join(available)})")
        names = [n for n in available if n in wanted]
    outcomes: list[Outcome] = []
    total = time.perf_counter()
    for name in names:
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        outcome = run_one(name, modules[name] if modules is not None else None, args.quick)
        state = "FAILED" if outcome.failed else f"{len(outcome.figures)} figure(s)"
        print(f"bench: {name}: {state} in {outcome.seconds:.1f} s", file=sys.stderr, flush=True)
        outcomes.append(outcome)
    print(f"bench: {len(names)} module(s) in {time.perf_counter() - total:.1f} s",
          file=sys.stderr, flush=True)
    report(outcomes, stream)
    failed = [o.module for o in outcomes if o.failed]
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
