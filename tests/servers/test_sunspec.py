"""The SunSpec Modbus server, read and written by SunSpec's own client library (pysunspec2)
over a real socket: the chain it scans, the site's figures, the limits, flags and
variables it writes, the published devices at unit id + 1, and the refusals."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import sunspec2.modbus.client as ss_client
from sunspec2 import device as ss_device
from sunspec2.modbus.modbus import ModbusClientException

from chargebrain.app import App, Config
from chargebrain.servers.modbus_tcp import PortInUseError
from chargebrain.servers.sunspec.layout import CUSTOM_MODELS, json_definition
from tests.conftest import ROOT, Process, free_ports, wait_for

DEFINITIONS = ROOT / "docs" / "sunspec"
T = TypeVar("T")


@pytest.fixture(autouse=True, scope="module")
def _our_model_definitions() -> Iterator[None]:
    """pysunspec2 finds the definitions of models 60000–60002 where docs/sunspec.md says."""
    before = ss_device.get_model_defs_path()
    ss_device.set_model_defs_path([str(DEFINITIONS), ss_device.models_dir])
    yield
    ss_device.set_model_defs_path(before)


@dataclass
class Site:
    app: App
    base: str
    port: int

    def scan(self, unit: int = 1) -> ss_client.SunSpecModbusClientDeviceTCP:
        d = ss_client.SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr="127.0.0.1",
                                                   ipport=self.port, timeout=5)
        d.scan()
        return d

    async def call(self, fn: Callable[[], T]) -> T:
        """A blocking pysunspec2 call, with the event loop serving it meanwhile."""
        return await asyncio.to_thread(fn)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    port = free_ports(1)
    http = free_ports(1)
    app = App(Config(tmp_path / "data", "127.0.0.1", http, 0, sunspec_port=port))
    await app.start()
    await app.manager.wait_cycle()
    try:
        yield Site(app, f"http://127.0.0.1:{http}/cnf?cmd=", port)
    finally:
        await app.stop()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        return json.loads(await r.text())


async def _post(http: aiohttp.ClientSession, url: str, body: Any) -> Any:
    async with http.post(url, json=body) as r:
        assert r.status == 200, await r.text()
        return json.loads(await r.text())


def test_the_shipped_model_definitions_are_the_server_s() -> None:
    for model in CUSTOM_MODELS:
        shipped = json.loads((DEFINITIONS / f"model_{model.id}.json").read_text())
        assert shipped == json_definition(model)


async def test_the_chain_at_the_vendor_s_addresses(site: Site) -> None:
    d = await site.call(site.scan)
    chain = [(m.model_id, m.model_addr, m.model_len) for mid in d.models
             if isinstance(mid, int) for m in d.models[mid]]
    assert sorted(chain, key=lambda t: t[1]) == [
        (1, 40002, 66), *((213, 40070 + 126 * i, 124) for i in range(7)),
        (60000, 40952, 16), (60001, 40970, 32), (60002, 41004, 0)]
    assert all(not m.error_info for mid in d.models if isinstance(mid, int)
               for m in d.models[mid])
    common = d.models[1][0]
    assert common.Mn.value == "chargebrain"
    assert common.SN.value == site.app.manager.serial
    assert common.DA.value == 1
    # The end marker follows the last model.
    assert await site.call(lambda: d.read(41006, 2)) == b"\xff\xff\x00\x00"


async def test_site_figures_are_those_of_get_params(site: Site,
                                                    http: aiohttp.ClientSession) -> None:
    await _post(http, site.base + "set_device", {"devices": [
        {"dev_type": "meter_ajax", "dev_id": "M3", "role": 3}]})
    await _get(http, site.base + "set_ajax_meter&dev_id=M3&power_w=2760&current=8000,2000,2000")
    await site.app.manager.wait_cycle()
    params = await _get(http, site.base + "get_params")
    d = await site.call(site.scan)
    grid = d.models[213][0]
    assert grid.W.value == pytest.approx(params["grid_pwr"]) == 2760
    assert (grid.AphA.value, grid.AphB.value, grid.AphC.value) == (8.0, 2.0, 2.0)
    # The grid operator's register: 40098, the grid meter's power as float.
    raw = await site.call(lambda: d.read(40098, 2))
    assert struct.unpack(">f", raw)[0] == 2760.0
    available = d.models[213][5]
    assert available.W.value == pytest.approx(params["avail_evse_power"], abs=1)
    limits = d.models[60000][0]
    assert limits.MaxTotCur.value == 32000
    assert limits.LbEna.value == 1 and limits.TotCurPct.value == 100


async def test_a_limit_written_through_60000_is_a_site_parameter(
        site: Site, http: aiohttp.ClientSession) -> None:
    d = await site.call(site.scan)
    limits = d.models[60000][0]
    limits.MaxTotCur.value = 20000.0
    limits.MaxEvseCur.value = 12000.0
    limits.TotCurPct.value = 50.0
    await site.call(limits.write)
    params = await _get(http, site.base + "get_params")
    assert params["max_total_current"] == 20000
    assert params["max_total_evse_current"] == 12000
    assert params["max_total_cur_prc"] == 50
    await site.call(limits.read)
    assert limits.MaxTotCur.value == 20000 and limits.TotCurPct.value == 50


async def test_out_of_range_writes_get_exception_3_and_change_nothing(
        site: Site, http: aiohttp.ClientSession) -> None:
    d = await site.call(site.scan)
    before = await _get(http, site.base + "get_params")
    limits = d.models[60000][0]
    for point, value in (("MaxTotCur", -1.0), ("MaxTotCur", 2_000_001.0),
                         ("TotCurPct", 101.0), ("LbEna", 0.5), ("Overdraft", 5.0),
                         ("MaxImb", float("nan"))):
        # One write of the whole model: a valid change, and a value out of range.
        for name in ("MaxTotCur", "ResCur", "Overdraft", "MaxEvseCur", "MaxImb", "LbEna",
                     "ImbAdd", "TotCurPct"):
            getattr(limits, name).value = getattr(limits, name).value
        limits.ResCur.value = 1000.0
        getattr(limits, point).value = value
        with pytest.raises(ModbusClientException, match="exception: 3"):
            await site.call(limits.write)
        await site.call(limits.read)
    flags = d.models[60001][0]
    flags.Flag2.value = 2
    with pytest.raises(ModbusClientException, match="exception: 3"):
        await site.call(flags.write)
    after = await _get(http, site.base + "get_params")
    for key in ("max_total_current", "reserve_current", "max_total_cur_prc", "lb_enabled",
                "max_imbalance_cur", "overdraft_cur"):
        assert after[key] == before[key], key
    # A figure is read-only (02); a formula limit sent back unchanged stays a formula.
    with pytest.raises(ModbusClientException, match="exception: 2"):
        await site.call(lambda: d.write(40098, b"\x00\x00\x00\x00"))
    await _post(http, site.base + "set_params", {"max_total_current": "16000 + 4000"})
    await site.app.manager.wait_cycle()
    await site.call(limits.read)
    assert limits.MaxTotCur.value == 20000
    limits.LbEna.value = 1.0
    await site.call(limits.write)
    assert site.app.manager.site.max_total_current == "16000 + 4000"


async def test_flags_and_variables_are_cm_variables(site: Site,
                                                    http: aiohttp.ClientSession) -> None:
    await _get(http, site.base + "set_cm_vars&name=budget&val=5")
    await _get(http, site.base + "set_cm_vars&name=twice&val=CM.budget*2")
    await site.app.manager.wait_cycle()
    d = await site.call(site.scan)
    variables = d.models[60002][0]
    assert [(v.Name.value, v.Val.value) for v in variables.var] == [("budget", 5.0),
                                                                    ("twice", 10.0)]
    variables.var[0].Val.value = 7.5
    await site.call(variables.write)
    flags = d.models[60001][0]
    flags.Flag3.value = 1
    await site.call(flags.write)
    answer = await _get(http, site.base + "get_cm_vars")
    by_name = {v["name"]: v for v in answer["vars"]}
    assert by_name["budget"]["val"] == 7.5 and by_name["budget"]["tmp"] is True
    assert by_name["_flag3"]["val"] == 1 and by_name["_flag3"]["tmp"] is True
    await wait_for(lambda: site.app.cm_vars.value("twice") == 15.0)
    await site.call(flags.read)
    assert flags.Flag3.value == 1 and flags.Flag4.value == 0


async def test_published_devices_at_unit_2(site: Site, http: aiohttp.ClientSession) -> None:
    await _post(http, site.base + "set_device", {"devices": [
        {"dev_type": "evse_ajax", "dev_id": "E7", "publish_sunspec": True}]})
    await _post(http, site.base + "set_device", {"devices": [
        {"dev_type": "meter_ajax", "dev_id": "M4", "role": 1, "publish_sunspec": True}]})
    await _post(http, site.base + "set_device", {"devices": [
        {"dev_type": "evse_ajax", "dev_id": "E8"}]})  # not published
    await _get(http, site.base + "set_ajax_evse&dev_id=E7&state=3&current=9000,8000,7000"
               "&power_w=5520&total_energy=12345")
    await _get(http, site.base + "set_ajax_meter&dev_id=M4&current=1000,2000,3000&power_w=1380"
               "&import_wh=777")
    await site.app.manager.wait_cycle()
    d = await site.call(lambda: site.scan(2))
    assert sorted(m for m in d.models if isinstance(m, int)) == [1, 113, 213]
    evse = d.models[113][0]
    assert evse.model_len == 62  # the standard 60, then state and number
    assert (evse.AphA.value, evse.AphB.value, evse.AphC.value) == (9.0, 8.0, 7.0)
    assert evse.W.value == 5520 and evse.WH.value == 12345
    extra = await site.call(lambda: d.read(evse.model_addr + 62, 2))
    assert struct.unpack(">Hh", extra) == (3, 7)
    meter = d.models[213][0]
    assert meter.model_len == 126
    assert (meter.AphC.value, meter.W.value, meter.TotWhImp.value) == (3.0, 1380.0, 777.0)
    extra = await site.call(lambda: d.read(meter.model_addr + 126, 2))
    assert struct.unpack(">Hh", extra) == (1, -4)
    # Another unit is no device here: exception 0B (11).
    with pytest.raises(ss_client.SunSpecModbusClientError, match="exception 11"):
        await site.call(lambda: site.scan(3))


async def test_a_port_in_use_stops_the_start(tmp_path: Path) -> None:
    port = free_ports(1)
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        app = App(Config(tmp_path / "data", "127.0.0.1", free_ports(1), 0, sunspec_port=port))
        with pytest.raises(PortInUseError):
            await app.start()
        app.store.close()
        app.data_lock.release()
    finally:
        blocker.close()
        await blocker.wait_closed()


def test_a_written_limit_survives_a_restart_and_the_share_does_not(process: Process) -> None:
    port = free_ports(1)
    process.modbus_port = 0
    process.start("--sunspec-port", str(port))
    site = Site(None, process.url("cmd="), port)  # type: ignore[arg-type]
    d = site.scan()
    limits = d.models[60000][0]
    limits.MaxTotCur.value = 25000.0
    limits.TotCurPct.value = 40.0
    limits.write()
    process.stop()
    process.start("--sunspec-port", str(port))
    limits = site.scan().models[60000][0]
    assert (limits.MaxTotCur.value, limits.TotCurPct.value) == (25000, 100)
    assert "SunSpec Modbus TCP on 127.0.0.1 port" in process.output()
