"""Secure by default, as a real process: no open admin on the network without a password."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, free_ports
from tests.e2e.server_process import Server


def run(*args: str, stdin: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chargebrain", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def start(data: Path, host: str, port: int = 0, *extra: str) -> tuple[Server, int]:
    """Start a server on `host:port` (port 0: the system picks a free one, so that no
    other process can take it between a probe and the bind); (server, bound port)."""
    server = Server(data, "--http", f"{host}:{port}", *extra, modbus=False)
    return server, server.http_port


def stop(server: Server) -> None:
    server.stop()


def status(port: int, path: str, password: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if password is not None:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_refuses_non_loopback_without_password(tmp_path: Path) -> None:
    port = free_ports(1)
    out = run("run", "--data", str(tmp_path / "data"), "--http", f"0.0.0.0:{port}",
              "--modbus-port", "0", "--ocpp-port", "0")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "set-password" in lines[0] and "--admin-password-file" in lines[0]
    assert "0.0.0.0" in lines[0]


def test_allow_insecure_starts_and_loopback_needs_nothing(tmp_path: Path) -> None:
    proc, port = start(tmp_path / "a", "0.0.0.0", 0, "--allow-insecure")
    try:
        assert status(port, "/cnf?cmd=get_users") == 200  # everyone is admin
    finally:
        stop(proc)
    proc, port = start(tmp_path / "b", "localhost")
    stop(proc)


def test_set_password_then_listen_everywhere(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pw_file = tmp_path / "pw.txt"
    pw_file.write_text("s3cret pass\n")
    out = run("set-password", "--data", str(data), "--password-file", str(pw_file))
    assert out.returncode == 0, out.stderr
    proc, port = start(data, "0.0.0.0")
    try:
        assert status(port, "/ui/en/sim.htm") == 401
        assert status(port, "/ui/en/sim.htm", "wrong") == 401
        assert status(port, "/ui/en/sim.htm", "s3cret pass") == 200
        assert status(port, "/cnf?cmd=get_dev_info") == 200
        assert status(port, "/cnf?cmd=get_dev_info", "wrong") == 200
        assert status(port, "/cnf?cmd=get_users") == 401
        # Changing it while the process runs takes effect within a second (the running
        # process reads the stored hash again at most a second after it last did).
        out = run("set-password", "--data", str(data), "--stdin", stdin="other\n")
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 5.0
        while status(port, "/cnf?cmd=get_users", "other") != 200:
            assert time.monotonic() < deadline, "the new password never took effect"
            time.sleep(0.1)
        assert status(port, "/cnf?cmd=get_users", "s3cret pass") == 401
    finally:
        stop(proc)
    # The hash, never the password, is on disk.
    assert b"s3cret" not in (data / "chargebrain.sqlite").read_bytes()


def test_admin_password_file_at_start(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file")
    proc, port = start(tmp_path / "data", "0.0.0.0", 0, "--admin-password-file", str(pw_file))
    try:
        assert status(port, "/cnf?cmd=get_users") == 401
        assert status(port, "/cnf?cmd=get_users", "from-file") == 200
    finally:
        stop(proc)
    empty = tmp_path / "empty"
    empty.write_text("")
    for bad in (str(empty), str(tmp_path / "missing")):
        out = run("run", "--data", str(tmp_path / "data2"), "--http",
                  f"0.0.0.0:{free_ports(1)}", "--modbus-port", "0", "--ocpp-port", "0",
                  "--admin-password-file", bad)
        assert out.returncode != 0 and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_set_password_refuses_empty(tmp_path: Path) -> None:
    out = run("set-password", "--data", str(tmp_path / "data"), "--stdin", stdin="\n")
    assert out.returncode != 0 and "empty" in out.stderr and "Traceback" not in out.stderr


def test_the_password_stays_while_listening_beyond_loopback(tmp_path: Path) -> None:
    """change_admin_pwd with an empty new_pwd would make every client on the network
    admin: refused on 0.0.0.0, allowed only with --allow-insecure."""
    pw_file = tmp_path / "pw"
    pw_file.write_text("s3cret")
    remove = "/cnf?cmd=change_admin_pwd&old_pwd=s3cret&new_pwd="
    proc, port = start(tmp_path / "a", "0.0.0.0", 0, "--admin-password-file", str(pw_file))
    try:
        assert status(port, remove, "s3cret") == 403
        assert status(port, "/cnf?cmd=get_users") == 401
        assert status(port, "/cnf?cmd=get_users", "s3cret") == 200
    finally:
        stop(proc)
    proc, port = start(tmp_path / "b", "0.0.0.0", 0, "--admin-password-file", str(pw_file),
                       "--allow-insecure")
    try:
        assert status(port, remove, "s3cret") == 200
        assert status(port, "/cnf?cmd=get_users") == 200
    finally:
        stop(proc)
