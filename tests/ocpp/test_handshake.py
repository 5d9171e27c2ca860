"""Who may connect to the central system: ChargeBox IDs, path prefixes, Basic
credentials, TLS, unknown charge points, connection floods."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from chargebrain.servers.ocpp.adapter import Limits
from chargebrain.servers.tls import self_signed_paths
from tests.ocpp.conftest import Central, basic, connected, make_central, wait_for


async def refused(central: Central, cp_id: str, headers: dict[str, str] | None = None,
                  subprotocols: list[str] | None = None) -> tuple[int, dict[str, Any], Any]:
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(central.url(cp_id), additional_headers=headers or {},
                                 subprotocols=subprotocols or ["ocpp1.6"])
    response = info.value.response
    assert response.headers["Content-Type"] == "application/json"
    return response.status_code, json.loads(response.body), response.headers


async def test_unknown_charge_point_is_refused_with_404(central: Central) -> None:
    await central.add_evse("E2", "CP1")
    status, body, _ = await refused(central, "STRANGER")
    assert status == 404
    assert "unknown charge point" in body["error"]
    status, body, _ = await refused(central, "")
    assert status == 404


@pytest.mark.parametrize("prefix", ["", "/ocpp", "/steve/websocket/CentralSystemService"])
async def test_the_last_path_segment_is_the_charge_box_id(central: Central,
                                                          prefix: str) -> None:
    await central.add_evse("E2", "CP-7")
    async with connected(central, "CP-7", prefix=prefix) as cp:
        assert (await cp.boot()).status == "Accepted"
        assert "CP-7" in central.app.ocpp.sessions


async def test_the_ocpp_subprotocol_is_required(central: Central) -> None:
    await central.add_evse("E2", "CP1")
    status, body, _ = await refused(central, "CP1", subprotocols=["ocpp2.0.1"])
    assert status == 400
    assert "ocpp1.6" in body["error"]
    async with central.http.get(f"http://127.0.0.1:{central.port}/CP1") as resp:
        assert resp.status == 426
        assert resp.content_type == "application/json"
        assert "error" in await resp.json()


async def test_basic_credentials_right_and_wrong(central: Central) -> None:
    await central.add_evse("E2", "CP1")
    await central.params(ocpp_srv_password="s3cret-for-boxes")
    params = await central.api("cmd=get_params")
    assert params["ocpp_srv_password_set"] is True
    assert "ocpp_srv_password" not in params
    status, _, headers = await refused(central, "CP1")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic")
    async with connected(central, "CP1", password="s3cret-for-boxes") as cp:
        assert (await cp.boot()).status == "Accepted"
    status, _, _ = await refused(central, "CP1", basic("CP1", "wrong"))
    assert status == 401
    # An address that sent wrong credentials waits before it is heard again.
    status, body, _ = await refused(central, "CP1", basic("CP1", "s3cret-for-boxes"))
    assert status == 429
    assert "try again" in body["error"]
    central.clock.advance(1.5)
    # The user must be the charge point's own id.
    status, _, _ = await refused(central, "CP1", basic("OTHER", "s3cret-for-boxes"))
    assert status == 401
    central.clock.advance(2.5)
    async with connected(central, "CP1", password="s3cret-for-boxes") as cp:
        assert (await cp.boot()).status == "Accepted"


async def test_unknown_charge_points_are_listed_when_accepted(central: Central) -> None:
    await central.params(ocpp_srv_accept_unknown=True)
    async with connected(central, "NEWBOX") as cp:
        await cp.boot(vendor="Elecq", model="AC22")
        await cp.status("Available", connector=1)
        listed = await central.api("cmd=get_ocpp_unknown")
        assert [u["id"] for u in listed] == ["NEWBOX"]
        assert listed[0]["vendor"] == "Elecq" and listed[0]["model"] == "AC22"
        assert listed[0]["connected"] is True
        assert listed[0]["connectors"] == {"1": "Available"}
        assert cp.received.of("SetChargingProfile") == []
        # The admin adds it: it is managed from then on (charging forbidden at first).
        await central.add_evse("E3", "NEWBOX", 1)
        await wait_for(lambda: cp.received.limits() == [0.0])
        await wait_for(lambda: any(t["requested_message"] == "StatusNotification"
                                   for t in cp.received.of("TriggerMessage")))
        await cp.status("Available", connector=1)
        await central.cycle()
        assert (await central.device("E3"))["com_err"] is False
        assert await central.api("cmd=get_ocpp_unknown") == []


async def test_a_second_connection_replaces_the_first(central: Central) -> None:
    await central.add_evse("E2", "CP1")
    async with connected(central, "CP1") as first:
        await first.boot()
        async with connected(central, "CP1") as second:
            await second.status("Available")
            await wait_for(lambda: first._connection.state.name == "CLOSED")
            await central.cycle()
            assert (await central.device("E2"))["com_err"] is False


async def test_connection_flood_is_bounded(tmp_path: Path,
                                           http: aiohttp.ClientSession) -> None:
    limits = Limits(max_connections=5, handshake_s=0.5)
    async for central in make_central(tmp_path, http, limits=limits):
        await central.add_evse("E2", "CP1")
        idle = [await asyncio.open_connection("127.0.0.1", central.port) for _ in range(5)]
        # A sixth connection is dropped at once.
        with pytest.raises((OSError, websockets.exceptions.WebSocketException)):
            async with connected(central, "CP1"):
                pass
        # Connections that never finish their handshake are closed after handshake_s ...
        for reader, _writer in idle:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        # ... and the charge point gets in.
        async with connected(central, "CP1") as cp:
            assert (await cp.boot()).status == "Accepted"


async def test_tls(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async for central in make_central(tmp_path, http, site={"ocpp_srv_tls_mode": "on"}):
        assert central.scheme == "wss"
        await central.add_evse("E2", "CP1")
        cert, _ = self_signed_paths(tmp_path / "data")
        context = ssl.create_default_context(cafile=str(cert))
        async with connected(central, "CP1", tls=context) as cp:
            assert (await cp.boot()).status == "Accepted"
        with pytest.raises((OSError, websockets.exceptions.WebSocketException)):
            await websockets.connect(f"ws://127.0.0.1:{central.port}/CP1",
                                     subprotocols=["ocpp1.6"], open_timeout=2)
