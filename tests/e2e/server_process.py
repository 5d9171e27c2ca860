"""chargebrain run as a process for tests that need its exact command line and output."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import ROOT, free_ports


class Server:
    """chargebrain run … as a process; the HTTP port and scheme it reported."""

    def __init__(self, data: Path, *args: str, modbus: bool = True) -> None:
        """Start `chargebrain run --data DATA ARGS…` (with Modbus TCP on free ports, or
        off) and wait until it says where it listens; its output is read in a thread, so
        no line waits unseen in a buffer."""
        self.modbus_port = free_ports(3) if modbus else 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chargebrain", "run", "--data", str(data),
             "--modbus-port", str(self.modbus_port), "--ocpp-port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        found = self._wait_for(r"HTTP API on (https?)://\S+?:(\d+)/cnf")
        self.scheme, self.http_port = found.group(1), int(found.group(2))
        if modbus:
            self._wait_for(r"Modbus TCP on ")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put("")

    def _wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if not line:
                raise AssertionError(f"exited: {''.join(self.lines)}")
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        self.proc.kill()
        raise AssertionError(f"no {pattern!r} in time: {''.join(self.lines)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(timeout=15) == 0
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
