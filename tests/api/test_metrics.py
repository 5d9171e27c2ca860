"""`GET /metrics`, scraped with a real HTTP client and read with prometheus_client's own
parser: the manager's state, the request counters, the events counted per cycle, and
who may read it."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Running

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: aiohttp.ClientSession, site: Running,
                 headers: dict[str, str] | None = None) -> Samples:
    async with http.get(f"{site.base_url}/metrics", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    wanted = frozenset(labels.items())
    found = [v for (n, ls), v in samples.items() if n == metric and wanted <= ls]
    assert len(found) == 1, (metric, labels, found)
    return found[0]


async def call(http: aiohttp.ClientSession, site: Running, query: str,
               body: Any = None) -> Any:
    data = json.dumps(body) if body is not None else None
    async with http.post(site.url(query), data=data) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_the_state_of_the_site(running: Running, http: aiohttp.ClientSession) -> None:
    mgr = running.app.manager
    await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "meter_ajax", "dev_id": "M3", "name": "Grid", "role": 3}]})
    await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Carport"}]})
    await call(http, running, "cmd=set_ajax_meter&dev_id=M3&power_w=2760&current=8000,2000,2000")
    await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3&current=10000,10000,10000")
    await mgr.wait_cycle()
    await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3&current=10000,10000,10000")
    await mgr.wait_cycle()
    s = await scrape(http, running)
    assert value(s, "chargebrain_info", serial=mgr.serial) == 1
    assert value(s, "chargebrain_cycles_total") >= 2
    assert value(s, "chargebrain_cycle_duration_seconds") < 5
    assert value(s, "chargebrain_load_management_enabled") == 1
    assert value(s, "chargebrain_site_max_total_current_amperes") == 32.0
    assert value(s, "chargebrain_meter_power_watts", dev_id="M3", name="Grid") == 2760
    assert value(s, "chargebrain_meter_current_amperes", dev_id="M3", phase="L1") == 8.0
    assert value(s, "chargebrain_site_grid_power_watts") == 2760
    e2 = {"dev_id": "E2", "name": "Carport"}
    assert value(s, "chargebrain_evse_state", **e2) == 3
    assert value(s, "chargebrain_evse_current_amperes", phase="L2", **e2) == 10.0
    decision = mgr.devices["E2"].evse.decision
    assert decision is not None
    assert value(s, "chargebrain_evse_offered_current_amperes", **e2) == (
        decision.current_ma / 1000)
    assert value(s, "chargebrain_evse_limit_reason", **e2) == int(decision.lreason)
    assert value(s, "chargebrain_evse_pause_reason", **e2) == 0
    assert value(s, "chargebrain_evse_charging_enabled", **e2) == 1
    assert value(s, "chargebrain_evse_energy_watt_hours_total", **e2) >= 0
    # The built-in EVSE has no car: state 1; M2 (disabled) is there too.
    assert value(s, "chargebrain_evse_state", dev_id="E1") == 1
    assert value(s, "chargebrain_device_communication_error", dev_id="M3") == 0
    assert ("chargebrain_mqtt_connected", frozenset()) in s


async def test_communication_errors(running: Running, http: aiohttp.ClientSession) -> None:
    await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "meter_ajax", "dev_id": "M4", "name": "Never fed", "role": 1}]})
    await running.app.manager.wait_cycle()
    s = await scrape(http, running)
    labels = {"dev_id": "M4", "name": "Never fed"}
    assert value(s, "chargebrain_device_communication_error", **labels) == 1
    assert value(s, "chargebrain_device_communication_errors_total", **labels) == 1


async def test_requests_by_command_and_status(running: Running,
                                              http: aiohttp.ClientSession) -> None:
    for query in ("cmd=get_params", "cmd=get_params", "cmd=no_such", "cmd=set_params"):
        async with http.get(running.url(query)) as resp:
            await resp.read()
    async with http.get(f"{running.base_url}//cnf?cmd=get_dev_info") as resp:
        await resp.read()
    s = await scrape(http, running)
    assert value(s, "chargebrain_http_requests_total", command="get_params", status="200") == 2
    assert value(s, "chargebrain_http_requests_total", command="get_dev_info", status="200") == 1
    assert value(s, "chargebrain_http_requests_total", command="unknown", status="404") == 1
    assert value(s, "chargebrain_http_request_errors_total", command="unknown",
                 status="404") == 1
    assert value(s, "chargebrain_http_request_errors_total", command="set_params",
                 status="400") == 1
    assert not [k for k in s if k[0] == "chargebrain_http_request_errors_total"
                and ("status", "200") in k[1]]


async def test_overload_is_counted(running: Running, http: aiohttp.ClientSession) -> None:
    mgr = running.app.manager
    await call(http, running, "cmd=set_params", {"max_total_current": 16000})
    await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "meter_ajax", "dev_id": "M3", "name": "Grid", "role": 3}]})
    for _ in range(3):
        await call(http, running, "cmd=set_ajax_meter&dev_id=M3&current=20000,12000,3000")
        await mgr.wait_cycle()
    s = await scrape(http, running)
    assert value(s, "chargebrain_overload_cycles_total") >= 1
    assert value(s, "chargebrain_overdraft_largest_amperes") == 4.0
    assert value(s, "chargebrain_overdraft_penalty_amperes") == 4.0


async def test_imbalance_is_counted(running: Running, http: aiohttp.ClientSession) -> None:
    mgr = running.app.manager
    await call(http, running, "cmd=set_params", {"max_imbalance_cur": 8000})
    await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "evse_ajax", "dev_id": "E2", "name": "One phase", "used_phases": 1}]})
    for _ in range(3):
        await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3&current=12000,0,0")
        await mgr.wait_cycle()
    s = await scrape(http, running)
    assert value(s, "chargebrain_evse_limit_reason", dev_id="E2") == 8  # the imbalance
    assert value(s, "chargebrain_imbalance_limited_cycles_total") >= 1
    assert value(s, "chargebrain_phase_imbalance_amperes") == 8.0


async def test_who_may_read_the_metrics(running: Running, http: aiohttp.ClientSession) -> None:
    await call(http, running, "cmd=change_admin_pwd&old_pwd=&new_pwd=s3cret-pass")
    async with http.get(f"{running.base_url}/metrics") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    auth = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret-pass").decode()}
    await scrape(http, running, auth)
    async with http.post(running.url("cmd=set_params"), headers=auth,
                         data=json.dumps({"metrics_public": True})) as resp:
        assert resp.status == 200
    await scrape(http, running)
    s = await scrape(http, running)
    assert value(s, "chargebrain_http_requests_total", command="/metrics", status="401") == 1
