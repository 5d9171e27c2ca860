"""The broker connection: outages and reconnects (the control loop goes on regardless),
a broker that never answers, TLS, user and password, a changed broker, `--mqtt`."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chargebrain.app import App, Config
from chargebrain.servers.mqtt.outbox import EVENT_LIMIT
from chargebrain.servers.tls import ensure_self_signed
from tests.conftest import Process, Running, free_ports, wait_for
from tests.mqtt_broker import Broker, mqtt_client

P = "cfos_mqtt"


async def started(tmp_path: Path, url: str) -> App:
    app = App(Config(tmp_path / "data", "127.0.0.1", free_ports(1), 0, mqtt_url=url))
    await app.start()
    return app


async def test_an_outage_neither_stops_the_loop_nor_fills_memory(
        mqtt_site: Running, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    app = mqtt_site.app
    mgr = app.manager
    broker.stop()
    await wait_for(lambda: not app.mqtt.connected, timeout=15)
    await wait_for(lambda: "connection lost" in caplog.text or "cannot connect" in caplog.text,
                   timeout=15)
    cycles = mgr.cycle_count
    # Log lines while nobody takes them: at most EVENT_LIMIT wait, the oldest are dropped.
    for n in range(EVENT_LIMIT + 500):
        logging.getLogger("chargebrain.test").warning("line %d during the outage", n)
    assert len(app.mqtt.outbox) <= EVENT_LIMIT + 10
    assert app.mqtt.dropped >= 500
    # The control loop runs on (about once a second; a generous bound).
    await wait_for(lambda: mgr.cycle_count >= cycles + 3, timeout=20)
    broker.start()  # the same port, an empty broker (no retained messages)
    await wait_for(lambda: app.mqtt.connected, timeout=45)
    async with mqtt_client(broker, f"{P}/get/dev_info", f"{P}/status", f"{P}/log") as client:
        # The state is published again, and the newest log lines of the outage arrive.
        await client.wait(f"{P}/get/dev_info")
        await client.wait(f"{P}/status", lambda p: p == "online")
    assert app.mqtt.connections >= 2


async def test_the_last_will_says_offline(tmp_path: Path, broker: Broker) -> None:
    app = await started(tmp_path, broker.url)
    try:
        await wait_for(lambda: app.mqtt.connected, timeout=15)
        async with mqtt_client(broker, f"{P}/status") as client:
            await client.wait(f"{P}/status", lambda p: p == "online")
            await app.stop()
            await client.wait(f"{P}/status", lambda p: p == "offline")
    finally:
        if not app._stopped.is_set():
            await app.stop()


async def test_a_broker_that_never_answers_does_not_hold_the_loop(tmp_path: Path) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # takes the connection and says nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = await started(tmp_path, f"mqtt://127.0.0.1:{port}")
    try:
        cycles = app.manager.cycle_count
        await wait_for(lambda: accepted, timeout=10)
        await wait_for(lambda: app.manager.cycle_count >= cycles + 3, timeout=20)
        assert not app.mqtt.connected
        assert app.manager.cycle_duration_s < 1.0
    finally:
        await app.stop()
        for writer in accepted:
            writer.close()
        server.close()


async def test_tls_and_a_password(tmp_path: Path, http: aiohttp.ClientSession,
                                  caplog: pytest.LogCaptureFixture) -> None:
    cert, key = ensure_self_signed(tmp_path / "certs", ["127.0.0.1"])
    secure = Broker(tmp_path / "secure", users={"cb": "p@ss:w/rd"}, tls=(cert, key))
    secure.start()
    try:
        good = f"mqtts://cb:p%40ss%3Aw%2Frd@127.0.0.1:{secure.port}?cafile={cert}"
        app = await started(tmp_path, good)
        try:
            await wait_for(lambda: app.mqtt.connected, timeout=15)
            url = f"http://127.0.0.1:{app.http_bound_port}/cnf?cmd=get_params"
            async with http.get(url) as resp:
                shown = (await resp.json())["mqtt_url"]
            assert shown == f"mqtts://cb:***@127.0.0.1:{secure.port}?cafile={cert}"
            # get_params sent back: the stored password stays.
            async with http.post(url.replace("get_params", "set_params"),
                                 data=json.dumps({"mqtt_url": shown})) as resp:
                assert resp.status == 200
            assert app.manager.site.mqtt_url == good
            # A wrong password: no connection, a warning, and the server goes on.
            bad = good.replace("p%40ss", "wrong")
            app.manager.settings.set(app.manager.site.with_changes(mqtt_url=bad))
            await wait_for(lambda: not app.mqtt.connected and "MQTT: cannot connect" in
                           caplog.text, timeout=20)
            assert "p@ss" not in caplog.text and "wrong" not in caplog.text
        finally:
            await app.stop()
        # Without the CA, the broker's certificate is not trusted.
        app = await started(tmp_path, f"mqtts://cb:p%40ss%3Aw%2Frd@127.0.0.1:{secure.port}")
        try:
            await wait_for(lambda: "certificate verify failed" in caplog.text, timeout=20)
            assert not app.mqtt.connected
        finally:
            await app.stop()
    finally:
        secure.stop()


async def test_another_broker_at_run_time(tmp_path: Path, mqtt_site: Running,
                                          broker: Broker) -> None:
    other = Broker(tmp_path / "other")
    other.start()
    try:
        mgr = mqtt_site.app.manager
        async with mqtt_client(broker, f"{P}/status") as old, \
                mqtt_client(other, f"{P}/get/params") as new:
            mgr.settings.set(mgr.site.with_changes(mqtt_url=other.url))
            await new.wait(f"{P}/get/params")
            await old.wait(f"{P}/status", lambda p: p == "offline")
            mgr.settings.set(mgr.site.with_changes(mqtt_url=""))
            await wait_for(lambda: not mqtt_site.app.mqtt.connected, timeout=10)
    finally:
        other.stop()


@pytest.fixture
async def running_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    b = Broker(tmp_path / "cli-broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _get(process: Process, query: str) -> Any:
    with urllib.request.urlopen(process.url(query), timeout=10) as resp:
        return json.loads(resp.read())


async def test_run_with_mqtt(process: Process, running_broker: Broker) -> None:
    async with mqtt_client(running_broker, f"{P}/status", f"{P}/get/params") as client:
        process.start("--mqtt", running_broker.url)
        await client.wait(f"{P}/status", lambda p: p == "online", timeout=20)
        await client.wait(f"{P}/get/params")
        assert _get(process, "cmd=get_params")["mqtt_url"] == running_broker.url
        assert "MQTT: connected to" in process.output()
        assert process.stop() == 0
        await client.wait(f"{P}/status", lambda p: p == "offline")
    # Stored: the next start without --mqtt connects again; --mqtt '' switches it off.
    process.start()
    assert _get(process, "cmd=get_params")["mqtt_url"] == running_broker.url
    process.stop()
    process.start("--mqtt", "")
    assert _get(process, "cmd=get_params")["mqtt_url"] == ""
    process.stop()


def test_run_refuses_a_bad_broker_url(process: Process) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "chargebrain", "run", "--data",
                           str(process.data), "--mqtt", "http://broker"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "MQTT broker URL: the scheme must be one of mqtt://" in done.stderr
