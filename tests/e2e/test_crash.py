"""kill -9 in the middle of things: acknowledged users and transactions survive, the
database stays sound, a session still plugged in is continued after the restart."""

from __future__ import annotations

import csv
import io
import json
import signal
import threading
import urllib.error
from typing import Any

from tests.conftest import Process
from tests.e2e.sync_client import device, get, integrity, request, until


def transactions(p: Process) -> list[dict[str, str]]:
    status, text = request(p, "cmd=get_transactions")
    assert status == 200, text
    return list(csv.DictReader(io.StringIO(text)))


def push(p: Process, dev_id: str, state: int, energy: int) -> dict[str, Any]:
    query = f"cmd=set_ajax_evse&dev_id={dev_id}&state={state}&total_energy={energy}"
    get(p, query)
    until(lambda: device(p, dev_id)["state"] == state)
    return get(p, query)  # type: ignore[no-any-return]


def test_kill_during_transactions(process: Process) -> None:
    process.start()
    for dev_id in ("E2", "E3"):
        get(process, "cmd=set_params", {"devices": [
            {"dev_type": "evse_ajax", "dev_id": dev_id, "name": f"Sim-{dev_id}"}]})
    user = get(process, "cmd=set_user", {"name": "kim", "dev_ids": ["E2"],
                                         "rfids": [{"id": "2468"}]})
    assert push(process, "E2", 2, 1000)["charging_current"] == 0
    push(process, "E3", 2, 500)  # no users at E3: charges freely
    assert get(process, "cmd=enter_rfid&rfid=2468")["dev_id"] == "E2"
    assert push(process, "E2", 3, 1200)["charging_current"] > 0
    get(process, "cmd=override_device&dev_id=E2&mamps=7000")
    until(lambda: device(process, "E2")["user_id"] == user["id"])
    assert process.proc is not None
    process.proc.send_signal(signal.SIGKILL)
    process.proc.wait(timeout=10)
    process.proc = None
    assert integrity(process) == "ok"

    process.start()
    # E2 still has its car: the transaction goes on, still authorised, with its limit.
    orders = push(process, "E2", 3, 1800)
    assert orders["charging_enabled"] is True and orders["charging_current"] == 7000
    e2 = device(process, "E2")
    assert e2["user_id"] == user["id"] and e2["ta_en"] == 800 and e2["ov_cur"] == 7000
    # E3's car left while we were down.
    push(process, "E3", 1, 500)
    push(process, "E2", 1, 2500)
    rows = {r["dev_id"]: r for r in transactions(process)}
    assert len(rows) == 2
    e2_row, e3_row = rows["E2"], rows["E3"]
    assert e2_row["user_id"] == user["id"] and e2_row["rfid"] == "2468"
    assert (e2_row["start_wh"], e2_row["end_wh"], e2_row["energy_wh"]) == ("1000", "2500",
                                                                         "1500")
    assert e2_row["end"] != ""
    assert e3_row["end"] != "" and e3_row["user_id"] == ""
    assert e3_row["start_wh"] == "500"
    assert process.stop() == 0
    assert integrity(process) == "ok"


def test_kill_while_users_are_written(process: Process) -> None:
    process.start()
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                status, text = request(process, "cmd=set_user", {
                    "name": f"user {n}", "rfids": [{"id": f"card-{n}"}]})
            except (OSError, urllib.error.URLError):
                return
            if status == 200:
                acknowledged.append(json.loads(text)["id"])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        until(lambda: len(acknowledged) >= 40, timeout=30)
        assert process.proc is not None
        process.proc.send_signal(signal.SIGKILL)
        process.proc.wait(timeout=10)
        process.proc = None
    finally:
        stop.set()
        thread.join(timeout=10)
    saved = list(acknowledged)
    assert integrity(process) == "ok"

    process.start()
    users = {u["id"]: u for u in get(process, "cmd=get_users")}
    missing = [uid for uid in saved if uid not in users]
    assert not missing
    assert len(users) in (len(saved), len(saved) + 1)  # one may have been written unanswered
    for uid in saved:
        assert users[uid]["rfids"][0]["id"].startswith("card-")
    # The directory is consistent: every card still belongs to exactly one user.
    cards = [c["id"] for u in users.values() for c in u["rfids"]]
    assert len(cards) == len(set(cards))
    assert process.stop() == 0
