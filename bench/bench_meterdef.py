"""Benchmarks of reading meter definitions (parse + validate, as an upload is checked).

Figures: the largest bundled definition, and three generated definitions of 256 KiB (the
most `set_meter_def` accepts): Modbus variables, HTTP variables with queries, and
variables with expressions. The goal is well under 50 ms for 256 KiB, since the server
parses uploads. This module only measures; it must never write files.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.common import Figure, per_call_seconds
from chargebrain.devices.meterdef import builtin_definitions_dir, parse_definition

SIZE = 256 * 1024
GOAL = "well under 50 ms for 256 KiB"


def _fill(head: str, line: Callable[[int], str]) -> str:
    parts = [head]
    size = len(head) + 2
    i = 0
    while True:
        item = line(i)
        if size + len(item) + 2 > SIZE:
            break
        parts.append(item)
        size += len(item) + 2
        i += 1
    return "{\n" + ",\n".join(parts) + "\n}"


def modbus_text() -> str:
    head = '  "rtype": 0, "dev_type": "big_modbus", "modbus_allow_gaps": true'
    return _fill(
        head,
        lambda i: f'  // value {i}\n  "v{i}": {{"address": {i % 60000}, "type": "uint32",'
        f' "resolution": 0.1, "reserved": [0xFFFFFFFF]}}',
    )


def http_text() -> str:
    head = '  "rtype": 1, "dev_type": "big_http"'
    return _fill(
        head,
        lambda i: f'  "v{i}": {{"address": "GET /status", "query": '
        f'"emeters[{i % 3}].sensors[{{\\"id\\": {i}}}].value", "resolution": 1000}}',
    )


def expr_text() -> str:
    """256 expressions of about 60 characters (the most a definition may have), then
    Modbus variables up to 256 KiB."""
    head = '  "rtype": 0, "dev_type": "big_expr", "a": {"address": 1}, "b": {"address": 2}'

    def line(i: int) -> str:
        if i < 256:
            return f'  "e{i}": {{"expr": "a * {i} + b / 2 - {i % 7} + a * b * 0.5"}}'
        return f'  "v{i}": {{"address": {i % 60000}, "type": "int16", "resolution": 0.1}}'

    return _fill(head, line)


def _figure(name: str, text: str, min_time: float) -> Figure:
    ms = per_call_seconds(lambda: parse_definition(text), min_time=min_time, repeat=3) * 1e3
    return Figure(
        name=f"meter definition parse+validate, {name} ({len(text) // 1024} KiB)",
        value=round(ms, 3),
        unit="ms",
        goal=GOAL if len(text) > 100_000 else "",
    )


def run(quick: bool) -> list[Figure]:
    min_time = 0.2 if quick else 1.0
    bundled = max(builtin_definitions_dir().glob("*.json"), key=lambda p: p.stat().st_size)
    return [
        _figure(f"largest bundled {bundled.name}", bundled.read_text(encoding="utf-8"), min_time),
        _figure("Modbus variables", modbus_text(), min_time),
        _figure("HTTP variables with queries", http_text(), min_time),
        _figure("256 expressions and Modbus variables", expr_text(), min_time),
    ]
