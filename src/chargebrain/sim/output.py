"""Outputs of a simulated run: a CSV time series, a PNG chart and a plain-text metrics table.

Needs numpy; plot_png also needs matplotlib, used through its object API on the Agg
canvas so no global backend is switched and no window is opened.

This module must never change a run or its metrics; it only formats them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

from chargebrain.sim.metrics import Metrics
from chargebrain.sim.results import RunResult
from chargebrain.sim.scenario import DAY_S

PLOT_POINTS = 4000


def _clock(t: int) -> str:
    s = t % DAY_S
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def car_currents(run: RunResult) -> dict[str, npt.NDArray[np.float64]]:
    """Per car, the current per used phase for every second of the run (NaN when unplugged)."""
    out: dict[str, npt.NDArray[np.float64]] = {}
    for s in run.sessions:
        arr = np.full(run.duration_s, np.nan)
        drawn = np.frombuffer(s.drawn_ma, dtype=np.float64)
        arr[s.arrive_s : s.arrive_s + drawn.shape[0]] = drawn
        out[s.car_id] = arr
    return out


def write_csv(run: RunResult, path: str | Path, *, every_s: int = 1) -> None:
    """One row per `every_s` seconds: connection currents per phase and their limits, the
    EVSE sum, household and PV, and each car's current per used phase (A; empty = unplugged)."""
    sc = run.scenario
    lim = sc.site.limits
    idx = np.arange(0, run.duration_s, max(1, every_s))
    grid = [np.frombuffer(a, dtype=np.float64)[idx] / 1000.0 for a in run.grid_ma]
    evse = [np.frombuffer(a, dtype=np.float64)[idx] / 1000.0 for a in run.evse_ma]
    house = [np.asarray(h)[idx] / 1000.0 for h in run.profile.house_ma]
    pv = np.asarray(run.profile.pv_w)[idx] / 1000.0
    cars = {k: v[idx] / 1000.0 for k, v in car_currents(run).items()}
    header = [
        "t_s", "clock",
        "grid_l1_a", "grid_l2_a", "grid_l3_a", "limit_a", "usable_a",
        "evse_l1_a", "evse_l2_a", "evse_l3_a",
        "house_l1_a", "house_l2_a", "house_l3_a", "pv_kw",
        *(f"{car}_a" for car in cars),
    ]
    limit = f"{lim.max_current_ma / 1000:.3f}"
    usable = f"{(lim.max_current_ma - lim.reserve_ma) / 1000:.3f}"
    columns = [*grid, *evse, *house, pv, *cars.values()]
    text = [[("" if math.isnan(v) else f"{v:.3f}") for v in col.tolist()] for col in columns]
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r, t in enumerate(idx.tolist()):
            t_abs = sc.start_s + t
            row = [str(t), _clock(t_abs), *(c[r] for c in text[:3]), limit, usable]
            row.extend(c[r] for c in text[3:])
            w.writerow(row)


def _bucket_max(values: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.float64]:
    if k <= 1:
        return values
    n = values.shape[0] // k * k
    head = values[:n].reshape(-1, k)
    with np.errstate(all="ignore"):
        out: npt.NDArray[np.float64] = np.max(np.where(np.isnan(head), -np.inf, head), axis=1)
    out[np.isinf(out)] = np.nan
    return out


def plot_png(run: RunResult, path: str | Path) -> None:
    """Three panels: connection current per phase against the limits, each car's current,
    household and PV power. Long runs are thinned to per-bucket maxima so peaks stay visible."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sc = run.scenario
    lim = sc.site.limits
    n = run.duration_s
    k = max(1, math.ceil(n / PLOT_POINTS))
    hours = _bucket_max(np.arange(n, dtype=np.float64), k) / 3600.0 + sc.start_s / 3600.0

    fig = Figure(figsize=(12, 9), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True)
    for p, arr in enumerate(run.grid_ma):
        ax1.plot(hours, _bucket_max(np.frombuffer(arr, dtype=np.float64) / 1000.0, k),
                 lw=0.8, label=f"L{p + 1}")
    ax1.axhline(lim.max_current_ma / 1000.0, color="red", lw=1.2, label="limit")
    if lim.reserve_ma:
        ax1.axhline((lim.max_current_ma - lim.reserve_ma) / 1000.0, color="red", lw=0.8,
                    ls="--", label="limit − reserve")
    ax1.set_ylabel("connection current (A)")
    ax1.set_title(f"{sc.name} — {run.policy_name}")
    ax1.legend(loc="upper right", fontsize="small", ncol=5)
    ax1.grid(alpha=0.3)

    currents = car_currents(run)
    for car, series in currents.items():
        ax2.plot(hours, _bucket_max(series / 1000.0, k), lw=0.8, label=car)
    ax2.set_ylabel("car current per phase (A)")
    if 0 < len(currents) <= 12:
        ax2.legend(loc="upper right", fontsize="x-small", ncol=4)
    ax2.grid(alpha=0.3)

    volt = lim.voltage_v
    house_kw = sum(np.asarray(h) for h in run.profile.house_ma) * volt / 1e6
    ax3.plot(hours, _bucket_max(np.asarray(house_kw, dtype=np.float64), k), lw=0.8,
             label="household")
    if sc.pv is not None:
        ax3.plot(hours, _bucket_max(np.asarray(run.profile.pv_w) / 1000.0, k), lw=0.8,
                 label="PV")
    evse_kw = sum(np.frombuffer(a, dtype=np.float64) for a in run.evse_ma) * volt / 1e6
    ax3.plot(hours, _bucket_max(np.asarray(evse_kw, dtype=np.float64), k), lw=0.8,
             label="EVSEs")
    ax3.set_ylabel("power (kW)")
    ax3.set_xlabel("hour of day (continuing past 24 on the next day)")
    ax3.legend(loc="upper right", fontsize="small", ncol=3)
    ax3.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path))


def format_metrics_table(metrics: Metrics) -> str:
    """A plain-text report: summary, limits that were exceeded, and one line per car."""
    m = metrics
    lines = [
        f"scenario {m.scenario} · policy {m.policy} · {_hms(m.duration_s)} simulated · "
        f"{m.cycles} cycles",
    ]
    energy = (
        f"energy      delivered {m.delivered_kwh:.1f} kWh · needed {m.need_kwh:.1f} · "
        f"deliverable alone {m.deliverable_kwh:.1f}"
    )
    if m.optimum_kwh is not None:
        pct = 100.0 * m.delivered_kwh / m.optimum_kwh if m.optimum_kwh > 0 else 100.0
        energy += f" · offline optimum ≤ {m.optimum_kwh:.1f} ({pct:.0f} % of it)"
    lines.append(energy)
    fair = "n/a" if m.fairness is None else f"{m.fairness:.3f}"
    lines.append(f"fairness    Jain {fair} over {sum(c.share is not None for c in m.cars)} cars")
    grid = f"grid        import {m.grid_import_kwh:.1f} kWh · export {m.grid_export_kwh:.1f} kWh"
    if m.pv_self_consumption is not None:
        grid += f" · PV {m.pv_kwh:.1f} kWh, {100 * m.pv_self_consumption:.0f} % used on site"
    lines.append(grid)
    if m.house_over_fuse_s:
        lines.append(f"WARNING     the household alone exceeds the fuse for {m.house_over_fuse_s} s"
                     " (its overload then is not charged to the policy)")
    from_grid = m.sun_grid_share
    if m.sun_kwh is not None:
        lines.append(f"sun         surplus/solar EVSEs {m.sun_kwh:.1f} kWh, "
                     f"{m.sun_grid_kwh or 0.0:.1f} kWh of it from the grid"
                     + (f" ({100 * from_grid:.0f} %)" if from_grid is not None else ""))
    lines.append(
        f"overload    {m.overload_amp_seconds:.1f} A·s · reaction {m.reaction_amp_seconds:.1f}"
        f" A·s · misbehaviour {m.misbehaviour_amp_seconds:.1f} A·s in "
        f"{m.misbehaviour_excursions} excursions (budget {m.reaction_budget_s:.0f} s, "
        f"{m.load_steps} load steps)"
    )
    lines.append(
        f"imbalance   EVSEs {m.imbalance_amp_seconds:.1f} A·s above the limit (max "
        f"{m.imbalance_max_a:.1f} A over) · after a car's own drop "
        f"{m.imbalance_reaction_amp_seconds:.1f} A·s · misbehaviour "
        f"{m.imbalance_misbehaviour_amp_seconds:.1f} A·s in "
        f"{m.imbalance_misbehaviour_excursions} excursions · whole connection "
        f"{m.site_imbalance_amp_seconds:.1f} A·s"
    )
    lines.append(
        f"switching   {m.starts} starts · {m.stops} stops · offers refused {m.refused_offers}"
        f" · capped {m.capped_offers}"
    )
    exceeded = [o for o in m.overload if o.excursions]
    if exceeded:
        lines.append("")
        lines.append(
            f"{'limit':<14}{'ph':>3}{'limit A':>9}{'A·s':>10}{'n':>6}{'max A':>8}{'long s':>8}"
            f"{'react A·s':>11}{'n':>5}{'misb A·s':>10}{'n':>5}{'max A':>7}"
        )
        for o in exceeded:
            lines.append(
                f"{o.limit:<14}{o.phase:>3}{o.limit_ma / 1000:>9.1f}{o.amp_seconds:>10.1f}"
                f"{o.excursions:>6}{o.max_excursion_a:>8.1f}{o.longest_s:>8}"
                f"{o.reaction_amp_seconds:>11.1f}{o.reaction_excursions:>5}"
                f"{o.misbehaviour_amp_seconds:>10.1f}{o.misbehaviour_excursions:>5}"
                f"{o.misbehaviour_max_a:>7.1f}"
            )
    if m.cars:
        lines.append("")
        lines.append(
            f"{'car':<16}{'evse':<7}{'need':>7}{'alone':>7}{'got':>7}{'share':>7}"
            f"{'starts':>7}{'stops':>6}{'first s':>8}{'soc':>6}"
        )
        for c in m.cars:
            share = "" if c.share is None else f"{100 * c.share:.0f}%"
            first = "" if c.first_current_s is None else str(c.first_current_s)
            lines.append(
                f"{c.car_id:<16}{c.evse_id:<7}{c.need_kwh:>7.1f}{c.deliverable_kwh:>7.1f}"
                f"{c.delivered_kwh:>7.1f}{share:>7}{c.starts:>7}{c.stops:>6}{first:>8}"
                f"{100 * c.soc_end:>5.0f}%"
            )
    return "\n".join(lines)
