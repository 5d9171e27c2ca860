"""Cascaded charging managers as three processes over loopback: a master with two slaves
(`evse_cm`), each slave with three HTTP-input wallboxes whose cars the test plays, and a
grid meter at the master's connection that sees every car and the rest of the house.

The master shares its connection among the slaves, counting their cars once (the grid
meter less what the slaves report); a lower limit reaches every car; a slave that stops
answering is counted at its wiring limit, and one that restarts gets its limit again."""

from __future__ import annotations

import asyncio
import base64
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Process, free_ports, wait_for

PASSWORD = "slave-secret-1"
SLAVE_WIRING = 25_000  # each slave's connection, per phase
HOUSE = 4_000  # the rest of the master's house, per phase
STEP = 100  # the balancer's current step (allocations are rounded down to it)
WALLBOXES = ("E2", "E3", "E4")
AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Process, list[Process], Path]]:
    procs = [Process(tmp_path / name / "data", free_ports(1), 0)
             for name in ("master", "slave1", "slave2")]
    for p in procs:
        p.data.parent.mkdir(parents=True)
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    try:
        procs[0].start()
        for slave in procs[1:]:
            slave.start("--admin-password-file", str(password))
        yield procs[0], procs[1:], password
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.proc.send_signal(signal.SIGCONT)
                p.proc.kill()
                p.proc.wait()


async def _call(http: aiohttp.ClientSession, p: Process, query: str, body: Any = None,
                auth: dict[str, str] | None = None) -> Any:
    if body is None:
        ctx = http.get(p.url(f"cmd={query}"), headers=auth)
    else:
        ctx = http.post(p.url(f"cmd={query}"), json=body, headers=auth)
    async with ctx as r:
        text = await r.text()
        assert r.status == 200, f"{query}: {r.status} {text}"
        return await r.json(content_type=None)


class Site:
    """A car on every wallbox of every slave, drawing what it was last offered; the
    master's grid meter showing the house and every car."""

    def __init__(self, http: aiohttp.ClientSession, master: Process,
                 slaves: list[Process]) -> None:
        self.http = http
        self.master = master
        self.slaves = slaves
        self.answering = [True] * len(slaves)
        self.offers: list[dict[str, int]] = [dict.fromkeys(WALLBOXES, 0) for _ in slaves]
        self.rounds = 0

    async def round(self) -> None:
        for i, slave in enumerate(self.slaves):
            if not self.answering[i]:
                continue  # its wallboxes keep what they were last offered
            for dev in WALLBOXES:
                draw = self.offers[i][dev]
                answer = await _call(
                    self.http, slave, f"set_ajax_evse&dev_id={dev}&state="
                    f"{3 if draw else 2}&current={draw},{draw},{draw}", auth=AUTH)
                self.offers[i][dev] = answer["charging_current"] if (
                    answer["charging_enabled"]) else 0
        # A meter's readings always move a little (one repeating itself is taken for
        # broken).
        self.rounds += 1
        grid = HOUSE + self.rounds % 2 * 10 + sum(self.total(i) for i in range(len(self.slaves)))
        await _call(self.http, self.master, f"set_ajax_meter&dev_id=M4&current={grid},"
                    f"{grid},{grid}&power_w={grid * 3 * 230 // 1000}")

    def total(self, i: int) -> int:
        return sum(self.offers[i].values())

    async def slave_state(self, i: int) -> dict[str, Any]:
        state: dict[str, Any] = await _call(self.http, self.slaves[i], "get_cm_slave")
        return state

    async def settled(self, low: int, high: int) -> list[int] | None:
        """The slaves' limits once the master's are in force on both, add up to between
        `low` and `high`, and every slave's cars share its limit; None before."""
        await self.round()
        states = [await self.slave_state(i) for i in range(len(self.slaves))]
        limits = [s["limit"] for s in states]
        for i, limit in enumerate(limits):
            # A slave's own fuse always holds; an offer may lag its limit by a cycle.
            assert self.total(i) <= SLAVE_WIRING
            if not states[i]["from_master"] or not limit - 6000 < self.total(i) <= limit:
                return None
        return limits if low <= sum(limits) <= high else None


async def _setup(http: aiohttp.ClientSession, master: Process,
                 slaves: list[Process]) -> None:
    for slave in slaves:
        await _call(http, slave, "set_params", {
            "cm_master_enabled": True, "max_total_current": SLAVE_WIRING}, auth=AUTH)
        for dev in WALLBOXES:
            await _call(http, slave, "set_device", {"devices": [
                {"dev_type": "evse_ajax", "dev_id": dev, "max_charging_cur": 16000,
                 "used_phases": 7}]}, auth=AUTH)
    await _call(http, master, "set_params", {"max_total_current": 40_000})
    await _call(http, master, "set_device", {"devices": [
        {"dev_type": "meter_ajax", "dev_id": "M4", "name": "grid", "role": 3}]})
    for i, slave in enumerate(slaves):
        await _call(http, master, "set_device", {"devices": [{
            "dev_type": "evse_cm", "dev_id": f"E{i + 2}", "address":
            f"127.0.0.1:{slave.http_port}", "password": PASSWORD,
            "max_charging_cur": 63000, "used_phases": 7}]})


async def test_a_master_shares_its_connection_among_two_slaves(
        tree: tuple[Process, list[Process], Path]) -> None:
    master, slaves, password = tree
    async with aiohttp.ClientSession() as http:
        await _setup(http, master, slaves)
        devices = {d["dev_id"]: d for d in await _call(http, master, "get_devices")}
        assert "password" not in devices["E2"] and devices["E2"]["password_set"] is True
        site = Site(http, master, slaves)

        # 40 A at the master's connection, 4 A of it the house: the slaves' cars (48 A
        # wanted on each) get the other 36 A. Counted twice (in the grid reading and as
        # the slaves' draw) they would get far less.
        limits = await wait_for(lambda: site.settled(36_000 - 2 * STEP, 36_000), timeout=40)
        assert min(limits) >= 16_000
        info = await _call(http, master, "get_dev_info")
        slave_dev = next(d for d in info["devices"] if d["dev_id"] == "E2")
        assert slave_dev["model"].startswith("chargebrain") and not slave_dev["com_err"]
        state = await site.slave_state(0)
        # Its cars would take 48 A, its own connection gives them 25 A (in steps).
        assert state["max_current"] == SLAVE_WIRING
        assert all(SLAVE_WIRING - 3 * STEP <= d <= SLAVE_WIRING for d in state["demand"])

        # The master's connection is cut to 24 A: every slave's cars follow.
        await _call(http, master, "set_params", {"max_total_current": 24_000})
        limits = await wait_for(lambda: site.settled(20_000 - 2 * STEP, 20_000), timeout=30)
        for i, slave in enumerate(slaves):
            info = await _call(http, slave, "get_dev_info")
            reasons = {d["reason"] for d in info["devices"] if d["dev_id"] in WALLBOXES}
            assert any("limited by master" in r for r in reasons), reasons
            assert site.total(i) <= limits[i]

        # Slave 2 stops answering (its process frozen; its cars keep their currents, which
        # the grid meter sees): the master counts it at its wiring limit, whatever it drew,
        # and once: what it drew when last read is taken to be inside the grid reading, not
        # the rest of the house (counted at that draw alone, slave 1 would get its 25 A).
        assert slaves[1].proc is not None
        slaves[1].proc.send_signal(signal.SIGSTOP)
        site.answering[1] = False
        frozen = site.total(1)
        assert 0 < frozen < SLAVE_WIRING
        await _call(http, master, "set_params", {"max_total_current": 50_000})
        worst = 50_000 - HOUSE - SLAVE_WIRING
        twice = worst - frozen  # what slave 1 would get if slave 2's draw counted twice

        async def slave1_alone() -> int | None:
            await site.round()
            lost = next(d for d in (await _call(http, master, "get_dev_info"))["devices"]
                        if d["dev_id"] == "E3")
            share = int((await site.slave_state(0))["limit"])
            # (offline in a decision made since: the failure may come from a write, after
            # the cycle's decision)
            offline = lost["com_err"] and lost["reason"] == "offline"
            return share if offline and twice < share <= worst else None

        await wait_for(slave1_alone, timeout=30)
        for _ in range(5):  # and so it stays
            share = int((await site.slave_state(0))["limit"])
            assert twice < share <= worst
            await site.round()
            await asyncio.sleep(0.2)
        info = await _call(http, master, "get_dev_info")
        lost = next(d for d in info["devices"] if d["dev_id"] == "E3")
        assert lost["reason"] == "offline" and "no answer" in lost["last_error"]

        # It is restarted: back at no master's limit (cars paused), until the master
        # reads it and writes its limit again at once.
        slaves[1].proc.send_signal(signal.SIGCONT)
        slaves[1].stop(signal.SIGKILL)
        slaves[1].start("--admin-password-file", str(password))
        site.answering[1] = True

        async def back() -> bool:
            await site.round()
            state = await site.slave_state(1)
            return bool(state["from_master"] and state["limit"] > 0)

        await wait_for(back, timeout=30)
        assert master.proc is not None and master.proc.poll() is None
        assert "Traceback" not in master.output()
        await asyncio.sleep(0)
