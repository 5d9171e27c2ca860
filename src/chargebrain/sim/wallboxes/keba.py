"""A simulated KEBA KeContact P20/P30 speaking its UDP protocol.

Text datagrams: `report 1` (product, serial, firmware), `report 2` (`State` 0 starting,
1 not ready, 2 ready, 3 charging, 4 error, 5 authorisation rejected; `Plug` 0 unplugged
.. 7 plugged and locked on both sides; `Enable sys`, `Max curr` and `Curr user` in mA,
`Curr FS`, `Tmo FS`), `report 3` (`U1..U3` V, `I1..I3` mA, `P` mW, `E pres` and
`E total` in 0.1 Wh), `report 100` (the last session, its `RFID tag`); commands `ena 0|1`,
`curr <mA>` (6000..63000), `failsafe <s> <mA> <persist>`, `x2 0|1` (phases), each
answered `TCH-OK :done` (or `TCH-ERR`). The quirk the driver must know: the box answers
to the port it was asked from only when told to (`reply_port`); a real one always
answers to port 7090. A fail-safe is fed by `curr` and `ena` commands only.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from chargebrain.sim.wallboxes.base import SimWallbox

__all__ = ["Keba"]


class Keba(SimWallbox):
    dev_type = "evse_keba_c_x"

    def __init__(self, unit: int = 1, **kw: object) -> None:
        super().__init__(unit, **kw)  # type: ignore[arg-type]
        self.limit_ma = 32_000
        self.enabled = True
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.reply_port: int | None = None  # None: answer to the sender's port
        self.silent = False
        self.received: list[str] = []

    def contact(self) -> None:  # the fail-safe is fed by commands, not by reports
        self.advance()
        self.requests += 1

    def report(self, number: int) -> dict[str, Any]:
        self.advance()
        if number == 1:
            return {"ID": "1", "Product": "KC-P30-EC240422-E00", "Serial": "17654321",
                    "Firmware": "P30 v 3.10.16", "COM-module": 0, "Sec": 1000}
        if number == 2:
            cp = self.cp()
            state = 3 if cp == "C" else (2 if self.offered_ma() else 5 if cp == "B" else 1)
            if cp == "A":
                state = 2 if self.offered_ma() else 1
            return {"ID": "2", "State": state, "Error1": 0, "Error2": 0,
                    "Plug": 7 if self.car_plugged else 1, "Enable sys": int(self.enabled),
                    "Enable user": int(self.enabled), "Max curr": self.offered_ma(),
                    "Curr user": self.limit_ma, "Curr FS": self.failsafe_ma,
                    "Tmo FS": round(self.watchdog_s), "Sec": 1000}
        if number == 3:
            i = self.currents_ma()
            v = round(self.voltage)
            return {"ID": "3", "U1": v, "U2": v, "U3": v, "I1": i[0], "I2": i[1], "I3": i[2],
                    "P": round(self.power_w() * 1000), "PF": 1000,
                    "E pres": round(self.session_wh * 10), "E total": round(self.energy_wh * 10),
                    "Sec": 1000}
        return {"ID": "100", "Session ID": 1, "E pres": round(self.session_wh * 10),
                "RFID tag": self.rfid or "0000000000000000", "RFID class": "", "Sec": 1000}

    def answer(self, text: str) -> str:
        words = text.split()
        self.received.append(text)
        if not words:
            return "TCH-ERR"
        if words[0] == "report" and len(words) == 2 and words[1] in ("1", "2", "3", "100"):
            return json.dumps(self.report(int(words[1])))
        self.last_contact = self.now()
        try:
            args = [int(w) for w in words[1:]]
        except ValueError:
            return "TCH-ERR"
        if words[0] == "ena" and args in ([0], [1]):
            self.enabled = bool(args[0])
        elif words[0] == "curr" and len(args) == 1 and 6000 <= args[0] <= 63000:
            self.limit_ma = args[0]
        elif words[0] == "failsafe" and len(args) == 3:
            self.watchdog_s, self.failsafe_ma = float(args[0]), args[1]
        elif words[0] == "x2" and args in ([0], [1]):
            self.phases = 3 if args[0] else 1
        else:
            return "TCH-ERR"
        return "TCH-OK :done"

    async def start(self, host: str = "127.0.0.1") -> int:
        box = self

        class _Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                if box.silent or box.transport is None:
                    return
                box.contact()
                out = box.answer(data.decode("latin-1", "replace").strip())
                target = (addr[0], box.reply_port or addr[1])
                box.transport.sendto(out.encode(), target)

        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(_Proto, local_addr=(host, 0))
        self.transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self.port

    async def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
