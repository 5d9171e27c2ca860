"""What a wallbox reading costs: a charger definition's driver against the Power Brain
driver, both over loopback.

The baseline is `RemoteEvse` reading another Power Brain's EVSE (two FC3 requests over
Modbus TCP to chargebrain's own server). Against it, `DefinedEvse` reads simulated boxes
through their bundled charger definitions: Heidelberg (RTU frames over TCP, two function
codes), Alfen (floats, a 64-bit float, a text state), Vestel (registers with holes: five
requests) and go-e (one HTTP request with a JSON answer). Everything runs in this process
(server and client), so a figure is the whole round trip's CPU and latency; the ratio is
per reading against the baseline.

Run alone: `python -m bench --only chargers`.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bench.common import HOST, Figure, free_port, module_main
from chargebrain.devices.defined_evse import DefinedEvse
from chargebrain.devices.meterdef import load_definitions
from chargebrain.devices.powerbrain import RemoteEvse
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.servers.modbus_tcp import ModbusTcpServers
from chargebrain.sim.wallboxes.catalog import serve

BOXES = ("evse_heidelberg", "evse_alfen_evepro", "evse_vestel_evc04",
         "evse_go_e_homeplus_mobile")


async def _per_read(read: object, reads: int) -> float:
    assert callable(read)
    await read()
    start = time.perf_counter()
    for _ in range(reads):
        await read()
    return (time.perf_counter() - start) / reads


async def _measure(reads: int) -> list[Figure]:
    brain = PowerBrain(None)
    brain.start()
    port = free_port()
    server = ModbusTcpServers([brain.banks["evse"]], HOST, port)
    await server.start()
    remote = RemoteEvse(f"{HOST}:{port}", 1)
    try:
        base = await _per_read(remote.read, reads)
    finally:
        await remote.close()
        await server.stop()
    figures = [Figure("wallbox read: Power Brain over Modbus TCP (baseline)", base * 1e3, "ms")]
    definitions = load_definitions()
    for dev_type in BOXES:
        served = await serve(dev_type, time.monotonic)
        evse = DefinedEvse(definitions[dev_type], served.address, served.unit)
        try:
            value = await _per_read(evse.read, reads)
        finally:
            await evse.close()
            await served.stop()
        figures.append(Figure(f"wallbox read: {dev_type} by its definition", value * 1e3, "ms",
                              baseline=base * 1e3, ratio=value / base))
    return figures


def run(quick: bool) -> list[Figure]:
    return asyncio.run(_measure(50 if quick else 400))


if __name__ == "__main__":
    sys.exit(module_main(sys.argv[1:], "bench_chargers", run))
