"""Random configuration changes against the real process, with SIGTERM and SIGKILL
restarts in between: after every restart, the configuration is what was acknowledged
before it, and every device is in get_dev_info.

A hypothesis state machine drives chargebrain as a separate process over HTTP: devices
of several kinds created, changed, moved between groups (also groups made after their
members), attached and deleted; site parameters; users with cards; CM variables (some
temporary); meter definitions uploaded and deleted. A refused request must change
nothing. `CHARGEBRAIN_STATEFUL_EXAMPLES` and `CHARGEBRAIN_STATEFUL_STEPS` make the run
longer (`make fuzz`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from chargebrain.api.shapes.site import SHOWN_PERSISTED_KEYS
from tests.conftest import Process, free_ports
from tests.e2e.sync_client import get, request

EXAMPLES = int(os.environ.get("CHARGEBRAIN_STATEFUL_EXAMPLES", "8"))
STEPS = int(os.environ.get("CHARGEBRAIN_STATEFUL_STEPS", "40"))

EVSE_IDS = ("E1", "E2", "E3", "E4")
GROUP_IDS = ("E5", "E6", "E7")
METER_IDS = ("M1", "M3", "M4", "M5")
#: Restarts survived and machines run in this process (printed by `make fuzz`).
COUNTS = {"runs": 0, "restarts": 0}
PERSISTED_SITE_KEYS = SHOWN_PERSISTED_KEYS
DEFS = {
    "meter_sm_a": b'{"rtype": 1, "mtype": 1, "name": "Meter A", "dev_type": "sm_a",'
                  b' "power_w": {"address": "/a", "query": "p"}}',
    "meter_sm_b": b'// with a comment\n{"rtype": 1, "mtype": 1, "name": "Meter B",'
                  b' "dev_type": "sm_b", "power_w": {"address": "/b", "query": "w"},}',
}

names = st.text(st.characters(min_codepoint=32, max_codepoint=0x17F,
                              blacklist_categories=("Cs",)), max_size=12)
currents = st.integers(0, 40).map(lambda a: a * 1000)


class ConfigurationSurvivesRestarts(RuleBasedStateMachine):
    users = Bundle("users")
    groups = Bundle("groups")  # numbers of groups made (some may be gone since)
    meters = Bundle("meters")  # ids of meters made (some may be gone since)

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="chargebrain-stateful-"))
        self.p = Process(self.dir / "data", free_ports(1), free_ports(3))
        try:
            self.p.start()
            self.acked = self.snapshot()
        except BaseException:
            self.teardown()
            raise
        self.stored_vars: dict[str, Any] = {}
        self.restarts = 0

    def teardown(self) -> None:
        COUNTS["runs"] += 1
        COUNTS["restarts"] += self.restarts
        if self.p.proc is not None and self.p.proc.poll() is None:
            self.p.proc.kill()
            self.p.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- what is compared ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        params = get(self.p, "cmd=get_params")
        return {
            "devices": get(self.p, "cmd=get_devices"),
            "params": {k: params[k] for k in PERSISTED_SITE_KEYS},
            "users": sorted(get(self.p, "cmd=get_users"), key=lambda u: u["id"]),
            "meter_defs": get(self.p, "cmd=get_meter_defs"),
        }

    def cm_vars(self) -> dict[str, Any]:
        return {v["name"]: v["expr"] for v in get(self.p, "cmd=get_cm_vars")["vars"]
                if not v["tmp"]}

    def send(self, query: str, body: Any = None) -> int:
        """A change: acknowledged, it becomes what must survive; refused, nothing changed."""
        status, text = request(self.p, query, body)
        assert status < 500, (query, body, text)
        now = self.snapshot()
        if status == 200:
            self.acked = now
        else:
            assert now == self.acked, (query, body, text)
        return status

    # --- changes ---------------------------------------------------------------------

    @rule(changes=st.fixed_dictionaries({}, optional={
        "max_total_current": currents, "reserve_current": st.integers(0, 5000),
        "min_pause_time": st.integers(0, 900), "lb_enabled": st.booleans(),
        "title": names, "disable_policy": st.sampled_from([-1, 0, 1]),
        "max_imbalance_cur": currents, "phase_switch_delay": st.integers(0, 600)}))
    def set_params(self, changes: dict[str, Any]) -> None:
        self.send("cmd=set_params", changes)

    @rule(dev_id=st.sampled_from(EVSE_IDS), name=names,
          group=st.one_of(st.just(0), groups), limit=currents,
          attach=st.one_of(st.just(""), meters), prio=st.integers(0, 3),
          enabled=st.sampled_from([0, 1]))
    def set_evse(self, dev_id: str, name: str, group: int, limit: int, attach: str,
                 prio: int, enabled: int) -> None:
        doc = {"dev_id": dev_id, "name": name, "group": group, "max_charging_cur": limit,
               "attach": attach, "prio": prio, "device_enabled": enabled}
        if dev_id != "E1":
            doc["dev_type"] = "evse_ajax"
        self.send("cmd=set_device", {"devices": [doc]})

    @rule(target=groups, dev_id=st.sampled_from(GROUP_IDS),
          parent=st.one_of(st.just(0), groups), limit=currents, name=names)
    def set_group(self, dev_id: str, parent: int, limit: int, name: str) -> int:
        self.send("cmd=set_params", {"devices": [
            {"dev_type": "evse_group", "dev_id": dev_id, "group": parent,
             "max_charging_cur": limit, "name": name}]})
        return int(dev_id[1:])

    @rule(target=meters, dev_id=st.sampled_from(METER_IDS),
          dev_type=st.sampled_from(["meter_ajax", "meter_ajax", *DEFS]),
          role=st.integers(0, 6), group=st.one_of(st.just(0), groups), name=names)
    def set_meter(self, dev_id: str, dev_type: str, role: int, group: int, name: str) -> str:
        doc = {"dev_id": dev_id, "role": role, "group": group, "name": name,
               "address": "127.0.0.1:9"}
        if dev_id != "M1":
            doc["dev_type"] = dev_type
        self.send("cmd=set_device", {"devices": [doc]})
        return dev_id

    @rule(dev_id=st.sampled_from(EVSE_IDS + GROUP_IDS + METER_IDS))
    def del_device(self, dev_id: str) -> None:
        self.send(f"cmd=del_device&dev_id={dev_id}")

    @rule(target=users, name=names, dev_ids=st.lists(st.sampled_from(EVSE_IDS), unique=True,
                                                     max_size=2),
          cards=st.lists(st.from_regex(r"[0-9A-F]{4,8}", fullmatch=True), unique=True,
                         max_size=2))
    def add_user(self, name: str, dev_ids: list[str], cards: list[str]) -> str:
        body = {"name": name, "dev_ids": dev_ids, "rfids": [{"id": c} for c in cards]}
        status, text = request(self.p, "cmd=set_user", body)
        assert status < 500, text
        if status == 200:
            self.acked = self.snapshot()
            return str(json.loads(text)["id"])
        assert self.snapshot() == self.acked
        return "0000000000"

    @rule(user=users, name=names, display=st.booleans())
    def change_user(self, user: str, name: str, display: bool) -> None:
        self.send("cmd=set_user", {"id": user, "name": name, "display": display})

    @rule(user=consumes(users))
    def del_user(self, user: str) -> None:
        self.send(f"cmd=del_user&id={user}")

    @rule(name=st.sampled_from(["a", "b", "Pv", "_flag3"]),
          expr=st.one_of(st.integers(-100, 100), st.sampled_from(
              ["CM.a + 1", "M1.power_w / 2", "max(1, 2", "E2.power_w > 100"])),
          tmp=st.booleans(), clear=st.booleans())
    def set_cm_vars(self, name: str, expr: Any, tmp: bool, clear: bool) -> None:
        query = f"cmd=set_cm_vars&tmp={int(tmp)}&clear={int(clear and not tmp)}"
        status, text = request(self.p, query, {"vars": [{"name": name, "expr": expr}]})
        assert status < 500, text
        if status == 200 and not tmp:
            if clear:
                self.stored_vars = {}
            key = next((k for k in self.stored_vars if k.lower() == name.lower()), None)
            if key is not None:
                del self.stored_vars[key]
            self.stored_vars[name] = expr

    @rule(dev_type=st.sampled_from(sorted(DEFS)), upload=st.booleans())
    def meter_definition(self, dev_type: str, upload: bool) -> None:
        if upload:
            self.send("cmd=set_meter_def", DEFS[dev_type])
        else:
            self.send(f"cmd=del_meter_def&dev_type={dev_type}")

    @rule(sig=st.sampled_from([signal.SIGTERM, signal.SIGKILL]))
    def restart(self, sig: int) -> None:
        assert self.p.proc is not None
        self.p.proc.send_signal(sig)
        self.p.proc.wait(timeout=15)
        self.p.proc = None
        self.p.start()
        self.restarts += 1
        assert self.snapshot() == self.acked
        assert self.cm_vars() == self.stored_vars
        ids = {d["dev_id"] for d in get(self.p, "cmd=get_dev_info")["devices"]}
        assert ids == {d["dev_id"] for d in self.acked["devices"]}
        assert "Traceback" not in self.p.output(), self.p.output()

    @invariant()
    def alive(self) -> None:
        assert self.p.proc is not None and self.p.proc.poll() is None


ConfigurationSurvivesRestarts.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_configuration_survives_restarts = ConfigurationSurvivesRestarts.TestCase


def test_report_counts() -> None:
    """Say how many restarts the machine survived (run after it; shown with -s)."""
    print(f"stateful restarts: {COUNTS['restarts']} restarts in {COUNTS['runs']} runs")
