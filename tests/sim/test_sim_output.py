"""CSV, PNG and the metrics table of a short run."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from chargebrain.sim.__main__ import main
from chargebrain.sim.metrics import compute_metrics
from chargebrain.sim.optimum import offline_optimum
from chargebrain.sim.output import format_metrics_table, plot_png, write_csv
from chargebrain.sim.policy import EqualSplitPolicy
from chargebrain.sim.runner import RunResult, run_scenario
from chargebrain.sim.scenario import load_scenario


@pytest.fixture(scope="module")
def faults_run() -> RunResult:
    return run_scenario(load_scenario("faults"), EqualSplitPolicy(), shorten=1800)


def test_csv(faults_run: RunResult, tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    write_csv(faults_run, path, every_s=10)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 180
    first, later = rows[0], rows[100]
    assert first["clock"] == "17:00:00" and later["t_s"] == "1000"
    assert float(later["limit_a"]) == 32.0 and float(later["usable_a"]) == 30.0
    assert float(later["grid_l1_a"]) == pytest.approx(faults_run.grid_ma[0][1000] / 1000, abs=1e-3)
    assert {"car-a_a", "car-b_a", "car-c_a", "car-d_a"} <= set(first)
    assert first["car-d_a"] == ""  # not plugged in yet at 17:00:00
    assert float(later["car-a_a"]) >= 0


def test_png(faults_run: RunResult, tmp_path: Path) -> None:
    path = tmp_path / "run.png"
    plot_png(faults_run, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000


def test_table(faults_run: RunResult) -> None:
    opt = offline_optimum(faults_run.scenario, shorten=1800)
    text = format_metrics_table(compute_metrics(faults_run, optimum=opt))
    assert text.startswith("scenario faults · policy EqualSplitPolicy · 0:30:00 simulated")
    assert "offline optimum ≤" in text
    assert "misbehaviour" in text
    assert "site" in text  # the stale meter lets the cooker overload the connection
    for car in ("car-a", "car-b", "car-c", "car-d"):
        assert car in text


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "h.png"
    assert main(["home", "--shorten", "600", "--policy", "fuse-only", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "scenario home · policy FuseOnlyPolicy" in out and "wall time" in out
    assert png.exists()
    assert main(["nowhere"]) == 2
