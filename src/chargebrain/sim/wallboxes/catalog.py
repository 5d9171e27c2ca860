"""The simulated wallboxes by dev_type, and how each is put on loopback.

`CATALOG` gives, per dev_type, the box's class, its Modbus unit and the transport its
maker documents (Modbus TCP, RTU or ASCII frames over a TCP gateway, HTTP, UDP). `serve`
starts a box and answers the address a charging manager device is configured with;
`Served.stop` ends it. Tests and the simulator's manager policy use the same boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chargebrain.sim.scenario.spec import WALLBOX_MODELS
from chargebrain.sim.wallboxes.base import SimWallbox
from chargebrain.sim.wallboxes.goe import GoE
from chargebrain.sim.wallboxes.keba import Keba
from chargebrain.sim.wallboxes.modbus_boxes import (
    Abl,
    Alfen,
    Amtron,
    Heidelberg,
    Phoenix,
    SmartEvse,
)
from chargebrain.sim.wallboxes.modbus_server import ModbusSimServer
from chargebrain.sim.wallboxes.vestel import Vestel, WebastoNext

__all__ = ["CATALOG", "Model", "Served", "serve"]


@dataclass(frozen=True)
class Model:
    make: Callable[..., SimWallbox]
    unit: int
    transport: str  # "tcp", "rtu", "ascii" (over TCP), "http", "udp"


def _wallbe(unit: int, **kw: object) -> SimWallbox:
    return Phoenix(unit, wallbe=True, **kw)


CATALOG: dict[str, Model] = {
    "evse_heidelberg": Model(Heidelberg, 1, "rtu"),
    "evse_abl_emh1": Model(Abl, 1, "ascii"),
    "evse_alfen_evepro": Model(Alfen, 1, "tcp"),
    "evse_mennekes_hcc3": Model(Amtron, 255, "tcp"),
    "evse_phoenix_ev_eth": Model(Phoenix, 255, "tcp"),
    "evse_wallbe": Model(_wallbe, 255, "tcp"),
    "evse_smartevse": Model(SmartEvse, 1, "rtu"),
    "evse_vestel_evc04": Model(Vestel, 255, "tcp"),
    "evse_webasto_next": Model(WebastoNext, 255, "tcp"),
    "evse_go_e_homeplus_mobile": Model(GoE, 1, "http"),
    "evse_keba_c_x": Model(Keba, 1, "udp"),
}
assert set(CATALOG) == set(WALLBOX_MODELS)


@dataclass
class Served:
    box: SimWallbox
    address: str
    unit: int
    server: ModbusSimServer | None = None

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        elif isinstance(self.box, (GoE, Keba)):
            await self.box.stop()


async def serve(dev_type: str, now: Callable[[], float]) -> Served:
    """Make the box of `dev_type` on loopback; what a manager device needs to reach it."""
    model = CATALOG[dev_type]
    box = model.make(model.unit, now=now)
    if isinstance(box, (GoE, Keba)):
        port = await box.start()
        return Served(box, f"127.0.0.1:{port}", model.unit)
    server = ModbusSimServer([box], model.transport)
    port = await server.start()
    prefix = "" if model.transport == "tcp" else f"{model.transport}://"
    return Served(box, f"{prefix}127.0.0.1:{port}", model.unit, server)
