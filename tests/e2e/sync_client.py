"""A blocking HTTP client for tests that drive chargebrain as a separate process."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from typing import Any

from tests.conftest import Process


def request(p: Process, query: str, body: Any = None) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else (
        json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(p.url(query), data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def get(p: Process, query: str, body: Any = None) -> Any:
    status, text = request(p, query, body)
    assert status == 200, (query, text)
    return json.loads(text)


def device(p: Process, dev_id: str) -> dict[str, Any]:
    info = get(p, "cmd=get_dev_info")
    return next(d for d in info["devices"] if d["dev_id"] == dev_id)  # type: ignore[no-any-return]


def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def integrity(p: Process) -> str:
    db = sqlite3.connect(p.data / "chargebrain.sqlite")
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()
