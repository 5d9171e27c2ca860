"""Published clients against the running app: the PyPI `powerbrain` package, and the field
names and types the Home Assistant integration parses (checked against real device dumps).
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp

from powerbrain import Powerbrain
from tests.conftest import ROOT, Running

DUMPS = ROOT / "tests" / "fixtures" / "device-dumps"


async def test_pypi_powerbrain_client(running: Running) -> None:
    def use_client() -> dict[str, Any]:
        pb = Powerbrain(running.base_url)
        pb.connect()
        assert isinstance(pb.max_total_evse_power, int)
        assert pb.version
        return pb.get_dev_info()  # type: ignore[no-any-return]

    info = await asyncio.to_thread(use_client)
    assert set(info["devices"]) >= {"E1", "M1", "M2"}
    assert info["devices"]["E1"]["dev_type_label"] == "cFos Power Brain"
    assert "loadmgr_disabled" in info


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _dump_device(kind: str) -> dict[str, Any]:
    info = json.loads((DUMPS / "fw-2.0.1" / "get_dev_info.json").read_text())
    for d in info["devices"]:
        if d["dev_type"] == kind:
            return d  # type: ignore[no-any-return]
    raise AssertionError(kind)


async def test_dev_info_fields_match_real_devices(running: Running,
                                                  http: aiohttp.ClientSession) -> None:
    unasked = {"Authorization": "Basic " + base64.b64encode(b"admin:whatever").decode()}
    async with http.get(running.url("cmd=get_dev_info"), headers=unasked) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        info = await resp.json()
    ours = {d["dev_type"]: d for d in info["devices"]}
    for kind in ("evse_powerbrain", "meter_powerbrain"):
        real = _dump_device(kind)
        mine = ours[kind]
        for key, value in real.items():
            if key in ("ip_address", "has_history", "hide_dev", "show_in_overview",
                       "show_chart_in_dev_info", "show_chart_in_overview", "inputs", "outputs",
                       "user_info"):
                continue  # display settings of the vendor's UI
            assert key in mine, f"{kind}: {key} missing"
            assert _type_name(mine[key]) == _type_name(value), f"{kind}.{key}"
        if kind == "evse_powerbrain":
            assert mine["state"] in range(1, 7)
            for key, value in real["evse"].items():
                if key == "dc_last_test_time":
                    continue
                assert _type_name(mine["evse"][key]) == _type_name(value), f"evse.{key}"
    real_params = json.loads((DUMPS / "fw-2.0.1" / "get_dev_info.json").read_text())["params"]
    for key in ("title", "max_total_current", "reserve_current", "max_total_evse_current",
                "cons_evse_power", "avail_evse_power", "lb_enabled", "disable_policy",
                "cycle_time", "max_evses", "shareware_mode", "version", "time", "min_pause_time"):
        assert _type_name(info["params"][key]) == _type_name(real_params[key]), key
    assert info["params"]["vsn"]["serialno"]
    # The 1.x names some clients still read.
    for key in ("max_total_power", "power_reserve", "max_total_evse_power"):
        assert isinstance(info["params"][key], int)
    assert "cur_charging_power" in ours["evse_powerbrain"]
    assert "power" in ours["meter_powerbrain"]


async def test_home_assistant_poll_shape(running: Running, http: aiohttp.ClientSession) -> None:
    """What the integration does each poll: version gate, then 2.x names."""
    async with http.get(running.url("cmd=get_dev_info")) as resp:
        info = await resp.json()
    version = float(".".join(info["params"]["version"].split(".")[:2]))
    assert version >= 1.2
    for d in info["devices"]:
        if not d["device_enabled"]:
            continue
        if d["is_evse"]:
            for key in ("total_energy", "state", "current_l1", "current_l2", "current_l3",
                        "min_charging_cur", "max_charging_cur", "model", "name", "dev_id",
                        "power_w", "ta_en", "last_set_charging_cur", "used_phases",
                        "pause_reason", "pause_time", "charging_dur", "ov_cur", "overrides"):
                assert key in d, key
            assert d["evse"]["cp_state"] and "pp_state" in d["evse"]
        else:
            for key in ("import", "export", "current_l1", "current_l2", "current_l3",
                        "voltage_l1", "voltage_l2", "voltage_l3", "is_va", "power_w"):
                assert key in d, key


def test_fixture_dir_exists() -> None:
    assert (DUMPS / "fw-2.0.1" / "get_dev_info.json").is_file(), Path(DUMPS)


async def test_watt_names_convert_both_ways(running: Running, http: aiohttp.ClientSession) -> None:
    for body, key, expected in (({"max_imbalance": 4600}, "max_imbalance_cur", 20000),
                                ({"max_total_power": 17250}, "max_total_current", 25000)):
        async with http.post(running.url("cmd=set_params"), json=body) as resp:
            assert resp.status == 200
        async with http.get(running.url("cmd=get_params")) as resp:
            params = await resp.json()
        assert params[key] == expected
    assert params["max_imbalance"] == 4600
