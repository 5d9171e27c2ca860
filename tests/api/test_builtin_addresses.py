"""The built-in devices' `address` has the firmware 2.x form (`evse:`, `meter1:`,
`meter2:`), also for rows stored by older versions with `evse`, `meter1`, `meter2`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from chargebrain.app import App, Config
from chargebrain.devices.powerbrain import LocalEvse, LocalMeter
from tests.api.test_users import call
from tests.conftest import Running, free_ports

FW_2_ADDRESSES = {"E1": "evse:", "M1": "meter1:", "M2": "meter2:"}


def addresses(devices: list[dict[str, Any]]) -> dict[str, str]:
    return {d["dev_id"]: d["address"] for d in devices}


async def test_a_new_installation_shows_the_fw_2_addresses(
    running: Running, http: aiohttp.ClientSession
) -> None:
    _, devices = await call(http, running, "cmd=get_devices")
    assert addresses(devices) == FW_2_ADDRESSES
    _, info = await call(http, running, "cmd=get_dev_info")
    assert addresses(info["devices"]) == FW_2_ADDRESSES
    assert info["params"]["version"].startswith("2.")


async def test_rows_of_older_versions_keep_working(tmp_path: Path) -> None:
    port = free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", port, 0))
    old_rows = [
        {"dev_id": "E1", "dev_type": "evse_powerbrain", "name": "Wallbox", "address": "evse",
         "id": 1, "number": 1, "max_charging_cur": 13000},
        {"dev_id": "M1", "dev_type": "meter_powerbrain", "name": "S0 1", "address": "meter1",
         "id": 2, "number": 2, "phases": 1},
        {"dev_id": "M2", "dev_type": "meter_powerbrain", "name": "S0 2", "address": "meter2",
         "id": 3, "number": 3, "phases": 1, "device_enabled": False},
    ]
    for position, row in enumerate(old_rows):
        app.store.execute("INSERT INTO devices (dev_id, position, config) VALUES (?, ?, ?)",
                          (row["dev_id"], position, json.dumps(row)))
    await app.start()
    running = Running(app, f"http://127.0.0.1:{port}", 0)
    try:
        async with aiohttp.ClientSession() as http:
            _, devices = await call(http, running, "cmd=get_devices")
            assert addresses(devices) == FW_2_ADDRESSES  # no second E1/M1/M2 either
            assert [d["max_charging_cur"] for d in devices if d["dev_id"] == "E1"] == [13000]
            _, info = await call(http, running, "cmd=get_dev_info")
            assert addresses(info["devices"]) == FW_2_ADDRESSES
            # Still the built-in devices, read from the controller's own registers.
            mgr = app.manager
            assert isinstance(mgr.devices["E1"].driver, LocalEvse)
            assert isinstance(mgr.devices["M1"].driver, LocalMeter)
            await mgr.wait_cycle()
            _, info = await call(http, running, "cmd=get_dev_info")
            [e1] = [d for d in info["devices"] if d["dev_id"] == "E1"]
            assert e1["com_err"] is False
            # An old client sending the old form is understood; the new form is kept.
            status, body = await call(http, running, "cmd=set_device",
                                      {"devices": [{"dev_id": "M1", "address": "meter1"}]})
            assert status == 200, body
            assert body["address"] == "meter1:"
            assert isinstance(mgr.devices["M1"].driver, LocalMeter)
    finally:
        await app.stop()
