"""Who can reach what, as a real process: Modbus TCP on loopback unless told otherwise,
only allowed client networks, and the HTTP API over TLS."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from pymodbus.client import ModbusTcpClient

from chargebrain.servers.tls import ensure_self_signed
from tests.conftest import ROOT, free_ports
from tests.e2e.server_process import Server

FC3_IDENTITY = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 8000, 2)
IDENTITY_ANSWER = bytes.fromhex("0001000000070103" "04cf050000")


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def modbus_read(host: str, port: int, source: str | None = None) -> bytes:
    """The answer to one FC3 request; b"" if the server closed the connection.
    Raises OSError if nothing listens there."""
    with socket.socket() as sock:
        sock.settimeout(10)
        if source is not None:
            sock.bind((source, 0))
        sock.connect((host, port))
        try:
            sock.sendall(FC3_IDENTITY)
            return sock.recv(1024)
        except ConnectionError:
            return b""


def non_loopback_address() -> str | None:
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_modbus_stays_on_loopback_when_http_is_open(tmp_path: Path,
                                                    servers: list[Server]) -> None:
    server = Server(tmp_path / "data", "--http", "0.0.0.0:0", "--allow-insecure")
    servers.append(server)
    port = server.modbus_port
    assert modbus_read("127.0.0.1", port) == IDENTITY_ANSWER
    # HTTP answers on every address; Modbus on 127.0.0.1 only.
    with socket.create_connection(("127.0.0.2", server.http_port), timeout=10):
        pass
    for host in ("127.0.0.2", non_loopback_address()):
        if host is None:
            continue
        for offset in range(3):
            with pytest.raises(ConnectionRefusedError):
                modbus_read(host, port + offset)
    assert any("Modbus TCP on 127.0.0.1" in line for line in server.lines)


def test_modbus_host_and_allowed_networks(tmp_path: Path, servers: list[Server]) -> None:
    server = Server(tmp_path / "data", "--http", "127.0.0.1:0", "--modbus-host", "127.0.0.2",
                    "--modbus-allow", "127.0.0.2/32")
    servers.append(server)
    port = server.modbus_port
    with pytest.raises(ConnectionRefusedError):
        modbus_read("127.0.0.1", port)
    assert modbus_read("127.0.0.2", port, source="127.0.0.1") == b""
    assert modbus_read("127.0.0.2", port, source="127.0.0.2") == IDENTITY_ANSWER
    client = ModbusTcpClient("127.0.0.2", port=port, timeout=10, retries=0,
                             source_address=("127.0.0.2", 0))
    try:
        assert client.connect()
        assert not client.write_register(8093, 100, device_id=1).isError()
        assert client.read_holding_registers(8093, count=1, device_id=1).registers == [100]
    finally:
        client.close()
    assert any("only clients from 127.0.0.2/32" in line for line in server.lines)


def test_modbus_options_are_checked(tmp_path: Path) -> None:
    for args, message in ((("--modbus-allow", "192.168.1.0/24,lan"),
                           "'lan' is not an IP network"),
                          (("--modbus-host", ""), "--modbus-host needs an address")):
        out = subprocess.run(
            [sys.executable, "-m", "chargebrain", "run", "--data", str(tmp_path / "data"),
             *args], capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert out.returncode == 2
        assert message in out.stderr


async def test_https_with_a_self_signed_certificate(tmp_path: Path,
                                                    servers: list[Server]) -> None:
    data = tmp_path / "data"
    server = Server(data, "--http", "127.0.0.1:0", "--tls-self-signed")
    servers.append(server)
    assert server.scheme == "https"
    cert, key = data / "tls" / "cert.pem", data / "tls" / "key.pem"
    assert key.stat().st_mode & 0o077 == 0
    trusting = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as http:
        url = f"https://127.0.0.1:{server.http_port}/cnf?cmd=get_dev_info"
        async with http.get(url, ssl=trusting) as resp:
            assert resp.status == 200
            assert "devices" in await resp.json()
        with pytest.raises(aiohttp.ClientError):
            async with http.get(url.replace("https:", "http:")) as resp:
                await resp.read()
        with pytest.raises(aiohttp.ClientError):  # not trusted without the certificate
            async with http.get(url) as resp:
                await resp.read()
    fingerprint = [line for line in server.lines if "fingerprint" in line]
    assert len(fingerprint) == 1
    server.stop()

    # The same pair given as files, and the self-signed one is kept across restarts.
    copies = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(cert, copies[0])
    shutil.copy(key, copies[1])
    again = Server(data, "--http", "127.0.0.1:0", "--tls-cert", str(copies[0]),
                   "--tls-key", str(copies[1]))
    servers.append(again)
    async with aiohttp.ClientSession() as http:
        url = f"https://127.0.0.1:{again.http_port}/cnf?cmd=get_dev_info"
        async with http.get(url, ssl=trusting) as resp:
            assert resp.status == 200
    again.stop()
    third = Server(data, "--http", "127.0.0.1:0", "--tls-self-signed")
    servers.append(third)
    assert fingerprint[0].split("fingerprint")[1] in "".join(third.lines)


def run_refused(tmp_path: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "chargebrain", "run", "--data", str(tmp_path / "data"),
         "--http", "127.0.0.1:0", "--modbus-port", str(free_ports(3)), "--ocpp-port", "0",
         *args],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode != 0
    assert "Traceback" not in out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_a_bad_certificate_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    line = run_refused(tmp_path, "--tls-cert", str(junk), "--tls-key", str(junk))
    assert "junk.pem is not a PEM certificate" in line
    missing = tmp_path / "missing.pem"
    line = run_refused(tmp_path, "--tls-cert", str(missing), "--tls-key", str(junk))
    assert "cannot read the TLS certificate" in line and "missing.pem" in line
    cert_a, _ = ensure_self_signed(tmp_path / "a")
    _, key_b = ensure_self_signed(tmp_path / "b")
    line = run_refused(tmp_path, "--tls-cert", str(cert_a), "--tls-key", str(key_b))
    assert "does not belong to the certificate" in line
    line = run_refused(tmp_path, "--tls-cert", str(cert_a))
    assert "--tls-cert and --tls-key go together" in line


def test_a_modbus_host_that_is_not_here_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "chargebrain", "run", "--data", str(tmp_path / "data"),
         "--http", "127.0.0.1:0", "--ocpp-port", "0",
         "--modbus-host", "192.0.2.1"],  # TEST-NET-1: not here
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 2
    assert "Traceback" not in out.stdout + out.stderr
    last = out.stderr.splitlines()[-1]
    assert re.fullmatch(r"chargebrain: cannot listen on 192\.0\.2\.1 port \d+: .+", last), last
