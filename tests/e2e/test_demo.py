"""The demo site: it configures itself and the simulated devices feed the manager."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from chargebrain.app import App, Config
from tests.conftest import free_ports, wait_for
from tests.mqtt_broker import Broker, mqtt_client


async def test_demo_site_runs(tmp_path: Path) -> None:
    port = free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", port, 0, demo=True))
    await app.start()
    try:
        async def fed() -> dict[str, dict[str, object]] | None:
            async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/cnf?cmd=get_dev_info"
            ) as resp:
                info = await resp.json()
            by_id = {d["dev_id"]: d for d in info["devices"]}
            wanted = ("E1", "E2", "E3", "E4", "M3", "M4")
            if all(k in by_id and not by_id[k]["com_err"] for k in wanted) and (
                by_id["M3"]["current_l1"] > 0
            ):
                return by_id
            return None

        by_id = await wait_for(fed, timeout=10)
        assert by_id["E2"]["name"].startswith("Sim-")
        # The OCPP wallbox connected to the central system (on a free port of loopback:
        # the embedded App has OCPP off) and booted there.
        assert by_id["E4"]["dev_type"] == "evse_ocpp"
        assert "Sim-OCPP" in by_id["E4"]["model"]
        assert app.ocpp_bound_port and app.ocpp_host == "127.0.0.1"
        assert by_id["M3"]["role"] == 3
        assert app.manager.site.max_total_current == 32000
        # Prometheus sees the simulated site.
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/metrics") as resp:
            metrics = await resp.text()
        assert 'chargebrain_meter_power_watts{dev_id="M3",name="Sim-Grid"}' in metrics
        assert 'chargebrain_evse_state{dev_id="E2",name="Sim-Garage"}' in metrics

        # A car arrives at the OCPP wallbox first: it starts its transaction, follows the
        # charging profile the manager sends, and the car charges.
        async def ocpp_charging() -> dict[str, object] | None:
            async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/cnf?cmd=get_dev_info"
            ) as resp:
                e4 = {d["dev_id"]: d for d in (await resp.json())["devices"]}["E4"]
            return e4 if e4["state"] == 3 and e4["current_l1"] > 0 else None

        e4 = await wait_for(ocpp_charging, timeout=30)
        assert 6000 <= e4["last_set_charging_cur"] <= 16000
        rows = app.store.query("SELECT dev_id, open FROM transactions WHERE dev_id = 'E4'")
        assert rows == [("E4", 1)]
    finally:
        await app.stop()


async def test_demo_site_over_sunspec(tmp_path: Path) -> None:
    import asyncio

    import sunspec2.modbus.client as ss_client

    port, sunspec = free_ports(1), free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", port, 0, demo=True, sunspec_port=sunspec))
    await app.start()
    try:
        def scan() -> dict[int, int]:
            d = ss_client.SunSpecModbusClientDeviceTCP(slave_id=2, ipaddr="127.0.0.1",
                                                       ipport=sunspec, timeout=5)
            d.scan()
            return {k: len(v) for k, v in d.models.items() if isinstance(k, int)}

        async def published() -> dict[int, int] | None:
            models = await asyncio.to_thread(scan)
            return models if models.get(113) == 4 else None

        assert (await wait_for(published, timeout=10)) == {1: 1, 113: 4, 213: 3}
    finally:
        await app.stop()


async def test_the_demo_on_mqtt(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    broker.start()
    port = free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", port, 0, demo=True, mqtt_url=broker.url))
    try:
        async with mqtt_client(broker, "cfos_mqtt/get/#") as client:
            await app.start()
            # The simulated devices are published on their own topics.
            await client.wait("cfos_mqtt/get/M3", lambda p: p["name"] == "Sim-Grid"
                              and p["current_l1"] != 0, timeout=20)
            await client.wait("cfos_mqtt/get/E2", lambda p: p["name"] == "Sim-Garage")
            await client.wait("cfos_mqtt/get/dev_info")
    finally:
        await app.stop()
        broker.stop()
