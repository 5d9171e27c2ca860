"""A real Debian mosquitto broker on a free loopback port, and a real MQTT client for tests.

The broker runs as a process of its own with a configuration written for the test
(anonymous, or with a password file; plain, or TLS with a certificate the test made),
and can be stopped and started again on the same port (for outages). The client is
aiomqtt, the library chargebrain itself uses, so the tests speak MQTT over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from chargebrain.app import App, Config
from tests.conftest import Running, free_ports, wait_for


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto; .ci/run "
                           "installs it)")
    return found


@dataclass
class Broker:
    """One mosquitto process; `url` is what chargebrain's mqtt_url takes."""

    directory: Path
    port: int = 0
    users: dict[str, str] = field(default_factory=dict)
    tls: tuple[Path, Path] | None = None  # certificate and key
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", "persistence false",
                 "log_dest stderr", "log_type error", "log_type warning",
                 "max_queued_messages 10000"]
        if os.geteuid() == 0:
            # Started as root, mosquitto becomes the user "mosquitto", which cannot read
            # the test's files (its password file, its certificate) under a private /tmp.
            lines.append("user root")
        if self.users:
            passwd = self.directory / "passwd"
            passwd.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password],
                               check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            lines += [f"certfile {self.tls[0]}", f"keyfile {self.tls[1]}"]
        path = self.directory / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        if not self.port:
            self.port = free_ports(1)
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "mosquitto.log", "ab")  # noqa: SIM115 - the process keeps it
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self._config())],
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A plain, anonymous broker."""
    b = Broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Client:
    """A test's MQTT client: subscribes, remembers what came, publishes."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[aiomqtt.Message] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _collect(self) -> None:
        async for message in self.client.messages:
            self.messages.append(message)
            self._arrived.set()

    async def subscribe(self, *topics: str) -> None:
        for topic in topics:
            await self.client.subscribe(topic, qos=1)

    async def publish(self, topic: str, payload: bytes | str, retain: bool = False,
                      **kwargs: Any) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        await self.client.publish(topic, data, qos=1, retain=retain, **kwargs)

    def on(self, topic: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if str(m.topic) == topic]

    def last_json(self, topic: str) -> Any:
        found = [m for m in self.on(topic) if m.payload]
        return json.loads(found[-1].payload) if found else None

    async def wait(self, topic: str, predicate: Any = None, timeout: float = 10.0,
                   after: int = 0) -> aiomqtt.Message:
        """The first message on `topic` (from index `after` on) whose JSON payload (or
        raw payload, if not JSON) satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages[after:]:
                if str(message.topic) != topic:
                    continue
                if predicate is None or predicate(_decoded(message.payload)):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = sorted({str(m.topic) for m in self.messages})
                raise AssertionError(f"no matching message on {topic}; topics seen: {seen}")
            self._arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))


def _decoded(payload: Any) -> Any:
    raw = bytes(payload)
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


@asynccontextmanager
async def mqtt_client(broker: Broker, *topics: str, version: int = 3,
                      **kwargs: Any) -> AsyncIterator[Client]:
    protocol = aiomqtt.ProtocolVersion.V5 if version == 5 else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=protocol, **kwargs) as raw:
        client = Client(raw)
        client._task = asyncio.create_task(client._collect())
        await client.subscribe(*topics)
        try:
            yield client
        finally:
            client._task.cancel()
            with suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await client._task


@pytest.fixture
async def mqtt_site(tmp_path: Path, broker: Broker) -> AsyncIterator[Running]:
    """The whole app in this process, connected to `broker` (mqtt_url)."""
    port = free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", port, 0, mqtt_url=broker.url))
    await app.start()
    try:
        await wait_for(lambda: app.mqtt.connected, timeout=15)
        yield Running(app, f"http://127.0.0.1:{port}", 0)
    finally:
        await app.stop()
