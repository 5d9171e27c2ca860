"""OCPP commands: the charge points that connected without being configured.

With `ocpp_srv_accept_unknown` set, a charge point whose ChargeBox ID no `evse_ocpp`
device has is served anyway and listed here, so that the admin can add it (its id is
the device's `address`, a connector the device's `id`).
"""

from __future__ import annotations

from typing import Any

from chargebrain.api.commands import Permission, Request, command


@command("get_ocpp_unknown", Permission.ADMIN,
         "OCPP charge points that connected but are not configured as EVSEs")
async def get_ocpp_unknown(req: Request) -> Any:
    return req.app.ocpp.unknown()
