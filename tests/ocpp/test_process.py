"""The central system of `chargebrain run`: --ocpp-port, the site parameter
ocpp_srv_port, a port in use."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import websockets
from ocpp.v16 import ChargePoint, call

from chargebrain.app import App, Config
from chargebrain.clock import VirtualClock
from tests.conftest import ROOT, Process, free_ports
from tests.e2e.sync_client import device, get


async def boot(url: str) -> str:
    async with websockets.connect(url, subprotocols=["ocpp1.6"]) as ws:
        cp = ChargePoint("CP9", ws)
        task = asyncio.create_task(cp.start())
        answer = await cp.call(call.BootNotification(charge_point_vendor="V",
                                                     charge_point_model="M"))
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError",
                                              status="Available"))
        task.cancel()
        return str(answer.status)


async def test_run_with_ocpp_port(process: Process) -> None:
    port = free_ports(1)
    process.start("--ocpp-port", str(port))
    assert f"OCPP 1.6J central system on ws://127.0.0.1:{port}/<ChargeBox ID>" in (
        process.output())
    get(process, "cmd=set_params", {"devices": [{"dev_type": "evse_ocpp", "dev_id": "E2",
                                                 "address": "CP9", "id": 1}]})
    assert await boot(f"ws://127.0.0.1:{port}/ocpp/CP9") == "Accepted"
    for _ in range(50):
        if not device(process, "E2")["com_err"]:
            break
        await asyncio.sleep(0.1)
    assert device(process, "E2")["model"].startswith("V M")
    assert process.stop() == 0


def test_ocpp_port_in_use_is_one_line(tmp_path: Path) -> None:
    port = free_ports(1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        out = subprocess.run(
            [sys.executable, "-m", "chargebrain", "run", "--data", str(tmp_path),
             "--http", f"127.0.0.1:{free_ports(1)}", "--modbus-port", "0",
             "--ocpp-port", str(port)],
            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 2
    assert f"port {port}" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


async def test_the_site_parameter_counts_without_the_option(tmp_path: Path) -> None:
    port = free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", free_ports(1), 0, ocpp_port=None),
              clock=VirtualClock())
    app.manager.settings.set(app.manager.site.with_changes(ocpp_srv_port=port))
    await app.start()
    try:
        assert app.ocpp_bound_port == port
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/CP1") as resp:
            assert resp.status == 426  # an OCPP server, not one for browsers
    finally:
        await app.stop()
    # The option wins: 0 is off.
    app = App(Config(tmp_path / "data", "127.0.0.1", free_ports(1), 0, ocpp_port=0),
              clock=VirtualClock())
    await app.start()
    try:
        assert app.ocpp_bound_port == 0
    finally:
        await app.stop()
