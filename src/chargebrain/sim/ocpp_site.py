"""OCPP wallboxes on a simulated site: chargebrain's central system and the simulated
wallboxes (ocpp_wallbox.py) that connect to it over loopback sockets.

A scenario EVSE with `"interface": "ocpp"` is an `evse_ocpp` device of the charging
manager, served by the production central system (servers/ocpp) on a free loopback port,
with the manager's own transactions, users and sessions on the simulation's store. Its
car sits behind a `SimWallbox`: each step the wallbox is told what the car does (the
simulator's reading of that EVSE) and does what is due on the virtual clock (report its
status a little late, meter values every interval, transactions, a dropped connection
now and then); what it offers the car is what the simulator's car is offered. While the
reading is missing (the `evse_offline` fault) its connection is down.

After a manager cycle the central system sends its charging profiles on its own time;
`settle` lets the event loop run until every connected wallbox has accepted what the
manager wants (bounded in real time: a loopback round trip takes well under a
millisecond).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from chargebrain.clock import VirtualClock
from chargebrain.core.model import EvseReading
from chargebrain.devices.ocpp import OcppHub
from chargebrain.manager.reported import ReportedTransactions
from chargebrain.manager.runtime import ChargingManager
from chargebrain.manager.sessions import SessionManager
from chargebrain.manager.users import UserDirectory
from chargebrain.servers.ocpp.server import CentralSystem, MemoryBoots, OcppSettings
from chargebrain.sim.ocpp_wallbox import Behaviour, SimWallbox
from chargebrain.sim.scenario import OcppBoxSpec
from chargebrain.store.db import Store

LOOPBACK = "127.0.0.1"
SETTLE_S = 2.0  # the longest (real) time a settle may take


class OcppSite:
    """The central system and the simulated wallboxes of one run."""

    def __init__(self, manager: ChargingManager, hub: OcppHub, clock: VirtualClock,
                 store: Store, loop: asyncio.AbstractEventLoop, seed: int = 0) -> None:
        self.manager = manager
        self.hub = hub
        self.clock = clock
        self.store = store
        self.loop = loop
        self.seed = seed
        self.boxes: dict[str, SimWallbox] = {}  # scenario EVSE id → its wallbox
        self.central: CentralSystem | None = None
        self.port = 0

    def _central(self) -> CentralSystem:
        if self.central is None:
            mgr = self.manager
            users = UserDirectory(self.store, mgr)
            sessions = SessionManager(self.store, mgr, users, self.clock)
            mgr.listeners.append(sessions)
            reported = ReportedTransactions(self.store, mgr, users, sessions, self.clock)
            self.central = CentralSystem(self.hub, self.clock, reported, MemoryBoots(),
                                         OcppSettings, mgr.devices)
            mgr.listeners.append(self.central)
            self.port = self.loop.run_until_complete(self.central.start(LOOPBACK, 0))
        return self.central

    def add(self, evse_id: str, spec: OcppBoxSpec | None, max_ma: int) -> str:
        """A wallbox for scenario EVSE `evse_id`; its charge point id (the device's
        address)."""
        self._central()
        cp_id = f"SIM-{len(self.boxes) + 1}"
        o = spec or OcppBoxSpec()
        behaviour = Behaviour(max_ma=max_ma, sample_s=o.sample_s,
                              status_delay_s=o.status_delay_s, ramp_s=o.ramp_s,
                              drop_every_s=o.drop_every_s, drop_for_s=o.drop_for_s)
        self.boxes[evse_id] = SimWallbox(f"ws://{LOOPBACK}:{self.port}", cp_id, self.clock,
                                         behaviour, seed=self.seed + len(self.boxes))
        return cp_id

    def step(self, readings: Mapping[str, EvseReading | None]) -> None:
        """Tell each wallbox what its car does now, and let it do what is due."""
        for sid, box in self.boxes.items():
            r = readings.get(sid)
            if r is None:
                box.sense(box.plugged, False, (0, 0, 0), box.energy_wh)
                box.offline = True
                continue
            box.offline = False
            c = r.currents
            box.sense(r.state.plugged, r.state.charging, (c.l1, c.l2, c.l3),
                      r.total_energy_wh)
        self.loop.run_until_complete(self._step())

    async def _step(self) -> None:
        await asyncio.gather(*(b.step() for b in self.boxes.values()))

    def settle(self) -> None:
        """Let the central system and the wallboxes exchange what is on its way."""
        self.loop.run_until_complete(self._settle())

    async def _settle(self) -> None:
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0)
            if all(self._settled(box) for box in self.boxes.values()):
                return
            await asyncio.sleep(0.0002)

    def _settled(self, box: SimWallbox) -> bool:
        if box.tasks:
            return False
        if not (box.connected and box.booted):
            return True
        evse = self.hub.connectors(box.cp_id).get(1)
        return evse is None or not evse.connected or evse.confirmed == evse.desired()

    def offers(self) -> dict[str, int]:
        """What each wallbox offers its car now (mA; EVSEs offering nothing left out)."""
        out = {}
        for sid, box in self.boxes.items():
            offer = box.offer_ma()
            if offer > 0:
                out[sid] = offer
        return out

    def close(self) -> None:
        async def stop() -> None:
            await asyncio.gather(*(b.close() for b in self.boxes.values()),
                                 return_exceptions=True)
            if self.central is not None:
                await self.central.close_all()
                await self.central.stop()

        self.loop.run_until_complete(stop())
