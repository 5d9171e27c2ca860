"""What recording the history costs, and what reading 30 days of it costs.

An App (temporary data directory, its loops not started) with 250 HTTP-input EVSEs, each
with a pushed reading, so that a cycle never waits for I/O. Baseline: one control cycle
(`cycle_now`) of that site, measured in the same run. Figures, each as a ratio of the
cycle:

* the sample the recorder takes at the end of a cycle every 10 s (255 series), on the
  event loop, and its share of each cycle (a sample every tenth cycle of 1 s);
* writing one minute of samples (the batch `flush()` writes: 6 samples, the closed
  minute means), on the recorder's thread, and its share of each cycle;
* a 30-day query of 10 series (get_history's read, in the worker thread): 500 buckets,
  as the UI asks (from the 15-minute rows), and one bucket a minute (every 1-minute row);
* the file's bytes per row, and the size 250 devices fill after 30 days of recording
  (2 days of 10-s rows, 30 days of 1-minute rows, 30 days of 15-minute rows).

Run alone: `python -m bench --only history`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Figure, free_port, module_main, per_call_seconds

EVSES = 250
DAY = 86400
SERIES_READ = 10


def _site(data: Path) -> object:
    from chargebrain.app import App, Config
    from chargebrain.core.model import EvseReading, EvseState
    from chargebrain.core.phases import Phases
    from chargebrain.manager.config import DeviceConfig

    app = App(Config(data, "127.0.0.1", free_port(), 0))
    for i in range(EVSES):
        app.manager_store.save_device(DeviceConfig(dev_id=f"E{i + 10}", dev_type="evse_ajax",
                                                   name=f"Box {i}", number=i + 10))
    app.manager.inventory.load_devices(app.manager_store.load_devices())
    for i in range(EVSES):
        charging = i % 2 == 0
        app.manager.pushes.push_evse(f"E{i + 10}", EvseReading(
            state=EvseState.CHARGING if charging else EvseState.WAITING,
            currents=Phases(8000, 8000, 8000) if charging else Phases(0, 0, 0),
            power_w=5520.0 if charging else 0.0, has_meter=True))
    return app


def run(quick: bool) -> list[Figure]:
    from chargebrain.app import App
    from chargebrain.store.history import HistoryStore

    with tempfile.TemporaryDirectory() as tmp:
        app = _site(Path(tmp) / "data")
        assert isinstance(app, App)
        try:
            mgr = app.manager
            for _ in range(3):
                mgr.cycle_now()
            cycles = []
            for _ in range(10 if quick else 40):
                start = time.perf_counter()
                mgr.cycle_now()
                cycles.append(time.perf_counter() - start)
            cycle_s = statistics.median(cycles)
            recorder = app.history
            clock_t = [int(app.clock.now())]

            def sample() -> None:
                clock_t[0] += 10
                recorder.sample(clock_t[0])

            sample_s = per_call_seconds(sample, min_time=0.1 if quick else 0.5, repeat=3)
            series = len(recorder.samples())
            recorder.pending.clear()
            for _ in range(6):
                sample()
            batch = list(recorder.pending)
            recorder.pending.clear()
            store = recorder.store

            def write() -> None:
                store.write(batch)

            write_s = per_call_seconds(write, min_time=0.1 if quick else 0.5, repeat=3)
        finally:
            app.store.close()
            app.history.store.close()
            app.data_lock.release()
        days = 3 if quick else 30
        now = 1_700_000_100
        query = HistoryStore(Path(tmp) / "query.sqlite")
        names = [f"S{n}" for n in range(SERIES_READ)]
        for day in range(days):
            base = now - (days - day) * DAY
            query.write([(1, name, base + 60 * m, 1000.0 + m, 1.0, 2.0, 3.0)
                         for name in names for m in range(1440)]
                        + [(2, name, base + 900 * q, 1000.0 + q, 1.0, 2.0, 3.0)
                           for name in names for q in range(96)])
        rows = SERIES_READ * days * (1440 + 96)
        row_bytes = query.size_bytes() / rows
        start_t = now - days * DAY
        # get_history's default: 500 buckets (from the 15-minute rows), and the
        # finest the 1-minute rows give: one bucket a minute.
        step = (days * DAY) // 500
        read_s = per_call_seconds(lambda: query.read(names, start_t, now, step, now),
                                  min_time=0.1 if quick else 1.0, repeat=3)
        fine_s = per_call_seconds(lambda: query.read(names, start_t, now, 60, now),
                                  min_time=0.1 if quick else 1.0, repeat=3)
        query.close()
    per_cycle_sample = sample_s / 10
    per_cycle_write = write_s / 60
    rows_30d = (series * (2 * DAY // 10 + 30 * DAY // 60 + 30 * DAY // 900))
    cycle_ms = cycle_s * 1000
    return [
        Figure("history: baseline, one cycle of 250 EVSEs", round(cycle_ms, 2), "ms"),
        Figure(f"history: one sample of {series} series (every 10 s)", round(sample_s * 1000, 3),
               "ms", baseline=round(cycle_ms, 2), ratio=round(sample_s / cycle_s, 4)),
        Figure("history: sampling per cycle (cycle 1 s)", round(per_cycle_sample * 1000, 4), "ms",
               baseline=round(cycle_ms, 2), ratio=round(per_cycle_sample / cycle_s, 4),
               goal="< 5 % of a cycle"),
        Figure(f"history: writing a minute ({len(batch)} rows, off the event loop)",
               round(write_s * 1000, 2), "ms", baseline=round(cycle_ms, 2),
               ratio=round(write_s / cycle_s, 3)),
        Figure("history: writing per cycle (thread time)", round(per_cycle_write * 1000, 4), "ms",
               baseline=round(cycle_ms, 2), ratio=round(per_cycle_write / cycle_s, 4)),
        Figure(f"history: {days}-day query, {SERIES_READ} series, 500 points",
               round(read_s * 1000, 1), "ms", baseline=round(cycle_ms, 2),
               ratio=round(read_s / cycle_s, 2)),
        Figure(f"history: {days}-day query, {SERIES_READ} series, every minute",
               round(fine_s * 1000, 1), "ms", baseline=round(cycle_ms, 2),
               ratio=round(fine_s / cycle_s, 2)),
        Figure("history: bytes per row on disk", round(row_bytes, 1), "B"),
        Figure("history: file after 30 days, 250 EVSEs", round(rows_30d * row_bytes / 2**20),
               "MiB"),
    ]


if __name__ == "__main__":
    sys.exit(module_main(sys.argv[1:], "bench_history", run))
