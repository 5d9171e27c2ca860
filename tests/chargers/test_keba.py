"""KEBA KeContact over UDP: reports, commands, the fail-safe, a box that answers to a fixed
port, and a silent box."""

from __future__ import annotations

import socket
import time

import pytest

from chargebrain.core.model import EvseCommand, EvseState
from chargebrain.devices.errors import DeviceError
from chargebrain.devices.keba import KebaEvse
from chargebrain.sim.wallboxes.keba import Keba


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_reports_commands_and_fail_safe() -> None:
    box = Keba(now=time.monotonic)
    port = await box.start()
    evse = KebaEvse(f"127.0.0.1:{port}", local_port=0, timeout=1)
    try:
        r = await evse.read()
        assert r.state is EvseState.WAITING and box.watchdog_s == 60  # fail-safe set first
        box.plug(phases=3)
        box.energy_wh = 1234.5
        await evse.apply(EvseCommand(enabled=True, current_ma=14_000, phases=3))
        assert (box.limit_ma, box.enabled, box.phases) == (14_000, True, 3)
        r = await evse.read()
        assert r.state is EvseState.CHARGING and r.currents.l2 == 14_000
        assert r.power_w == pytest.approx(3 * 230 * 14, abs=1) and r.total_energy_wh >= 1234.5
        await evse.apply(EvseCommand(enabled=False, current_ma=0))
        assert not box.enabled and (await evse.read()).state is EvseState.EV_PRESENT
        box.silent = True
        with pytest.raises(DeviceError, match="no answer"):
            await evse.read()
    finally:
        await evse.close()
        await box.stop()


async def test_a_box_that_answers_to_its_fixed_port() -> None:
    box = Keba(now=time.monotonic)
    port = await box.start()
    box.reply_port = _free_udp_port()  # as a real box always answers to 7090
    evse = KebaEvse(f"127.0.0.1:{port}", local_port=box.reply_port, timeout=1)
    try:
        assert (await evse.read()).state is EvseState.WAITING
    finally:
        await evse.close()
        await box.stop()
