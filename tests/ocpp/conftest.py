"""Charge points built with the `ocpp` library's own ChargePoint class (schema validation
on, both ways), connecting over real sockets to chargebrain running in this process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result

from chargebrain.app import App, Config
from chargebrain.clock import VirtualClock
from chargebrain.servers.ocpp.adapter import Limits
from tests.api.test_users import call as api_call
from tests.conftest import Running, free_ports, wait_for


@dataclass
class Central:
    """chargebrain with its OCPP central system, on a virtual clock."""

    running: Running
    clock: VirtualClock
    port: int
    http: aiohttp.ClientSession
    scheme: str = "ws"

    @property
    def app(self) -> App:
        return self.running.app

    def url(self, cp_id: str, prefix: str = "") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{prefix}/{cp_id}"

    async def api(self, query: str, body: Any = None) -> Any:
        status, answer = await api_call(self.http, self.running, query, body)
        assert status == 200, answer
        return answer

    async def params(self, **params: Any) -> None:
        await self.api("cmd=set_params", params)

    async def add_evse(self, dev_id: str, cp_id: str, connector: int = 1,
                       **settings: Any) -> None:
        dev = {"dev_type": "evse_ocpp", "dev_id": dev_id, "name": f"Box {dev_id}",
               "address": cp_id, "id": connector, **settings}
        await self.api("cmd=set_params", {"devices": [dev]})

    async def device(self, dev_id: str) -> dict[str, Any]:
        info = await self.api("cmd=get_dev_info")
        for d in info["devices"]:
            if d["dev_id"] == dev_id:
                return d  # type: ignore[no-any-return]
        raise AssertionError(f"{dev_id} not in get_dev_info")

    async def cycle(self) -> None:
        await self.app.manager.wait_cycle()

    async def tick(self, seconds: float = 1.0) -> None:
        """Let `seconds` of virtual time pass, then run a cycle."""
        self.clock.advance(seconds)
        await asyncio.sleep(0.01)
        await self.cycle()

    def now_iso(self, offset: float = 0.0) -> str:
        return iso(self.clock.now() + offset)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def make_central(tmp_path: Path, http: aiohttp.ClientSession,
                       limits: Limits | None = None, site: dict[str, Any] | None = None,
                       clock: VirtualClock | None = None, **config: Any
                       ) -> AsyncIterator[Central]:
    """chargebrain on `tmp_path`/data with the OCPP server on a free port; `site`: site
    parameters set before the start."""
    clock = clock or VirtualClock()
    http_port, ocpp_port = free_ports(1), free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", http_port, 0, ocpp_port=ocpp_port,
                     ocpp_limits=limits or Limits(), **config), clock=clock)
    if site:
        app.manager.settings.set(app.manager.site.with_changes(**site))
    await app.start()
    scheme = "wss" if app.ocpp_tls else "ws"
    try:
        yield Central(Running(app, f"{'http'}://127.0.0.1:{http_port}", 0), clock,
                      app.ocpp_bound_port, http, scheme)
    finally:
        await app.stop()


@pytest.fixture
async def central(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[Central]:
    async for c in make_central(tmp_path, http):
        yield c


@dataclass
class Received:
    """What the central system asked of a test charge point."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, action: str) -> list[dict[str, Any]]:
        return [p for a, p in self.calls if a == action]

    def limits(self, connector: int = 1) -> list[float]:
        """The limits (A) of the charging profiles set on `connector`, in order."""
        out = []
        for p in self.of("SetChargingProfile"):
            if p["connector_id"] == connector:
                periods = p["cs_charging_profiles"]["charging_schedule"][
                    "charging_schedule_period"]
                out.append(float(periods[0]["limit"]))
        return out


class TestChargePoint(ChargePoint):  # type: ignore[misc]
    """A wallbox: answers the central system as told (`answers`), records its calls."""

    __test__ = False

    def __init__(self, cp_id: str, connection: Any) -> None:
        super().__init__(cp_id, connection, response_timeout=5)
        self.received = Received()
        self.answers: dict[str, str] = {}  # action → status to answer (default Accepted)

    def _status(self, action: str, default: str = "Accepted") -> str:
        return self.answers.get(action, default)

    @on("SetChargingProfile")
    def on_set_profile(self, **kw: Any) -> Any:
        self.received.calls.append(("SetChargingProfile", kw))
        return call_result.SetChargingProfile(status=self._status("SetChargingProfile"))

    @on("ClearChargingProfile")
    def on_clear_profile(self, **kw: Any) -> Any:
        self.received.calls.append(("ClearChargingProfile", kw))
        return call_result.ClearChargingProfile(status=self._status("ClearChargingProfile"))

    @on("ChangeConfiguration")
    def on_change_configuration(self, **kw: Any) -> Any:
        self.received.calls.append(("ChangeConfiguration", kw))
        return call_result.ChangeConfiguration(status=self._status("ChangeConfiguration"))

    @on("TriggerMessage")
    def on_trigger(self, **kw: Any) -> Any:
        self.received.calls.append(("TriggerMessage", kw))
        return call_result.TriggerMessage(status=self._status("TriggerMessage"))

    @on("RemoteStartTransaction")
    def on_remote_start(self, **kw: Any) -> Any:
        self.received.calls.append(("RemoteStartTransaction", kw))
        return call_result.RemoteStartTransaction(status=self._status("RemoteStartTransaction"))

    @on("RemoteStopTransaction")
    def on_remote_stop(self, **kw: Any) -> Any:
        self.received.calls.append(("RemoteStopTransaction", kw))
        return call_result.RemoteStopTransaction(status=self._status("RemoteStopTransaction"))

    # --- what a wallbox says ------------------------------------------------------------

    async def boot(self, vendor: str = "Acme", model: str = "Box 11",
                   serial: str = "S-1", firmware: str = "1.2.3") -> Any:
        return await self.call(call.BootNotification(
            charge_point_vendor=vendor, charge_point_model=model,
            charge_point_serial_number=serial, firmware_version=firmware))

    async def status(self, status: str, connector: int = 1, error: str = "NoError") -> Any:
        return await self.call(call.StatusNotification(
            connector_id=connector, error_code=error, status=status))

    async def meter(self, timestamp: str, connector: int = 1,
                    transaction_id: int | None = None, **values: Any) -> Any:
        """Meter values: `amps=(16, 16, 0)`, `watts=7360`, `wh=1000`, or `samples=[...]`."""
        samples: list[dict[str, Any]] = list(values.get("samples", []))
        if "amps" in values:
            for phase, amps in zip(("L1", "L2", "L3"), values["amps"], strict=True):
                samples.append({"value": str(amps), "measurand": "Current.Import",
                                "phase": phase, "unit": "A"})
        if "watts" in values:
            samples.append({"value": str(values["watts"]), "measurand": "Power.Active.Import",
                            "unit": "W"})
        if "wh" in values:
            samples.append({"value": str(values["wh"]),
                            "measurand": "Energy.Active.Import.Register", "unit": "Wh"})
        return await self.call(call.MeterValues(
            connector_id=connector, transaction_id=transaction_id,
            meter_value=[{"timestamp": timestamp, "sampledValue": samples}]))

    async def authorize(self, id_tag: str) -> str:
        answer = await self.call(call.Authorize(id_tag=id_tag))
        return str(answer.id_tag_info["status"])

    async def start_tx(self, id_tag: str, meter_start: int, timestamp: str,
                    connector: int = 1) -> Any:
        return await self.call(call.StartTransaction(
            connector_id=connector, id_tag=id_tag, meter_start=meter_start,
            timestamp=timestamp))

    async def stop_tx(self, transaction_id: int, meter_stop: int, timestamp: str,
                   reason: str | None = None) -> Any:
        return await self.call(call.StopTransaction(
            meter_stop=meter_stop, timestamp=timestamp, transaction_id=transaction_id,
            reason=reason), suppress=False)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextlib.asynccontextmanager
async def connected(central: Central, cp_id: str, prefix: str = "", password: str | None = None,
                    tls: ssl.SSLContext | None = None) -> AsyncIterator[TestChargePoint]:
    """A test charge point connected to `central` (its message loop runs meanwhile)."""
    headers = basic(cp_id, password) if password is not None else {}
    ws = await websockets.connect(central.url(cp_id, prefix), subprotocols=["ocpp1.6"],
                                  additional_headers=headers, ssl=tls)
    cp = TestChargePoint(cp_id, ws)
    task = asyncio.create_task(cp.start())
    try:
        yield cp
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await task
        await ws.close()


async def raw(central: Central, cp_id: str) -> Any:
    """A bare WebSocket to the central system, for frames no library would send."""
    return await websockets.connect(central.url(cp_id), subprotocols=["ocpp1.6"])


async def exchange(ws: Any, frame: str | list[Any]) -> list[Any]:
    """Send one frame, return the answer to it (other frames from the central system,
    its own calls, are answered Accepted meanwhile)."""
    text = frame if isinstance(frame, str) else json.dumps(frame)
    await ws.send(text)
    while True:
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if answer[0] == 2:  # a call of the central system
            await ws.send(json.dumps([3, answer[1], {"status": "Accepted"}]))
            continue
        return answer  # type: ignore[no-any-return]


def sent_to(cp: TestChargePoint) -> Iterator[tuple[str, dict[str, Any]]]:
    return iter(cp.received.calls)


__all__ = ["Central", "TestChargePoint", "connected", "exchange", "iso", "raw", "wait_for"]
