"""Another chargebrain process as a remote Power Brain controller over Modbus TCP."""

from __future__ import annotations

import json
import urllib.request

import aiohttp

from tests.conftest import Process, Running, wait_for


def remote_read(p: Process, device: str, reg: str) -> object:
    with urllib.request.urlopen(p.url(f"cmd=modbus&device={device}&read={reg}"), timeout=5) as r:
        return json.loads(r.read())


async def test_remote_controller(running: Running, http: aiohttp.ClientSession,
                                 process: Process) -> None:
    process.start()
    serial = remote_read(process, "evse", "8008s")
    # A controlled controller leaves load management to the master: observe mode.
    req = urllib.request.Request(process.url("cmd=set_params"), data=b'{"lb_enabled": false}',
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert json.loads(r.read()) == "ok"
    assert remote_read(process, "evse", "8094") is not None
    with urllib.request.urlopen(process.url("cmd=modbus&device=evse&write=8094&value=1")) as r:
        assert json.loads(r.read()) == "ok"
    devices = [
        {"dev_type": "evse_powerbrain", "dev_id": "E2", "name": "Garage 2",
         "address": f"127.0.0.1:{process.modbus_port}", "id": 1},
        {"dev_type": "meter_powerbrain", "dev_id": "M3", "name": "Remote S0",
         "address": f"127.0.0.1:{process.modbus_port + 1}", "id": 2, "role": 0},
    ]
    for dev in devices:
        async with http.post(running.url("cmd=set_params"), json={"devices": [dev]}) as resp:
            assert resp.status == 200, await resp.text()

    async def remote_state() -> dict[str, object] | None:
        async with http.get(running.url("cmd=get_dev_info")) as resp:
            info = await resp.json()
        by_id = {d["dev_id"]: d for d in info["devices"]}
        e2 = by_id["E2"]
        # (the devices are added one by one: E2 may be read in a cycle before M3 exists)
        m3_read = by_id["M3"]["voltage_l1"] != 0
        return by_id if e2["state"] == 1 and not e2["com_err"] and m3_read else None

    by_id = await wait_for(remote_state, timeout=10)
    assert str(serial) in by_id["E2"]["model"]
    assert by_id["M3"]["com_err"] is False
    assert by_id["M3"]["voltage_l1"] == 230
    # No car at the remote: the manager switches its charging off over Modbus.
    await wait_for(lambda: remote_read(process, "evse", "8094") == 0, timeout=10)
    # The remote goes away: a communication error, then offline.
    process.stop()

    async def offline() -> bool:
        async with http.get(running.url("cmd=get_dev_info")) as resp:
            info = await resp.json()
        e2 = next(d for d in info["devices"] if d["dev_id"] == "E2")
        return bool(e2["com_err"] and e2["state"] == 6)

    await wait_for(offline, timeout=15)
