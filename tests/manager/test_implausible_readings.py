"""Readings no meter can show (a number beyond ±1e15, or not finite) never reach the
answers: pushed, they are a 400; read from a device, the device has a communication
error. Two meters of 1e308 W made every get_dev_info a 500 (their sum is infinite)."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from chargebrain.core.model import EvseReading, MeterReading, implausible
from chargebrain.core.phases import Phases
from tests.api.test_users import call
from tests.conftest import Running, wait_for

HUGE_DEFINITION = {"rtype": 1, "dev_type": "huge", "power_w": {"fixed": 1e308},
                   "current_l1": {"fixed": 1e300}}


def test_what_is_implausible() -> None:
    assert implausible(MeterReading(power_w=5000, currents=Phases(16000, 0, -3000))) is None
    assert implausible(EvseReading(total_energy_wh=9e14, max_current_ma=32000)) is None
    assert implausible(MeterReading(extra={"serial": 1.2e19})) is None
    for reading in (MeterReading(power_w=1e308), MeterReading(power_w=float("nan")),
                    MeterReading(currents=Phases(10**20, 0, 0)),
                    MeterReading(voltages=(230.0, float("inf"), 230.0)),
                    MeterReading(soc=-1e16),
                    EvseReading(total_energy_wh=2e15), EvseReading(max_current_ma=10**300),
                    EvseReading(power_w=float("-inf"))):
        assert "implausible" in (implausible(reading) or ""), reading


async def test_meters_reading_1e308_watts_are_in_error_and_the_answers_stay(
    running: Running, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with http.post(running.url("cmd=set_meter_def"),
                         data=json.dumps(HUGE_DEFINITION)) as resp:
        assert resp.status == 200, await resp.text()
    for dev_id in ("M6", "M7"):
        status, body = await call(http, running, "cmd=set_device", {
            "dev_type": "meter_huge", "dev_id": dev_id, "role": 1, "address": "127.0.0.1:9"})
        assert status == 200, body

    async def meters_in_error() -> bool:
        status, info = await call(http, running, "cmd=get_dev_info")
        assert status == 200, info
        meters = [d for d in info["devices"] if d["dev_id"] in ("M6", "M7")]
        return all(d["com_err"] and "implausible" in d["last_error"] for d in meters)

    await wait_for(meters_in_error)
    for cmd in ("get_params", "set_params"):
        status, body = await call(http, running, f"cmd={cmd}", {} if cmd == "set_params" else None)
        assert status == 200, body
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("cmd,dev,body", [
    ("set_ajax_meter", "meter_ajax", {"current": [1e300] * 3, "voltage": [1e300] * 3}),
    ("set_ajax_meter", "meter_ajax", {"power_w": 2e15}),
    ("set_ajax_meter", "meter_ajax", {"import_wh": 1e300}),
    ("set_ajax_meter", "meter_ajax", {"soc": -1e300}),
    ("set_ajax_evse", "evse_ajax", {"state": 3, "current": [1e300, 0, 0]}),
    ("set_ajax_evse", "evse_ajax", {"total_energy": 1e16}),
    ("set_ajax_evse", "evse_ajax", {"max_charging_current": 1e300}),
])
async def test_pushing_implausible_numbers_is_a_400(
    running: Running, http: aiohttp.ClientSession, cmd: str, dev: str, body: dict[str, object]
) -> None:
    status, answer = await call(http, running, "cmd=set_device", {"dev_type": dev})
    assert status == 200, answer
    dev_id = answer["dev_id"]
    status, answer = await call(http, running, f"cmd={cmd}&dev_id={dev_id}", body)
    assert status == 400 and "out of range" in answer["error"], answer
    await running.app.manager.wait_cycle()
    status, info = await call(http, running, "cmd=get_dev_info")
    assert status == 200, info


async def test_a_meter_factor_is_bounded(running: Running, http: aiohttp.ClientSession) -> None:
    for factor in (1e308, -1e7):
        status, body = await call(http, running, "cmd=set_device",
                                  {"dev_type": "meter_ajax", "dev_id": "M6", "factor": factor})
        assert status == 400 and "factor" in body["error"], body
    status, body = await call(http, running, "cmd=set_device",
                              {"dev_type": "meter_ajax", "dev_id": "M6", "factor": -1000})
    assert status == 200, body
