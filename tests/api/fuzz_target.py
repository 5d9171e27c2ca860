"""What the HTTP fuzzer runs against and what it checks after every request.

A target is chargebrain on a real socket: the whole app in a thread of this process (its
own event loop), or the real process. Requests go over a fresh connection each, from a
new loopback address each (127.x.y.z), so failed attempts of one request do not slow the
next one down. After each answer `Fuzzer.send` checks: no 5xx; exactly one Content-Type,
`application/json` and strict JSON (no NaN) except for the commands documented to answer
CSV or text, and those only with 200; every error an object with a non-empty "error"
(or the documented modbus size string); a 401 asks for Basic credentials; no traceback
and no error in the log; and, for a refused request, that the configuration (devices,
persisted parameters, users, CM variable definitions, meter definitions, licence) is
what it was before.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from chargebrain.api import auth
from chargebrain.api.shapes.site import HARDWARE_KEYS, SHOWN_PERSISTED_KEYS
from chargebrain.app import App, Config
from tests.api.fuzz_requests import ADMIN_PASSWORD, TEXT_COMMANDS, FuzzRequest, render
from tests.conftest import ROOT, Process

T = TypeVar("T")
#: Requests sent and their statuses, over every fuzz test of this run (printed at the end).
STATS: Counter[str] = Counter()
BAD_SIZE = "bad modbus register size"
#: The commands that show state and need no parameter.
VIEWS = ("get_dev_info", "get_params", "get_dev_types", "get_devices", "get_users",
         "get_cm_vars", "get_meter_defs", "get_license", "get_transactions", "get_diag_log")
PERSISTED_SITE_KEYS = (*SHOWN_PERSISTED_KEYS, *HARDWARE_KEYS)


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def exchange(port: int, data: bytes, source: str = "127.0.0.1") -> Answer | None:
    """Send `data` on a new connection (while reading: the server may answer a body over
    the limit before it has all of it) and read the answer; None if there was none."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60,
                                    source_address=(source, 0))

    def send() -> None:
        with contextlib.suppress(OSError):  # answered and closed before all was sent
            sock.sendall(data)

    sender = threading.Thread(target=send) if len(data) > 256 * 1024 else None
    if sender is not None:
        sender.start()
    else:
        send()
    chunks = []
    try:
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    finally:
        if sender is not None:
            sender.join()
        sock.close()
    raw = b"".join(chunks)
    if not raw:
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    return Answer(int(lines[0].split()[1]), headers, body)


def admin_header(password: str) -> bytes:
    token = base64.b64encode(f"admin:{password}".encode())
    return b"Authorization: Basic " + token + b"\r\n"


def strict_json(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} in an answer")

    return json.loads(body.decode("utf-8"), parse_constant=refuse)


class Target(Protocol):
    port: int
    password: str | None

    def restore_password(self) -> None: ...
    def log_problems(self) -> list[str]: ...


class _Problems(logging.Handler):
    """Log records no request may cause: errors, and anything with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.found.append(f"{record.levelname} {record.name}: {record.getMessage()}"
                              f"{' (with traceback)' if record.exc_info else ''}")


class ThreadTarget:
    """The whole app in this process, in a thread with its own event loop."""

    def __init__(self, data: Path, password: str | None) -> None:
        self.port = 0  # the system picks it (no probe-then-bind race)
        self.password = password
        self.loop = asyncio.new_event_loop()
        self.problems = _Problems()
        logging.getLogger().addHandler(self.problems)
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                # SQLite wants the thread that opened it: build the app in its thread.
                self.app = App(Config(data, "127.0.0.1", 0, 0))
                self._set_password()
                self.loop.run_until_complete(self.app.start())
                self.port = self.app.http_bound_port
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="chargebrain", daemon=True)
        self.thread.start()
        started.wait(60)
        if failure:
            raise failure[0]

    def _set_password(self) -> None:
        auth.set_admin_password(self.app.store, self.password or "")
        auth.forget_verified()

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapped() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(60)

    def restore_password(self) -> None:
        self.call(self._set_password)

    def log_problems(self) -> list[str]:
        found, self.problems.found = self.problems.found, []
        return found

    def close(self) -> None:
        logging.getLogger().removeHandler(self.problems)
        asyncio.run_coroutine_threadsafe(self.app.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
        self.loop.close()


class ProcessTarget:
    """chargebrain as its own process (the `process` fixture stops it), with the admin
    password set at start."""

    def __init__(self, p: Process) -> None:
        self.p = p
        self.port = p.http_port
        self.password: str | None = ADMIN_PASSWORD
        self.password_file = p.data.parent / "admin-password"
        self.password_file.write_text(ADMIN_PASSWORD + "\n")
        p.start("--admin-password-file", str(self.password_file))
        self.log_seen = 0

    def restore_password(self) -> None:
        subprocess.run([sys.executable, "-m", "chargebrain", "set-password", "--data",
                        str(self.p.data), "--password-file", str(self.password_file)],
                       check=True, cwd=ROOT, capture_output=True)
        # The server reads the stored hash again within a second: until then the password
        # the fuzzer set counts. (Each try from another address: no failures pile up.)
        request = (b"GET /cnf?cmd=get_devices HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   + admin_header(ADMIN_PASSWORD) + b"\r\n")
        for attempt in range(200):
            answer = exchange(self.port, request, f"127.0.2.{attempt + 1}")
            if answer is not None and answer.status == 200:
                return
            time.sleep(0.05)
        raise AssertionError("the admin password did not come back")

    def log_problems(self) -> list[str]:
        assert self.p.log_path is not None
        with self.p.log_path.open("rb") as log:
            log.seek(self.log_seen)
            new = log.read()
        self.log_seen += len(new)
        return [line for line in new.decode("utf-8", "replace").splitlines()
                if "Traceback" in line or " ERROR " in line or " CRITICAL " in line]


class Fuzzer:
    """Sends requests to a target and checks every answer (see the module docstring).

    The configuration is compared for every `check_every`-th refused request (1: all);
    a snapshot is taken before it when an accepted request may have changed it."""

    def __init__(self, target: Target, check_every: int = 1) -> None:
        self.target = target
        self.check_every = max(1, check_every)
        self.refusals = 0
        self.sources = 1 << 8
        self.known: dict[str, Any] | None = None

    def admin_headers(self) -> bytes:
        return b"" if self.target.password is None else admin_header(self.target.password)

    def get(self, query: str) -> Any:
        data = (b"GET /cnf?" + query.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + self.admin_headers() + b"\r\n")
        answer = exchange(self.target.port, data)
        assert answer is not None and answer.status == 200, (query, answer)
        return strict_json(answer.body)

    def post(self, query: str, body: bytes) -> Any:
        data = (b"POST /cnf?" + query.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
                + self.admin_headers() + b"\r\n" + body)
        answer = exchange(self.target.port, data)
        assert answer is not None and answer.status == 200, (query, body, answer)
        return strict_json(answer.body)

    def snapshot(self) -> dict[str, Any]:
        params = self.get("cmd=get_params")
        return {
            "devices": self.get("cmd=get_devices"),
            "params": {k: params[k] for k in PERSISTED_SITE_KEYS},
            "users": sorted(self.get("cmd=get_users"), key=lambda u: str(u["id"])),
            "cm_vars": sorted((v["name"], v["expr"], v["tmp"])
                              for v in self.get("cmd=get_cm_vars")["vars"]),
            "meter_defs": self.get("cmd=get_meter_defs"),
            "license": self.get("cmd=get_license"),
        }

    def _source(self) -> str:
        self.sources = self.sources + 1 if self.sources < (1 << 24) - 2 else 1 << 8
        n = self.sources
        return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    def send(self, req: FuzzRequest) -> Answer:
        check = self.check_every == 1 or (self.refusals + 1) % self.check_every == 0
        if check and self.known is None:
            self.known = self.snapshot()
        answer = exchange(self.target.port, render(req), self._source())
        where = req.describe()
        assert answer is not None, f"no answer to {where}"
        STATS["requests"] += 1
        STATS[f"status {answer.status}"] += 1
        STATS[f"command {req.command}"] += 1
        assert answer.status < 500, f"{answer.status} {answer.body[:500]!r} for {where}"
        self._check_form(req, answer, where)
        problems = self.target.log_problems()
        assert not problems, f"{problems} after {where}"
        if answer.status == 200:
            if req.command == "change_admin_pwd":
                self.target.restore_password()
            self.known = None  # it may have changed the configuration
            self.read_views(where)
        elif answer.status >= 400:
            self.refusals += 1
            if check:
                assert self.known is not None
                assert self.snapshot() == self.known, f"a refused request changed: {where}"
                STATS["refusals compared"] += 1
        return answer

    def read_views(self, after: str) -> None:
        """Every command that shows state, as the admin: an accepted request must leave
        nothing they fail on (a pushed reading of 1e308 W did)."""
        for cmd in VIEWS:
            data = (b"GET /cnf?cmd=" + cmd.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: close\r\n" + self.admin_headers() + b"\r\n")
            answer = exchange(self.target.port, data)
            assert answer is not None and answer.status == 200, (
                f"{cmd}: {answer} after {after}")
            self._check_form(FuzzRequest("GET", cmd, (), b"", None, "admin", "plain"),
                             answer, f"{cmd} after {after}")
        problems = self.target.log_problems()
        assert not problems, f"{problems} after {after}"

    @staticmethod
    def _check_form(req: FuzzRequest, answer: Answer, where: str) -> None:
        ctypes = answer.header("Content-Type")
        assert len(ctypes) == 1, f"Content-Type {ctypes} for {where}"
        if ctypes[0] != "application/json":
            expected = TEXT_COMMANDS.get(req.command or "")
            assert answer.status == 200 and ctypes[0] == expected and req.path in (
                b"/cnf", b"//cnf"), (
                f"{answer.status} {ctypes[0]} for {where}")
            answer.body.decode("utf-8")
            return
        value = strict_json(answer.body)
        if answer.status >= 400:
            if value == BAD_SIZE and answer.status == 400:
                return
            assert isinstance(value, dict) and isinstance(value.get("error"), str) and (
                value["error"]), f"{answer.status} {value!r} for {where}"
        if answer.status == 401:
            assert answer.header("WWW-Authenticate") == ['Basic realm="chargebrain"'], where


# --- the configuration the fuzzer starts from --------------------------------------------

FUZZ_DEFINITION = (b'{"rtype": 1, "dev_type": "fuzzdef", "name": "Fuzz meter",'
                   b' "power_w": {"fixed": 1500}, "current_l1": {"expr": "power_w / 230"},'
                   b' "import_wh": {"fixed": 1000}}')


def set_up(fuzzer: Fuzzer) -> None:
    """Devices, users with cards, CM variables and a meter definition for requests to name."""
    fuzzer.post("cmd=set_meter_def", FUZZ_DEFINITION)
    for dev in ({"dev_type": "evse_ajax", "dev_id": "E2", "name": "Sim-E2"},
                {"dev_type": "evse_group", "dev_id": "E5", "max_charging_cur": 20000},
                {"dev_type": "evse_ajax", "dev_id": "E3", "group": 5},
                {"dev_type": "meter_ajax", "dev_id": "M3", "role": 1},
                {"dev_type": "meter_fuzzdef", "dev_id": "M4", "address": "127.0.0.1:9"},
                {"dev_type": "meter_expression", "dev_id": "M5", "expr": "M3.power_w / 2"}):
        fuzzer.post("cmd=set_device", json.dumps({"devices": [dev]}).encode())
    for user in ({"id": "1000000001", "name": "fuzz one", "dev_ids": ["E1", "E2"],
                  "rfids": [{"id": "4711"}, {"id": "CARD2", "ac_ovch": True}]},
                 {"id": "fuzz_user", "name": "two", "dev_ids": ["E3"],
                  "rfids": [{"id": "0815"}], "charging_rules": [{"mode": 1, "current": 50}]}):
        fuzzer.post("cmd=set_user", json.dumps(user).encode())
    fuzzer.post("cmd=set_cm_vars", b'{"vars": [{"name": "a", "expr": 2},'
                                   b' {"name": "Pv", "expr": "CM.a * 1000"}]}')
    fuzzer.post("cmd=set_ajax_evse&dev_id=E2", b'{"state": 3, "current": [6000, 6000, 0]}')
    fuzzer.post("cmd=set_ajax_meter&dev_id=M3", b'{"power_w": 2000}')
