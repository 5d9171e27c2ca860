"""The HTTP API under a fuzzer: every command of the table, GET and POST, hostile
parameters and bodies (tests/api/fuzz_requests.py), as anonymous callers and as the admin,
with and without an admin password, in this process and against the real process.

Every answer must be a 4xx JSON error or a documented answer, never a 5xx; nothing may
put a traceback or an error into the log; a refused request must leave the configuration
as it was (tests/api/fuzz_target.py checks all of it after every request).

`make test` runs CHARGEBRAIN_FUZZ_REQUESTS (default 1500) requests, derandomized, under a
minute; `make fuzz` runs 20,000 or more with a random seed and prints the counts.
CHARGEBRAIN_FUZZ_CHECK_EVERY=N compares the configuration for every N-th refusal only.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, seed, settings

from chargebrain.api.commands import COMMANDS
from tests.api.fuzz_requests import ADMIN_PASSWORD, FuzzRequest, read_parameters, requests
from tests.api.fuzz_target import STATS, Fuzzer, ProcessTarget, ThreadTarget, set_up
from tests.conftest import Process

REQUESTS = int(os.environ.get("CHARGEBRAIN_FUZZ_REQUESTS", "1500"))
RANDOM = os.environ.get("CHARGEBRAIN_FUZZ_RANDOM", "") == "1"
CHECK_EVERY = int(os.environ.get("CHARGEBRAIN_FUZZ_CHECK_EVERY", "1"))
ALL_AUTHS = ("none", "admin", "wrong", "user", "garbage", "bearer", "latin")
#: Of all requests: 40 % without an admin password (every caller is the admin), 40 % with
#: one (anonymous callers, wrong and broken credentials), 20 % to the real process.
SHARES = {"open": 0.4, "password": 0.4, "process": 0.2}


def fuzz(fuzzer: Fuzzer, examples: int, commands: tuple[str, ...],
         auths: tuple[str, ...] = ALL_AUTHS) -> None:
    """`examples` requests to `commands`: the same ones every run (a seed per list of
    commands), or new ones with CHARGEBRAIN_FUZZ_RANDOM=1."""
    @settings(max_examples=max(1, examples), database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(requests(commands, auths))
    def run(req: FuzzRequest) -> None:
        fuzzer.send(req)

    if not RANDOM:
        run = seed(zlib.crc32(" ".join(commands).encode()))(run)
    run()


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    started = time.monotonic()
    yield
    taken = time.monotonic() - started
    statuses = sorted((k.split()[1], v) for k, v in STATS.items() if k.startswith("status "))
    errors_5xx = sum(v for k, v in statuses if k.startswith("5"))
    lines = [f"fuzz: {STATS['requests']} requests in {taken:.0f} s, 5xx: {errors_5xx}, "
             f"refusals with the configuration compared: {STATS['refusals compared']}",
             "fuzz: statuses " + ", ".join(f"{k}: {v}" for k, v in statuses)]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)


@pytest.fixture(scope="module")
def open_fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    target = ThreadTarget(tmp_path_factory.mktemp("fuzz-open") / "data", None)
    try:
        fuzzer = Fuzzer(target, CHECK_EVERY)
        set_up(fuzzer)
        yield fuzzer
    finally:
        target.close()


@pytest.fixture(scope="module")
def password_fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    target = ThreadTarget(tmp_path_factory.mktemp("fuzz-password") / "data", ADMIN_PASSWORD)
    try:
        fuzzer = Fuzzer(target, CHECK_EVERY)
        set_up(fuzzer)
        yield fuzzer
    finally:
        target.close()


def test_the_parameters_each_command_reads_are_found() -> None:
    """The fuzzer finds parameter names in the commands' source; if a change of style hid
    them, every request would carry random names only."""
    found = read_parameters()
    assert set(found) == set(COMMANDS)
    for cmd, names in {"modbus": {"device", "read", "count", "write", "value", "values"},
                       "set_cm_vars": {"clear", "tmp", "name", "val", "expr"},
                       "override_device": {"dev_id", "flags", "mamps", "rfid"},
                       "get_user": {"id", "user_id"}, "accept_license": {"acc"},
                       "set_ajax_meter": {"dev_id", "power_w", "current", "voltage"}}.items():
        assert names <= found[cmd], (cmd, names - found[cmd])


#: Each command gets its share of the in-process requests (a new one automatically).
PER_COMMAND = max(3, round(REQUESTS * SHARES["open"] / len(COMMANDS)))


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_no_password_every_caller_is_admin(open_fuzzer: Fuzzer, cmd: str) -> None:
    fuzz(open_fuzzer, PER_COMMAND, (cmd,))


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_with_a_password_anonymous_and_wrong_credentials(
    password_fuzzer: Fuzzer, cmd: str
) -> None:
    fuzz(password_fuzzer, PER_COMMAND, (cmd,))


def test_the_real_process(process: Process) -> None:
    """All commands mixed, against `chargebrain run` with an admin password."""
    fuzzer = Fuzzer(ProcessTarget(process), CHECK_EVERY)
    set_up(fuzzer)
    fuzz(fuzzer, round(REQUESTS * SHARES["process"]), tuple(sorted(COMMANDS)))
    assert "Traceback" not in process.output()
