"""What reading an HTTP-input device's push costs: the parse alone, and a whole request.

HTTP-input wallboxes push `set_ajax_evse` every few seconds each (a site with hundreds of
them makes it the API's busiest command), meters `set_ajax_meter`. Figures, in µs:

- parsing one set_ajax_evse push into a reading, in its query form (every value a string,
  the currents a comma list) and its JSON form (numbers, the currents a list); the same
  for set_ajax_meter. Each is set against the server's CPU per whole set_ajax_evse
  request (ratio: the parse's share of a request);
- the server's CPU per set_ajax_evse request (query form) over HTTP on loopback, with a
  client in a separate process (bench_http's client), the whole App running.

This module only measures; it asserts nothing about speed.

Run alone: `python -m bench --only pushes`.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.bench_http import server_round
from bench.common import HOST, Figure, free_port, module_main, per_call_seconds
from chargebrain.api.shapes.pushes import evse_reading, meter_reading

EVSE_QUERY = {"state": "3", "current": "9800,9900,9700", "power_w": "6762.5",
              "total_energy": "123456", "rfid": "", "model": "feeder 1.2"}
EVSE_JSON = {"state": 3, "current": [9800, 9900, 9700], "power_w": 6762.5,
             "total_energy": 123456, "rfid": "", "model": "feeder 1.2"}
METER_QUERY = {"power_w": "2760", "current": "8000,2000,2000", "voltage": "231,229,230",
               "import_wh": "1234567", "export_wh": "7654"}
METER_JSON = {"power_w": 2760, "current": [8000, 2000, 2000], "voltage": [231, 229, 230],
              "import_wh": 1234567, "export_wh": 7654}
EVSE_PATH = ("/cnf?cmd=set_ajax_evse&dev_id=E2&state=3&current=9800,9900,9700"
             "&power_w=6762.5&total_energy=123456")


def parse_us(parse: Callable[[dict[str, Any]], object], fields: Mapping[str, Any],
             quick: bool) -> float:
    """µs per call of `parse` on a fresh copy of `fields` (the handler gets a new dict)."""
    seconds = per_call_seconds(lambda: parse(dict(fields)), min_time=0.1 if quick else 0.3,
                               repeat=3 if quick else 7)
    return seconds * 1e6


async def _request_cpu_us(rounds: int, seconds: float) -> float:
    from chargebrain.app import App, Config
    from chargebrain.manager.config import DeviceConfig

    logging.getLogger("chargebrain").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="chargebrain-bench-") as tmp:
        app = App(Config(Path(tmp) / "data", HOST, free_port(), 0))
        await app.start()
        try:
            app.manager.inventory.upsert_device(DeviceConfig("E2", "evse_ajax", name="Sim-2"))
            await app.manager.wait_cycle()
            cpu = [(await server_round(app.http_bound_port, EVSE_PATH, seconds))[1]
                   for _ in range(rounds)]
        finally:
            await app.stop()
    return statistics.median(cpu)


def run(quick: bool) -> list[Figure]:
    rounds, seconds = (2, 1.0) if quick else (4, 3.0)
    request_us = asyncio.run(_request_cpu_us(rounds, seconds))
    figures = []
    for what, parse, fields in (
        ("set_ajax_evse, query form", evse_reading, EVSE_QUERY),
        ("set_ajax_evse, JSON form", evse_reading, EVSE_JSON),
        ("set_ajax_meter, query form", meter_reading, METER_QUERY),
        ("set_ajax_meter, JSON form", meter_reading, METER_JSON),
    ):
        us = parse_us(parse, fields, quick)
        figures.append(Figure(
            name=f"pushes: parse one {what} (baseline: server CPU per set_ajax_evse request)",
            value=round(us, 2), unit="us", baseline=round(request_us, 1),
            ratio=round(us / request_us, 4), goal="report"))
    figures.append(Figure(
        name="pushes: server CPU per set_ajax_evse request, query form, over HTTP",
        value=round(request_us, 1), unit="us", goal="report"))
    return figures


if __name__ == "__main__":
    sys.exit(module_main(sys.argv[1:], "python -m bench.bench_pushes", run))
