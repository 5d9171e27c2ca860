"""Reaction to an overload at 1000 EVSEs, for the three ways a wallbox is reached.

The same overload as in the reaction benchmarks (`bench.bench_reaction`,
`bench.ocpp_reaction`): the App runs in this process with its loops started, a grid meter
(HTTP input) and N EVSEs; one EVSE has a car drawing 16 A on three phases, the site
limit leaves 4 A of headroom, and the overloading grid sample pushed over HTTP adds 6 A.
The latency is from just before that HTTP request until the watched wallbox holds a
lower limit:

- **http**: N HTTP-input EVSEs; the watched one pushes `set_ajax_evse` back to back and
  the lower current comes in a push answer;
- **modbus**: the watched wallbox is the built-in controller's EVSE, whose charging-limit
  registers the probe polls over Modbus TCP; the other N-1 EVSEs are HTTP-input EVSEs;
- **ocpp**: N OCPP 1.6 charge points connected over WebSocket; the lower limit comes as
  a SetChargingProfile;
- **modbus-remote**: N wallboxes the manager itself reaches over Modbus TCP (simulated
  Power Brain controllers in other processes, read every cycle, `bench.remote_reaction`);
  the probe reads the watched controller's charging-limit registers over Modbus TCP.

Each kind runs with 1000 EVSEs and, as its baseline in the same run, with 10. A third
figure per kind counts the EVSEs read within every cycle during the 1000-EVSE run
(worst cycle, from the first cycle that read them all): the reaction must not come from
cycles that skip EVSEs.

Run alone: `python -m bench --only reaction1000` (quick: 10 samples per size and kind,
about 6 minutes on 2 cores, most of it configuring 1000 EVSEs, connecting 1000 charge
points and opening 1000 Modbus TCP connections; full: 40 samples).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from typing import Any

from bench.common import Figure, module_main, percentile

SIZES = (10, 1000)
KINDS = ("http", "modbus", "ocpp", "modbus-remote")
GOAL = "<= 100 ms"
WHAT = {
    "http": "lower current in a push answer, HTTP-input EVSEs",
    "modbus": "lower limit in the EVSE's registers read over Modbus TCP",
    "ocpp": "lower charging profile at the OCPP charge point",
    "modbus-remote": "lower limit at a wallbox the manager reaches over Modbus TCP",
}


def measure(kind: str, evses: int, samples: int) -> dict[str, Any]:
    """One App with `evses` EVSEs of `kind` and its probe: latencies and cycle reads."""
    if kind in ("modbus", "modbus-remote"):
        from bench import bench_reaction, remote_reaction

        module = bench_reaction if kind == "modbus" else remote_reaction
        result: dict[str, Any] = asyncio.run(module.measure(evses, samples))
        if result["misses"] or len(result["latencies_ms"]) < samples:
            raise RuntimeError(f"{kind}, {evses} EVSEs: {result['misses']} overloads "
                               "without a reaction")
        return result
    from bench import ocpp_reaction

    return asyncio.run(ocpp_reaction.measure(kind, evses, samples))


def figures(kind: str, samples: int, small: dict[str, Any],
            large: dict[str, Any]) -> list[Figure]:
    """p50 and p99 at 1000 against 10 EVSEs of the same kind; EVSEs read per cycle."""
    out = []
    for name, stat, goal in (("p50", statistics.median, "report"),
                             ("p99", lambda v: percentile(v, 99), GOAL)):
        value, base = stat(large["latencies_ms"]), stat(small["latencies_ms"])
        out.append(Figure(
            name=(f"reaction1000: overload pushed over HTTP to {WHAT[kind]}, {SIZES[1]} "
                  f"EVSEs, {name} of {samples} (baseline: the same with {SIZES[0]})"),
            value=round(value, 1), unit="ms", baseline=round(base, 1),
            ratio=round(value / max(base, 1e-9), 3), goal=goal))
    evses = large["evses"]
    out.append(Figure(
        name=(f"reaction1000: {kind}, EVSEs read within their cycle, worst of "
              f"{large['cycles']} cycles with {SIZES[1]} (baseline: all {evses})"),
        value=large["worst_read"], unit="EVSEs", baseline=float(evses),
        ratio=round(large["worst_read"] / max(evses, 1), 3), goal="all"))
    return out


def run(quick: bool) -> list[Figure]:
    samples = 10 if quick else 40
    out: list[Figure] = []
    for kind in KINDS:
        small, large = (measure(kind, n, samples) for n in SIZES)
        out += figures(kind, samples, small, large)
    return out


if __name__ == "__main__":
    sys.exit(module_main(sys.argv[1:], "python -m bench.bench_reaction1000", run))
