"""chargebrain as a real process: restarts, signals, a port already in use."""

from __future__ import annotations

import importlib.metadata
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, Process, free_ports


def get(p: Process, query: str) -> object:
    import json

    with urllib.request.urlopen(p.url(query), timeout=5) as resp:
        return json.loads(resp.read())


def test_restart_keeps_persisted_registers(process: Process) -> None:
    process.start()
    serial = get(process, "cmd=modbus&device=evse&read=8008s")
    assert get(process, "cmd=modbus&device=evse&read=8120d") == 1
    assert get(process, "cmd=modbus&device=evse&write=8081&value=120") == "ok"
    assert get(process, "cmd=modbus&device=evse&write=8093&value=200") == "ok"
    assert get(process, "cmd=modbus&device=meter1&write=8058q&value=4321") == "ok"
    assert process.stop(signal.SIGTERM) == 0
    assert "shutting down" in process.output()
    process.start()
    assert get(process, "cmd=modbus&device=evse&read=8008s") == serial
    assert get(process, "cmd=modbus&device=evse&read=8120d") == 2
    assert get(process, "cmd=modbus&device=evse&read=8081") == 120
    assert get(process, "cmd=modbus&device=evse&read=8093") == 120  # volatile: default again
    assert get(process, "cmd=modbus&device=meter1&read=8058q") == 4321
    assert process.stop(signal.SIGINT) == 0


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    port = free_ports(1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        out = subprocess.run(
            [sys.executable, "-m", "chargebrain", "run", "--data", str(tmp_path),
             "--http", f"127.0.0.1:{port}", "--modbus-port", "0",
             "--ocpp-port", "0"],
            capture_output=True, text=True, timeout=30, cwd=ROOT,
        )
    assert out.returncode == 2
    assert f"port {port}" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_modbus_port_in_use(tmp_path: Path) -> None:
    base = free_ports(3)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", base + 1))
        s.listen()
        out = subprocess.run(
            [sys.executable, "-m", "chargebrain", "run", "--data", str(tmp_path),
             "--http", f"127.0.0.1:{free_ports(1)}", "--modbus-port", str(base),
             "--ocpp-port", "0"],
            capture_output=True, text=True, timeout=30, cwd=ROOT,
        )
    assert out.returncode == 2
    assert f"port {base + 1}" in out.stderr
    assert "Traceback" not in out.stderr


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "chargebrain", "--version"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0
    assert out.stdout == f"chargebrain {importlib.metadata.version('chargebrain')}\n"


def test_one_server_per_data_directory(process: Process) -> None:
    process.start()
    out = subprocess.run(
        [sys.executable, "-m", "chargebrain", "run", "--data", str(process.data),
         "--http", f"127.0.0.1:{free_ports(1)}", "--modbus-port", "0",
             "--ocpp-port", "0"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr + out.stdout
    assert out.stderr.strip().splitlines() == [
        f"chargebrain: {process.data} is in use by another chargebrain process "
        "(a running server or a restore)"]
    assert get(process, "cmd=modbus&device=evse&read=8120d") == 1  # the first still serves
    assert process.stop() == 0
    process.start()  # the lock went with the first process
    assert process.stop(signal.SIGKILL) != 0
    process.start()  # also after kill -9
    assert process.stop() == 0
