"""The manager's cycle against the core balancer alone, and nothing else of the bench.

`python -m bench.office_cycle [--rounds N] [--cpu]` runs the figures of the goal "one
manager cycle ≤ 1.5 × the core balancer alone" (bench_sim.py: the office scenario's
first 2 simulated hours, the manager fed every second through its HTTP-input drivers,
the core deciding at every report) N times in this process and prints each round and the
medians of the ratios, in about 15 s a round instead of the quick run's minutes.
`--cpu` takes the policies' times as this thread's CPU time (`time.perf_counter` is
replaced by `time.thread_time` before the simulator is imported), which damps the other
work on a shared machine. For an A/B of two commits, run it from each commit's source
(`PYTHONPATH=<checkout>/src`) one after the other, several times, and compare medians.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.office_cycle")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--cpu", action="store_true",
                        help="the policies' CPU time instead of the wall clock")
    args = parser.parse_args(argv)
    if args.cpu:
        time.perf_counter = time.thread_time  # before the simulator takes it
    from bench.bench_sim import MANAGER_GOAL, office_per_cycle_us
    from chargebrain.sim.scenario import load_scenario

    logging.getLogger("chargebrain").setLevel(logging.ERROR)
    office = load_scenario("office")
    with_pushes: list[float] = []
    alone: list[float] = []
    for i in range(max(1, args.rounds)):
        mgr_us, own_us, core_us = office_per_cycle_us(office)
        with_pushes.append(mgr_us / core_us)
        alone.append(own_us / core_us)
        print(f"round {i + 1}: manager {mgr_us:.0f} µs per cycle with the pushes, "
              f"{own_us:.0f} µs its cycle alone; core {core_us:.0f} µs per call",
              file=sys.stderr)
    med = statistics.median(with_pushes)
    print(f"manager per cycle, pushes included (vs core balancer alone): {med:.3f} "
          f"(goal ≤ {MANAGER_GOAL:g}: {'PASS' if med <= MANAGER_GOAL else 'FAIL'})")
    print(f"the manager's cycle alone, without pushes (vs core): "
          f"{statistics.median(alone):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
