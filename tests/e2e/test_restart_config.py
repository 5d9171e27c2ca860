"""Configuration survives restarts whatever order it was built in, and a stored device
that cannot run as stored is kept as it is: shown, counted at its worst, never written
over, and running again as soon as what it lacks is there."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from typing import Any

import pytest

from tests.conftest import Process
from tests.e2e.sync_client import device, get, request, until

METER_DEF = b"""// a meter read over HTTP
{
  "rtype": 1, "mtype": 1, "name": "Restart test meter", "manufacturer": "Test",
  "dev_type": "restart_test",
  "power_w": {"address": "/data", "query": "p"},
}
"""


def restart(p: Process, sig: int) -> None:
    assert p.proc is not None
    p.proc.send_signal(sig)
    p.proc.wait(timeout=15)
    p.proc = None
    p.start()


def stored_rows(p: Process) -> dict[str, str]:
    db = sqlite3.connect(p.data / "chargebrain.sqlite")
    try:
        return {str(d): str(c) for d, c in db.execute("SELECT dev_id, config FROM devices")}
    finally:
        db.close()


def edit_row(p: Process, dev_id: str, **changes: Any) -> None:
    db = sqlite3.connect(p.data / "chargebrain.sqlite")
    try:
        doc = json.loads(db.execute("SELECT config FROM devices WHERE dev_id = ?",
                                    (dev_id,)).fetchone()[0])
        doc.update(changes)
        with db:
            db.execute("UPDATE devices SET config = ? WHERE dev_id = ?",
                       (json.dumps(doc), dev_id))
    finally:
        db.close()


def set_device(p: Process, doc: dict[str, Any]) -> Any:
    return get(p, "cmd=set_device", {"devices": [doc]})


def offer_settles_at(p: Process, dev_id: str, expected: int, at_least: bool = False) -> bool:
    """Push a car at `dev_id` that draws what it was last offered, until the offer is
    `expected` (or at least that much) (True) or stays elsewhere (False)."""
    offer = 0
    for _ in range(100):
        query = (f"cmd=set_ajax_evse&dev_id={dev_id}&state=3"
                 f"&current={offer},{offer},{offer}")
        offer = get(p, query)["charging_current"]
        if offer == expected or (at_least and offer >= expected):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_group_made_after_its_members_survives_a_restart(process: Process, sig: int) -> None:
    process.start()
    set_device(process, {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Carport"})
    set_device(process, {"dev_type": "evse_ajax", "dev_id": "E3", "name": "Garage 2"})
    set_device(process, {"dev_type": "evse_group", "dev_id": "E5", "name": "Garage",
                         "max_charging_cur": 20000})
    for dev_id in ("E2", "E3"):
        set_device(process, {"dev_id": dev_id, "group": 5})
    set_device(process, {"dev_id": "E1", "group": 5, "name": "Front", "max_charging_cur": 32000})
    before = get(process, "cmd=get_devices")

    restart(process, sig)
    assert get(process, "cmd=get_devices") == before
    info = {d["dev_id"]: d for d in get(process, "cmd=get_dev_info")["devices"]}
    assert set(info) == {d["dev_id"] for d in before}
    assert (info["E1"]["name"], info["E1"]["group"], info["E1"]["max_charging_cur"]) == (
        "Front", 5, 32000)
    assert info["E1"]["com_err"] is False
    # The members run in their group: pushes are taken and answered.
    orders = get(process, "cmd=set_ajax_evse&dev_id=E2&state=2&current=0,0,0")
    assert orders["device_enabled"] is True
    assert "no device" not in process.output()
    assert "not loaded" not in process.output()


def test_device_with_a_missing_group_is_kept_and_counted_at_its_worst(process: Process) -> None:
    process.start()
    get(process, "cmd=set_params", {"max_total_current": 32000, "disable_policy": 0})
    set_device(process, {"dev_type": "evse_group", "dev_id": "E5", "name": "Garage"})
    set_device(process, {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Carport",
                         "group": 5, "max_charging_cur": 20000})
    set_device(process, {"dev_type": "evse_ajax", "dev_id": "E3", "name": "Drive",
                         "max_charging_cur": 32000})
    set_device(process, {"dev_id": "E1", "device_enabled": 0})
    process.stop()
    # The data file now says E2 is in group 7, which does not exist (a damaged or
    # hand-edited configuration).
    edit_row(process, "E2", group=7)
    rows = stored_rows(process)

    process.start()
    assert stored_rows(process) == rows  # nothing written over
    e2 = next(d for d in get(process, "cmd=get_devices") if d["dev_id"] == "E2")
    assert (e2["group"], e2["name"], e2["max_charging_cur"]) == (7, "Carport", 20000)
    info = device(process, "E2")
    assert info["com_err"] is True and "group 7 does not exist" in info["last_error"]
    assert info["group"] == 7
    # Its pushes are refused with the reason.
    status, text = request(process, "cmd=set_ajax_evse&dev_id=E2&state=3")
    assert status == 400 and "group 7 does not exist" in json.loads(text)["error"]
    # It is counted as an EVSE that stopped answering: its whole maximum on every phase,
    # so a car at E3 gets what is left of the 32 A.
    get(process, "cmd=set_ajax_evse&dev_id=E3&state=2&current=0,0,0")
    assert offer_settles_at(process, "E3", 12000)
    assert "E2" in process.output() and "cannot run as stored" in process.output()

    # Once the group exists, E2 runs again as stored, and E3 may take more than the
    # 12 A that were left while E2 counted at its worst.
    set_device(process, {"dev_type": "evse_group", "dev_id": "E7", "name": "Back"})
    until(lambda: device(process, "E2")["last_error"] != "" and
          "group 7" not in device(process, "E2")["last_error"])
    orders = get(process, "cmd=set_ajax_evse&dev_id=E2&state=1")
    assert orders["device_enabled"] is True
    assert offer_settles_at(process, "E3", 20000, at_least=True)
    assert process.stop() == 0


def test_meter_whose_definition_is_missing_is_kept(process: Process) -> None:
    process.start()
    assert get(process, "cmd=set_meter_def", METER_DEF)["dev_type"] == "meter_restart_test"
    set_device(process, {"dev_type": "meter_restart_test", "dev_id": "M3", "name": "Heat pump",
                         "address": "127.0.0.1:9", "role": 1})
    before = get(process, "cmd=get_devices")
    process.stop()
    (process.data / "meterdefs" / "meter_restart_test.json").unlink()

    process.start()
    assert get(process, "cmd=get_devices") == before
    m3 = device(process, "M3")
    assert m3["com_err"] is True and "unknown dev_type" in m3["last_error"]
    # Every dev_type that get_dev_info shows is one that get_dev_types knows.
    types = get(process, "cmd=get_dev_types")
    assert "meter_restart_test" in types
    # No new device of the unknown type can be made.
    status, _ = request(process, "cmd=set_device", {"devices": [
        {"dev_type": "meter_restart_test", "dev_id": "M4", "address": "127.0.0.1:9"}]})
    assert status == 400
    # Uploading the definition again brings the meter back as stored.
    get(process, "cmd=set_meter_def", METER_DEF)
    until(lambda: "unknown dev_type" not in device(process, "M3")["last_error"])
    assert device(process, "M3")["model"] == "Restart test meter"
    assert get(process, "cmd=get_devices") == before
    assert process.stop() == 0


def test_unreadable_built_in_row_is_never_replaced_by_defaults(process: Process) -> None:
    process.start()
    set_device(process, {"dev_id": "E1", "name": "Front", "max_charging_cur": 32000})
    process.stop()
    db = sqlite3.connect(process.data / "chargebrain.sqlite")
    with db:
        db.execute("UPDATE devices SET config = ? WHERE dev_id = 'E1'", ("{not json",))
    db.close()

    process.start()
    assert stored_rows(process)["E1"] == "{not json"
    e1 = device(process, "E1")
    assert e1["com_err"] is True and "unreadable" in e1["last_error"]
    types = get(process, "cmd=get_dev_types")
    assert e1["dev_type"] in types
    process.stop()
    process.start()
    assert stored_rows(process)["E1"] == "{not json"
    # The admin can write the device anew.
    set_device(process, {"dev_id": "E1", "dev_type": "evse_powerbrain", "address": "evse:",
                         "name": "Front again"})
    assert device(process, "E1")["name"] == "Front again"
    assert process.stop() == 0


def test_cm_variable_that_no_longer_compiles_is_kept(process: Process) -> None:
    process.start()
    get(process, "cmd=set_cm_vars", {"vars": [{"name": "a", "expr": "1 + 2"},
                                              {"name": "b", "expr": 5}]})
    process.stop()
    db = sqlite3.connect(process.data / "chargebrain.sqlite")
    with db:
        db.execute("UPDATE cm_vars SET expr = 'max(1,' WHERE name = 'a'")
    db.close()

    process.start()
    answer = {v["name"]: v for v in get(process, "cmd=get_cm_vars")["vars"]}
    assert answer["a"]["expr"] == "max(1," and answer["a"]["val"] == 0
    assert "error" in answer["a"] and "error" not in answer["b"]
    # Changing another variable leaves it as stored; a restart keeps it.
    get(process, "cmd=set_cm_vars&name=b&val=6")
    process.stop()
    process.start()
    answer = {v["name"]: v for v in get(process, "cmd=get_cm_vars")["vars"]}
    assert answer["a"]["expr"] == "max(1," and answer["b"]["expr"] == 6
    # Setting it anew replaces it.
    get(process, "cmd=set_cm_vars&name=a&val=7")
    assert "error" not in {v["name"]: v for v in get(process, "cmd=get_cm_vars")["vars"]}["a"]
    assert process.stop() == 0


def test_site_limit_given_as_a_formula_counts_after_a_restart(process: Process) -> None:
    process.start()
    get(process, "cmd=set_params", {"max_total_current": "16000 + 9000"})
    until(lambda: get(process, "cmd=get_params")["max_total_power"] == 17250)
    process.stop()
    process.start()
    assert get(process, "cmd=get_params")["max_total_current"] == "16000 + 9000"
    # 25 A per phase on three phases at 230 V, evaluated from the stored formula.
    until(lambda: get(process, "cmd=get_params")["max_total_power"] == 17250)
    assert process.stop() == 0
