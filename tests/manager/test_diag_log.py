"""The diagnostic log records what a support case needs: each cycle's inputs, decisions
and reasons, and device errors, while it is on, and nothing of it when it is off."""

from __future__ import annotations

import aiohttp

from tests.conftest import Running, wait_for
from tests.manager.test_manager_http import add, call


async def diag_text(http: aiohttp.ClientSession, running: Running) -> str:
    async with http.get(running.url("cmd=get_diag_log")) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_diag_log_has_cycles_decisions_and_device_errors(
        running: Running, http: aiohttp.ClientSession) -> None:
    await add(http, running, {"dev_type": "evse_ajax", "dev_id": "E2", "name": "Carport",
                              "max_charging_cur": 16000})
    await add(http, running, {"dev_type": "meter_ajax", "dev_id": "M3", "name": "Grid",
                              "role": 3})
    # A Modbus meter nobody answers for: a device error every cycle.
    await add(http, running, {"dev_type": "meter_powerbrain", "dev_id": "M4", "name": "Far",
                              "address": "127.0.0.1:9", "role": 0})
    status, answer = await call(http, running, "cmd=set_diag_logging&enable=1")
    assert status == 200 and answer["enabled"] is True
    await call(http, running, "cmd=set_ajax_meter&dev_id=M3&current=5000,4000,3000")
    await call(http, running, "cmd=set_ajax_evse&dev_id=E2&state=3&current=6000,6000,6000")

    async def recorded() -> str | None:
        text = await diag_text(http, running)
        lines = text.splitlines()
        cycles = [line for line in lines if "chargebrain.cycle" in line]
        evse = [line for line in cycles if " E2 state 3" in line and "->" in line]
        errors = [line for line in lines if "M4 (Far)" in line]
        return text if evse and len(errors) >= 2 and any(
            "max total" in line for line in cycles) else None

    text = await wait_for(recorded, timeout=10)
    site = next(line for line in text.splitlines() if "max total" in line)
    assert "site load" in site and "available for EVSEs" in site
    decision = next(line for line in text.splitlines() if " E2 state 3" in line)
    assert "draws 6.0/6.0/6.0 A" in decision and "max 16000 mA" in decision
    assert "(" in decision.split("->")[1]  # the reason
    await call(http, running, "cmd=set_diag_logging&enable=0")
    stopped = await diag_text(http, running)
    running.app.manager.wake()
    await running.app.manager.wait_cycle()
    assert await diag_text(http, running) == stopped
