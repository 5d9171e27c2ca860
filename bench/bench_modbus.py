"""Modbus TCP throughput: chargebrain's server against a bare pymodbus server.

Both servers run in this process on loopback: chargebrain's `ModbusTcpServers` over a
Power Brain's EVSE register bank, and pymodbus's own `ModbusTcpServer` over a `SimDevice`
holding plain registers at 8000. The load comes from a separate client process (so its
CPU time is not charged to the server being measured): a few connections, each sending
FC3 reads of 10 registers at 8000 one after the other, for a bounded time and count. The
two servers are measured alternately, several rounds each, with the same client.

Run alone: `python -m bench --only modbus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import struct
import sys
import time
from typing import Any

from bench.common import (
    HOST,
    Figure,
    free_port,
    module_main,
    run_child,
    run_load,
)

ADDRESS = 8000
COUNT = 10
UNIT = 1
CONNECTIONS = 4
MAX_REQUESTS = 2_000_000  # per round, all connections together: a hard upper bound
GOAL_RATIO = 0.8


# --- the client ------------------------------------------------------------------------


def _request(tid: int) -> bytes:
    return struct.pack(">HHHBBHH", tid, 0, 6, UNIT, 3, ADDRESS, COUNT)


async def _connection(port: int, stop_at: float, budget: list[int]) -> tuple[int, int]:
    """Sequential FC3 reads on one connection until `stop_at` or the shared budget is used."""
    reader, writer = await asyncio.open_connection(HOST, port)
    done = errors = 0
    tid = 0
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            tid = (tid + 1) & 0xFFFF
            writer.write(_request(tid))
            header = await reader.readexactly(7)
            got_tid, _proto, length, _unit = struct.unpack(">HHHB", header)
            body = await reader.readexactly(length - 1)
            if got_tid != tid or body[0] != 3 or body[1] != 2 * COUNT:
                errors += 1
            else:
                done += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return done, errors


async def load(port: int, connections: int, seconds: float, max_requests: int,
               warmup: float = 0.2) -> dict[str, float]:
    """Drive `port` with `connections` sequential clients; requests per second measured
    after a short warm-up (connections open and the first answers are not counted)."""
    return await run_load(lambda stop_at, budget: _connection(port, stop_at, budget),
                          connections, seconds, max_requests, warmup)


# --- the servers -----------------------------------------------------------------------


class Servers:
    """chargebrain's server over one EVSE bank and a bare pymodbus server, on loopback."""

    def __init__(self) -> None:
        from chargebrain.powerbrain.controller import PowerBrain

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        self.powerbrain = PowerBrain(store=None)
        self.powerbrain.start()
        self.ours_port = 0
        self.bare_port = 0
        self._ours: Any = None
        self._bare: Any = None

    async def start(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        from chargebrain.servers.modbus_tcp import ModbusTcpServers

        for _ in range(5):
            self.ours_port = free_port()
            ours = ModbusTcpServers([self.powerbrain.banks["evse"]], HOST, self.ours_port)
            try:
                await ours.start()
            except Exception:  # the port was taken meanwhile: try another
                continue
            self._ours = ours
            break
        else:
            raise RuntimeError("could not start chargebrain's Modbus server")
        words = self.powerbrain.banks["evse"].read_words(ADDRESS, COUNT)
        device = SimDevice(id=UNIT, simdata=[
            SimData(ADDRESS, values=words, datatype=DataType.REGISTERS),
            SimData(ADDRESS + COUNT, count=10, values=0, datatype=DataType.REGISTERS),
        ])
        self.bare_port = free_port()
        bare = ModbusTcpServer(device, address=(HOST, self.bare_port))
        await bare.serve_forever(background=True)
        self._bare = bare

    async def stop(self) -> None:
        if self._ours is not None:
            await self._ours.stop()
            self._ours = None
        if self._bare is not None:
            await self._bare.shutdown()
            self._bare = None


async def _measure(rounds: int, seconds: float) -> dict[str, dict[str, list[float]]]:
    """Alternate rounds against both servers: rates and this process's CPU per request."""
    servers = Servers()
    out: dict[str, dict[str, list[float]]] = {
        "ours": {"rate": [], "cpu_us": []}, "bare": {"rate": [], "cpu_us": []}}
    try:
        await servers.start()
        for _ in range(rounds):
            for name, port in (("ours", servers.ours_port), ("bare", servers.bare_port)):
                cpu = time.process_time()
                result = await run_child(
                    "bench.bench_modbus",
                    ["--client", str(port), str(CONNECTIONS), str(seconds), str(MAX_REQUESTS)],
                    timeout=seconds + 30)
                cpu = time.process_time() - cpu
                if result["errors"]:
                    raise RuntimeError(f"{name}: {result['errors']} bad answers")
                out[name]["rate"].append(float(result["rate"]))
                out[name]["cpu_us"].append(cpu / max(1, int(result["total"])) * 1e6)
    finally:
        await servers.stop()
    return out


def run(quick: bool) -> list[Figure]:
    rounds, seconds = (2, 1.0) if quick else (5, 3.0)
    m = asyncio.run(_measure(rounds, seconds))
    ours = statistics.median(m["ours"]["rate"])
    bare = statistics.median(m["bare"]["rate"])
    ours_cpu = statistics.median(m["ours"]["cpu_us"])
    bare_cpu = statistics.median(m["bare"]["cpu_us"])
    return [
        Figure(
            name=f"modbus: FC3 reads of {COUNT} registers/s, {CONNECTIONS} connections "
                 "(baseline: bare pymodbus server)",
            value=round(ours),
            unit="req/s",
            baseline=round(bare),
            ratio=round(ours / bare, 3),
            goal=f"ratio >= {GOAL_RATIO}",
        ),
        Figure(
            name="modbus: server CPU per FC3 read (baseline: bare pymodbus server)",
            value=round(ours_cpu, 1),
            unit="us",
            baseline=round(bare_cpu, 1),
            ratio=round(ours_cpu / bare_cpu, 3),
            goal="report",
        ),
    ]


def _client(values: list[str]) -> None:
    port, conns, seconds, max_requests = values
    result = asyncio.run(load(int(port), int(conns), float(seconds), int(max_requests)))
    print(json.dumps(result))


def _main(argv: list[str]) -> int:
    return module_main(argv, "python -m bench.bench_modbus", run, (
        "--client", ("PORT", "CONNS", "SECONDS", "MAX"),
        "only run the client against PORT and print its JSON result", _client))

if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
