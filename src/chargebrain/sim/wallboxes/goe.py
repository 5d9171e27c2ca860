"""A simulated go-e Charger speaking its local HTTP API v2.

`GET /api/status?filter=a,b` answers the keys asked for: `car` (1 idle, 2 charging,
3 waiting for the car, 4 complete, 5 error), `amp` and `amx` (the current in A), `frc`
(force state: 0 neutral, 1 off, 2 on), `psm` (phase switch mode: 1 one phase, 2 three),
`nrg` (voltages L1..N, currents L1..L3 in A, powers L1..N and the total in W, power
factors), `eto` (energy in Wh), `wh` (energy since the car was connected).
`GET /api/set?key=value` takes JSON values. The maker's quirk: `amp` is stored in flash
at every change (`flash_writes` counts them), `amx` is not, so a controller that changes
the current often must write `amx`. A key it does not know, or a value out of range, is
an HTTP 400 with an error object.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from chargebrain.sim.wallboxes.base import SimWallbox

__all__ = ["GoE"]


class GoE(SimWallbox):
    dev_type = "evse_go_e_homeplus_mobile"

    def __init__(self, unit: int = 1, **kw: object) -> None:
        super().__init__(unit, **kw)  # type: ignore[arg-type]
        self.amp = 16
        self.frc = 0
        self.psm = 2
        self.flash_writes = 0
        self.limit_ma = 16_000
        self.failing = False  # answer 500 (a box in trouble)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def offered_ma(self) -> int:
        return 0 if self.frc == 1 else self.amp * 1000

    def status(self) -> dict[str, Any]:
        self.advance()
        self.phases = 1 if self.psm == 1 else 3
        i = self.currents_ma()
        cp = self.cp()
        car = 1 if cp == "A" else (2 if cp == "C" else 3)
        volts = [self.voltage] * 3 + [0.0]
        powers = [c / 1000 * self.voltage for c in i]
        return {"car": car, "amp": self.amp, "amx": self.amp, "frc": self.frc,
                "psm": self.psm, "alw": self.offered_ma() > 0,
                "nrg": [*volts, *(c / 1000 for c in i), *powers, 0.0, sum(powers),
                        1, 1, 1, 0],
                "eto": round(self.energy_wh), "wh": self.session_wh}

    async def _status(self, request: web.Request) -> web.Response:
        self.contact()
        if self.failing:
            return web.json_response({"error": "internal"}, status=500)
        wanted = request.query.get("filter")
        data = self.status()
        if wanted:
            data = {k: data[k] for k in wanted.split(",") if k in data}
        return web.json_response(data)

    async def _set(self, request: web.Request) -> web.Response:
        self.contact()
        changed: dict[str, Any] = {}
        for key, text in request.query.items():
            try:
                value = json.loads(text)
            except ValueError:
                return web.json_response({key: "bad json"}, status=400)
            if key in ("amp", "amx") and isinstance(value, int) and 6 <= value <= 32:
                self.amp = value
                self.flash_writes += key == "amp"
            elif key == "frc" and value in (0, 1, 2):
                self.frc = value
            elif key == "psm" and value in (0, 1, 2):
                self.psm = value
            else:
                return web.json_response({key: "not settable"}, status=400)
            changed[key] = True
            self.writes.append((0, 0, (len(self.writes),)))
        return web.json_response(changed)

    async def start(self, host: str = "127.0.0.1") -> int:
        app = web.Application()
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/api/set", self._set)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
