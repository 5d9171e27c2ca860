"""Charging schedules survive a restart and kill -9 of the process (SQLite); temporary
ones (tmp=1) do not, and the stored ones are in force again."""

from __future__ import annotations

import signal

from tests.conftest import Process
from tests.e2e.sync_client import device, get, integrity, until

SITE = {"cplan": [{"dc": False, "st": 0, "dr": 1440, "lm": 20000}]}
EVSE = {"cplan": [{"dc": False, "st": 0, "dr": 1440, "lm": 7000}]}


def test_schedules_are_kept_unless_temporary(process: Process) -> None:
    process.start()
    get(process, "cmd=set_params", {"devices": [
        {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Sim-E2", "used_phases": 7}]})
    assert get(process, "cmd=set_cplan&dev_id=$G", SITE) == "ok"
    assert get(process, "cmd=set_cplan&dev_id=E2", EVSE) == "ok"
    # Temporary: no limit for E2, and 10 A for the site, until the next start.
    assert get(process, "cmd=set_cplan&dev_id=E2&tmp=1", {"cplan": []}) == "ok"
    assert get(process, "cmd=set_cplan&dev_id=$G&tmp=1", {"cplan": [
        {"st": 0, "dr": 1440, "lm": 10000}]}) == "ok"
    assert get(process, "cmd=get_cplan&dev_id=$G")["limit"] == 10000
    assert process.proc is not None
    process.proc.send_signal(signal.SIGKILL)
    process.proc.wait(timeout=10)
    process.proc = None
    assert integrity(process) == "ok"

    process.start()
    assert get(process, "cmd=get_cplan&dev_id=$G") == {
        "dev_id": "$G", "cplan": SITE["cplan"], "tmp": False, "limit": 20000}
    assert get(process, "cmd=get_cplan&dev_id=E2")["limit"] == 7000
    get(process, "cmd=set_ajax_evse&dev_id=E2&state=3&current=0,0,0")
    until(lambda: device(process, "E2")["evse"]["current"] == 7000)
    assert device(process, "E2")["reason"] == "charging schedule"
    assert process.stop() == 0
