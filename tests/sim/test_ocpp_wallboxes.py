"""Simulated OCPP wallboxes on a simulated site: they connect to chargebrain's central
system over real loopback sockets, report late and coarsely, ramp to their profile's
limit, and drop their connection now and then; the manager keeps them within the
site's limits all the same."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from chargebrain.sim.manager_policy import ManagerPolicy
from chargebrain.sim.metrics import compute_metrics
from chargebrain.sim.runner import run_scenario
from chargebrain.sim.scenario import (
    OcppBoxSpec,
    Scenario,
    ScenarioError,
    json_schema,
    scenario_from_dict,
)


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logger = logging.getLogger("chargebrain")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def site(duration: str = "20m", **ocpp: object) -> Scenario:
    box: dict[str, object] = {"id": "A", "interface": "ocpp"}
    if ocpp:
        box["ocpp"] = ocpp
    return scenario_from_dict({
        "name": "ocpp", "duration": duration, "cycle_s": 1,
        "site": {"max_current_ma": 32000, "reserve_ma": 2000},
        "evses": [box, {"id": "B", "phase_rotation": 120}],
        "cars": [{"id": "a", "evse": "A", "arrive": 0, "leave": duration, "need_kwh": 30},
                 {"id": "b", "evse": "B", "arrive": 60, "leave": duration, "need_kwh": 30}],
        "household": {"base_w": [["00:00", 3000]], "noise_pct": 5},
    })


def test_the_format_takes_ocpp_wallboxes_and_how_they_behave() -> None:
    sc = site(ramp_s=2, drop_every_s="1h", drop_for_s="30s")
    evse = sc.site.evse("A")
    assert evse.interface == "ocpp"
    assert evse.ocpp == OcppBoxSpec(ramp_s=2.0, drop_every_s=3600, drop_for_s=30)
    assert site().site.evse("A").ocpp == OcppBoxSpec()
    assert sc.site.evse("B").ocpp is None
    with pytest.raises(ScenarioError, match=r"evses\[0\]\.ocpp.*only for an EVSE"):
        scenario_from_dict({"name": "x", "duration": "1h", "site": {"max_current_ma": 32000},
                            "evses": [{"id": "A", "ocpp": {"ramp_s": 1}}]})
    defs = json_schema()["$defs"]
    assert "ocpp" in defs["Interface"]["enum"] and "drop_every_s" in defs[
        "OcppBoxShape"]["properties"]


def test_an_ocpp_wallbox_is_managed_like_an_http_input_evse() -> None:
    sc = site()
    with ManagerPolicy.for_scenario(sc) as policy:
        run = run_scenario(sc, policy)
        box = policy.ocpp.boxes["A"]
        rt = policy.manager.devices[policy.device_id("A")]
        assert rt.config.dev_type == "evse_ocpp" and rt.config.address == box.cp_id
        assert box.connects == 1 and not rt.status.com_err
        assert box.profiles  # the manager's limit reached it as a charging profile
        rows = policy.store.query("SELECT rfid, open FROM transactions WHERE dev_id = ?",
                                  (rt.dev_id,))
        assert rows == [("SIM-FREE", 1)]  # the wallbox's own transaction
    plain = replace(sc, site=replace(sc.site, evses=tuple(
        replace(e, interface="http", ocpp=None) for e in sc.site.evses)))
    with ManagerPolicy.for_scenario(plain) as policy:
        http_run = run_scenario(plain, policy)
    metrics = compute_metrics(run)
    assert metrics.misbehaviour_excursions == 0
    for ours, theirs in zip(run.sessions, http_run.sessions, strict=True):
        assert ours.delivered_kwh == pytest.approx(theirs.delivered_kwh, rel=0.1)
    # The wallbox ramps: no jump from nothing to its full offer within one second.
    drawn = np.frombuffer(run.sessions[0].drawn_ma, dtype=np.float64)
    assert np.diff(drawn[:30]).max() < 16000


def test_a_wallbox_that_drops_its_connection_is_counted_at_its_worst_and_comes_back() -> None:
    sc = site("30m", drop_every_s="5m", drop_for_s="30s")
    sc = replace(sc, seed=3)
    with ManagerPolicy.for_scenario(sc) as policy:
        run = run_scenario(sc, policy)
        box = policy.ocpp.boxes["A"]
        status = policy.manager.devices[policy.device_id("A")].status
        assert box.connects > 2 and status.com_errors >= box.connects - 1
        assert box.connected
    assert compute_metrics(run).misbehaviour_excursions == 0
    drawn = np.frombuffer(run.sessions[0].drawn_ma, dtype=np.float64)
    assert drawn[-300:].max() > 6000  # charging at the end


def test_the_evse_offline_fault_cuts_the_wallbox_off() -> None:
    sc = scenario_from_dict({
        "name": "ocpp", "duration": "15m", "cycle_s": 1,
        "site": {"max_current_ma": 32000, "reserve_ma": 2000},
        "evses": [{"id": "A", "interface": "ocpp"}],
        "cars": [{"id": "a", "evse": "A", "arrive": 0, "leave": "15m", "need_kwh": 30}],
        "faults": [{"type": "evse_offline", "evse": "A", "from": "3m", "to": "6m"}],
    })
    with ManagerPolicy.for_scenario(sc) as policy:
        run_scenario(sc, policy)
        box = policy.ocpp.boxes["A"]
        assert box.connects == 2 and box.connected
        assert policy.manager.devices[policy.device_id("A")].status.com_errors >= 2
