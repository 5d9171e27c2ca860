"""Benchmarks of reading meter definitions (parse + validate, as an upload is checked).

Figures: the largest bundled definition; three generated definitions of the most variables
a definition may have (256): Modbus variables, HTTP variables with queries, and variables
with expressions; and 256 KiB of Modbus variables (the most `set_meter_def` accepts),
read whole and refused for having too many. The goal is well under 50 ms for 256 KiB,
since the server parses uploads. This module only measures; it must never write files.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.common import Figure, per_call_seconds
from chargebrain.devices.meterdef import (
    MAX_VARIABLES,
    MeterDefinitionError,
    builtin_definitions_dir,
    parse_definition,
)

SIZE = 256 * 1024
GOAL = "well under 50 ms for 256 KiB"


def _fill(head: str, line: Callable[[int], str], count: int = MAX_VARIABLES) -> str:
    """`count` variables (or as many as fit in SIZE) after the global properties."""
    parts = [head]
    size = len(head) + 2
    for i in range(count):
        item = line(i)
        if size + len(item) + 2 > SIZE:
            break
        parts.append(item)
        size += len(item) + 2
    return "{\n" + ",\n".join(parts) + "\n}"


def _modbus_variable(i: int) -> str:
    return (f'  // value {i}\n  "v{i}": {{"address": {i % 60000}, "type": "uint32",'
            f' "resolution": 0.1, "reserved": [0xFFFFFFFF]}}')


def modbus_text(count: int = MAX_VARIABLES) -> str:
    head = '  "rtype": 0, "dev_type": "big_modbus", "modbus_allow_gaps": true'
    return _fill(head, _modbus_variable, count)


def http_text() -> str:
    head = '  "rtype": 1, "dev_type": "big_http"'
    return _fill(
        head,
        lambda i: f'  "v{i}": {{"address": "GET /status", "query": '
        f'"emeters[{i % 3}].sensors[{{\\"id\\": {i}}}].value", "resolution": 1000}}',
    )


def expr_text() -> str:
    """Two Modbus variables and expressions of about 60 characters over them, as many as
    a definition may have variables."""
    head = '  "rtype": 0, "dev_type": "big_expr", "a": {"address": 1}, "b": {"address": 2}'
    return _fill(
        head,
        lambda i: f'  "e{i}": {{"expr": "a * {i} + b / 2 - {i % 7} + a * b * 0.5"}}',
        MAX_VARIABLES - 2,
    )


def _refused(text: str) -> None:
    try:
        parse_definition(text)
    except MeterDefinitionError:
        return
    raise AssertionError("a definition of too many variables was taken")


def _figure(name: str, text: str, min_time: float, parse: Callable[[str], object]) -> Figure:
    ms = per_call_seconds(lambda: parse(text), min_time=min_time, repeat=3) * 1e3
    return Figure(
        name=f"meter definition parse+validate, {name} ({len(text) // 1024} KiB)",
        value=round(ms, 3),
        unit="ms",
        goal=GOAL if len(text) > 100_000 else "",
    )


def run(quick: bool) -> list[Figure]:
    min_time = 0.2 if quick else 1.0
    bundled = max(builtin_definitions_dir().glob("*.json"), key=lambda p: p.stat().st_size)
    largest = bundled.read_text(encoding="utf-8")
    return [
        _figure(f"largest bundled {bundled.name}", largest, min_time, parse_definition),
        _figure(f"{MAX_VARIABLES} Modbus variables", modbus_text(), min_time, parse_definition),
        _figure(f"{MAX_VARIABLES} HTTP variables with queries", http_text(), min_time,
                parse_definition),
        _figure(f"{MAX_VARIABLES - 2} expressions over 2 Modbus variables", expr_text(),
                min_time, parse_definition),
        _figure("Modbus variables, refused for too many", modbus_text(SIZE), min_time,
                _refused),
    ]
