"""The benchmark runner: discovery, reporting, failure handling, and one tiny real figure.

Nothing here looks at how fast anything is; the figures only have to exist.
"""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from bench import __main__ as runner
from bench import bench_cascade, bench_reaction1000, ocpp_reaction, remote_reaction
from bench.bench_machine import machine_name, yardstick
from bench.bench_modbus import Servers, load
from bench.bench_ocpp import MODES, one_round, site_figures
from bench.common import Figure, percentile

EXPECTED = {"cascade", "cycle", "history", "http", "machine", "memory", "modbus", "ocpp",
            "pushes",
            "reaction", "reaction1000", "scenario", "stall"}


def test_discovers_the_bench_modules() -> None:
    names = runner.discover()
    assert set(names) >= EXPECTED
    assert names == sorted(names)
    for name in EXPECTED:
        assert callable(runner.load(name))


def test_report_has_a_table_and_one_json_line_per_figure() -> None:
    def good(quick: bool) -> list[Figure]:
        return [Figure("tiny", 1.5, "ms", baseline=3.0, ratio=0.5, goal="<= 3 ms"),
                Figure("no baseline", 7.0, "KiB")]

    out = io.StringIO()
    assert runner.main(["--quick"], modules={"good": good}, out=out) == 0
    text = out.getvalue()
    assert "name" in text.splitlines()[0] and "ratio" in text.splitlines()[0]
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert lines == [
        {"name": "tiny", "value": 1.5, "unit": "ms", "baseline": 3.0, "ratio": 0.5},
        {"name": "no baseline", "value": 7.0, "unit": "KiB", "baseline": None, "ratio": None},
    ]


def test_a_failing_module_is_reported_and_the_others_still_run() -> None:
    seen: list[bool] = []

    def broken(quick: bool) -> list[Figure]:
        raise RuntimeError("simulated failure")

    def good(quick: bool) -> list[Figure]:
        seen.append(quick)
        return [Figure("still here", 1.0, "x")]

    out = io.StringIO()
    status = runner.main([], modules={"broken": broken, "good": good}, out=out)
    assert status == 1
    assert seen == [False]
    assert "broken: FAILED (RuntimeError: simulated failure)" in out.getvalue()
    assert '"still here"' in out.getvalue()


def test_only_selects_modules_and_rejects_unknown_names() -> None:
    ran: list[str] = []

    def make(name: str) -> runner.RunFn:
        def fn(quick: bool) -> list[Figure]:
            ran.append(name)
            return []
        return fn

    modules = {"a": make("a"), "b": make("b")}
    assert runner.main(["--only", "bench_b"], modules=modules, out=io.StringIO()) == 0
    assert ran == ["b"]
    with pytest.raises(SystemExit):
        runner.main(["--only", "nope"], modules=modules, out=io.StringIO())


def test_percentile() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 100) == 2.0
    assert percentile([5.0], 99) == 5.0


async def test_a_tiny_modbus_run_against_both_servers() -> None:
    servers = Servers()
    await servers.start()
    try:
        for port in (servers.ours_port, servers.bare_port):
            result = await load(port, connections=2, seconds=5.0, max_requests=20,
                                warmup=0.0)
            assert result["requests"] == 20
            assert result["errors"] == 0
    finally:
        await servers.stop()
    await asyncio.sleep(0)


async def test_a_tiny_cascade_run_against_its_baseline() -> None:
    # A master and one slave with 5 wallboxes, and a manager with the same 5 alone.
    size = bench_cascade.TINY
    result = await bench_cascade.measure(size)
    assert len(result["cascade"]) == len(result["direct"]) == size.samples
    assert result["violations"] == []
    figures = bench_cascade.figures(size, result)
    assert [f.unit for f in figures] == ["ms", "ms", "times"]
    assert all(f.baseline and f.ratio for f in figures[:2])


async def test_a_tiny_ocpp_round_and_its_baseline() -> None:
    # Three charge points (a client process) per side, checked as served (connected,
    # charging, OCPP ones with a charging profile each) or the round raises; then the
    # memory and cycle figures of both sides.
    sides = {m: await one_round(m, 3, seconds=1.5, period=0.5, warmup=1.0) for m in MODES}
    for mode, result in sides.items():
        assert result["load"] > 0 and result["sent"] >= 3
        assert result["profiles"] >= (3 if mode == "ocpp" else 0)
        assert result["rss_after_kib"] > 0 and result["cycles_ms"]
    figures = site_figures(3, sides)
    assert [f.unit for f in figures] == ["KiB", "ms", "ms"]
    assert [f.goal for f in figures] == ["report", "<= 1000 ms", "<= 1000 ms"]


async def test_a_tiny_ocpp_reaction_and_its_baseline() -> None:
    # Three EVSEs per side, two overloads each: every one lowers the watched EVSE's
    # limit (a charging profile, a push answer) or `measure` raises.
    results = {m: await ocpp_reaction.measure(m, 3, 2) for m in MODES}
    assert all(len(r["latencies_ms"]) == 2 for r in results.values())
    figures = ocpp_reaction.figures(3, 2, results)
    assert [f.goal for f in figures] == ["report", "<= 1000 ms"]
    assert all(f.baseline and f.ratio for f in figures)
    # Every EVSE (the three and the built-in one) read in every cycle counted.
    for r in results.values():
        assert r["cycles"] > 0 and r["worst_read"] == r["evses"] == 4
    assert [f.value for f in ocpp_reaction.read_figures(results)] == [4, 4]
    scaled = bench_reaction1000.figures("ocpp", 2, results["http"], results["ocpp"])
    assert [f.goal for f in scaled] == ["report", "<= 100 ms", "all"]
    assert scaled[2].value == scaled[2].baseline == 4


async def test_a_tiny_reaction_at_remote_modbus_wallboxes() -> None:
    # Three wallboxes reached over Modbus TCP, two overloads: each lowers the watched
    # controller's limit or `measure` raises; every EVSE read in every cycle counted.
    small = await remote_reaction.measure(3, 2)
    assert len(small["latencies_ms"]) == 2 and not small["misses"]
    assert small["cycles"] > 0 and small["worst_read"] == small["evses"] == 4
    scaled = bench_reaction1000.figures("modbus-remote", 2, small, small)
    assert [f.goal for f in scaled] == ["report", "<= 100 ms", "all"]
    assert "Modbus TCP" in scaled[0].name and scaled[2].value == 4


def test_the_machine_yardstick_is_a_fixed_workload_and_names_the_machine() -> None:
    assert yardstick() == yardstick() > 0
    name = machine_name()
    assert "CPUs" in name and "Python 3." in name


def test_history_bench_gives_its_figures() -> None:
    from bench.bench_history import run

    figures = {f.name.split(",")[0]: f for f in run(True)}
    assert "history: one sample of 255 series (every 10 s)" in figures
    assert all(f.value > 0 for f in figures.values())
    assert figures["history: sampling per cycle (cycle 1 s)"].baseline is not None
