"""`python -m chargebrain.sim SCENARIO`: run a scenario with a reference policy and report.

Prints the metrics table and the wall time; optionally writes a CSV and a PNG and solves
the offline optimum for comparison. Needs numpy (and scipy / matplotlib for the optimum
and the chart).

This module must never be imported by the rest of chargebrain; it is an entry point only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from chargebrain.sim.metrics import compute_metrics
from chargebrain.sim.optimum import offline_optimum
from chargebrain.sim.output import format_metrics_table, plot_png, write_csv
from chargebrain.sim.policy import EqualSplitPolicy, FuseOnlyPolicy, Policy
from chargebrain.sim.runner import run_scenario
from chargebrain.sim.scenario import ScenarioError, load_scenario, shipped_scenarios

POLICIES = {"equal-split": EqualSplitPolicy, "fuse-only": FuseOnlyPolicy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chargebrain.sim", description=__doc__)
    parser.add_argument("scenario", help=f"a JSON file or one of: {', '.join(shipped_scenarios())}")
    parser.add_argument("--policy", choices=sorted(POLICIES), default="equal-split")
    parser.add_argument("--shorten", type=float, metavar="S",
                        help="simulate only the first S seconds")
    parser.add_argument("--cycle", type=int, metavar="S", help="override the control cycle")
    parser.add_argument("--optimum", action="store_true", help="also solve the offline bound")
    parser.add_argument("--csv", metavar="PATH", help="write the time series")
    parser.add_argument("--csv-every", type=int, default=1, metavar="S")
    parser.add_argument("--png", metavar="PATH", help="write a chart")
    args = parser.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
    except (ScenarioError, OSError) as e:
        print(f"chargebrain.sim: {e}", file=sys.stderr)
        return 2
    if args.cycle:
        scenario = dataclasses.replace(scenario, cycle_s=args.cycle)
    policy: Policy = POLICIES[args.policy]()
    t0 = time.perf_counter()
    run = run_scenario(scenario, policy, shorten=args.shorten)
    wall = time.perf_counter() - t0
    optimum = offline_optimum(scenario, shorten=args.shorten) if args.optimum else None
    print(format_metrics_table(compute_metrics(run, optimum=optimum)))
    print(
        f"\nwall time {wall:.2f} s for {run.duration_s} simulated s "
        f"(policy {run.policy_wall_s:.2f} s, simulator {wall - run.policy_wall_s:.2f} s)"
    )
    if optimum is not None:
        print(f"optimum: {optimum.variables} variables, step {optimum.step_s} s, "
              f"{optimum.solve_s:.2f} s")
    if args.csv:
        write_csv(run, args.csv, every_s=args.csv_every)
    if args.png:
        plot_png(run, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
