"""The OCPP gateway: every EVSE with an `ocpp_gateway_url` appears to that backend as a
charge point (servers/ocpp/gateway.py), and after every control cycle what changed is
queued for it (gateway_connectors.py).

EVSEs with the same URL, client id and password are the connectors of one charge point,
numbered from 1 in the order of their device ids; an EVSE's client id is its
`ocpp_gateway_client_id`, or its device id when that is empty. The set of charge points
follows the configuration: a change of an EVSE's gateway settings closes its old
connection (what was still queued for it goes with it) and opens the new one.

The gateway is a `SessionListener` of the manager: it looks at the EVSEs after every
cycle, on the event loop, without waiting for any backend.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping

from chargebrain.clock import Clock
from chargebrain.manager.ports import CycleListener
from chargebrain.manager.state import DeviceRuntime
from chargebrain.servers.ocpp.gateway import Connect, GatewayLink, Identity
from chargebrain.servers.ocpp.gateway_connectors import GatewayConnectors, Overrides

log = logging.getLogger("chargebrain.ocpp.gateway")

LinkKey = tuple[str, str, str]  # (url, client id, password)


def _number(dev_id: str) -> tuple[int, str]:
    digits = dev_id[1:]
    return (int(digits) if digits.isdigit() else 1 << 30, dev_id)


def wanted_links(devices: Mapping[str, DeviceRuntime]) -> dict[LinkKey, list[str]]:
    """The charge points the configuration asks for, each with its EVSEs in connector
    order."""
    out: dict[LinkKey, list[str]] = {}
    for rt in devices.values():
        cfg = rt.config
        if rt.evse is None or not cfg.ocpp_gateway_url:
            continue
        key = (cfg.ocpp_gateway_url, cfg.ocpp_gateway_client_id or cfg.dev_id,
               cfg.ocpp_gateway_password)
        out.setdefault(key, []).append(cfg.dev_id)
    for dev_ids in out.values():
        dev_ids.sort(key=_number)
    return out


class Gateways(CycleListener):
    """Every charge point of the gateway, kept in step with the configuration."""

    def __init__(self, devices: Mapping[str, DeviceRuntime], topology: Callable[[], object],
                 overrides: Overrides, wake: Callable[[], None], clock: Clock,
                 identity: Identity, connect: Connect | None = None,
                 rng: random.Random | None = None) -> None:
        self.devices = devices
        self.topology = topology  # a new object whenever the devices changed
        self.overrides = overrides
        self.wake = wake
        self.clock = clock
        self.identity = identity
        self._connect = connect
        self._rng = rng or random.Random()
        self.links: dict[LinkKey, tuple[GatewayLink, GatewayConnectors, tuple[str, ...]]] = {}
        self._seen: object = None
        self._closing: set[asyncio.Task[None]] = set()

    def link_of(self, dev_id: str) -> GatewayLink | None:
        """The charge point an EVSE is a connector of (None: it has no gateway)."""
        for link, _connectors, dev_ids in self.links.values():
            if dev_id in dev_ids:
                return link
        return None

    # --- the manager's SessionListener ------------------------------------------------

    def on_cycle(self, now: float) -> None:
        topo = self.topology()
        if topo is not self._seen:
            self._seen = topo
            self._reconcile()
        for _link, connectors, _ids in self.links.values():
            connectors.observe()

    # --- the configuration --------------------------------------------------------------

    def _reconcile(self) -> None:
        wanted = wanted_links(self.devices)
        for key in [k for k, (_l, _c, ids) in self.links.items()
                    if tuple(wanted.get(k, ())) != ids]:
            link, connectors, _ids = self.links.pop(key)
            connectors.release()
            log.info("%s: closed (the configuration changed)", link.name)
            task = asyncio.ensure_future(link.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        for key, dev_ids in wanted.items():
            if key in self.links:
                continue
            url, client_id, password = key
            link = GatewayLink(url, client_id, password, self.clock, self.identity,
                               connector=self._connect, rng=self._rng)
            connectors = GatewayConnectors(dev_ids, self.devices, self.overrides, self.wake,
                                           self.clock, link.put, link.profiles,
                                           link.sample_s)
            link.charger = connectors
            link.config.connectors = len(dev_ids)
            self.links[key] = (link, connectors, tuple(dev_ids))
            log.info("%s: EVSE %s towards %s", link.name, ", ".join(dev_ids), url)
            link.start()

    async def close(self) -> None:
        """Close every connection (at shutdown)."""
        links = [link for link, _c, _ids in self.links.values()]
        self.links.clear()
        await asyncio.gather(*(link.close() for link in links), *self._closing,
                             return_exceptions=True)

