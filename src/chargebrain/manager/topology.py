"""The shape of the configured site as each control cycle needs it.

Which devices are polled and which are fed by pushes, whether a cycle can run without
waiting for I/O, which meters measure the load of which node (0 = the site, else a group
number) and which nodes lie above each EVSE. Worked out once per configuration change.
"""

from __future__ import annotations

from chargebrain.devices.ajax import AjaxEvse, AjaxMeter
from chargebrain.devices.powerbrain import LocalEvse, LocalMeter
from chargebrain.devices.registry import Kind
from chargebrain.manager import config as C
from chargebrain.manager.state import DeviceRuntime

#: Meter roles that measure a node's load where the node has no grid meter.
LOAD_ROLES = (C.ROLE_CONSUMPTION, C.ROLE_PRODUCTION, C.ROLE_STORAGE_HOME, C.ROLE_STORAGE_ALL)


def _ancestors(devices: dict[str, DeviceRuntime], group: int) -> list[int]:
    """The nodes above a device in `group`: the site (0), then its groups upwards."""
    nodes = [0]
    seen = set()
    while group and group not in seen:
        seen.add(group)
        nodes.append(group)
        parent = devices.get(f"E{group}")
        group = parent.config.group if parent else 0
    return nodes


class Topology:
    """What each cycle needs to know about the configured devices, worked out once per
    configuration change: who is read how, which meters measure which node, which nodes
    lie above each EVSE."""

    __slots__ = ("_devices", "_up", "cons", "evse_nodes", "evses", "grid", "groups_and_evses",
                 "has_grid", "local", "polled", "pushed", "pushed_meters", "remote",
                 "site_meters", "synchronous", "virtual")

    def __init__(self, ordered: list[DeviceRuntime], devices: dict[str, DeviceRuntime]) -> None:
        """`ordered`: the devices in configured order; `devices`: the same by id."""
        readable = [rt for rt in devices.values() if rt.driver is not None
                    and (rt.config.device_enabled or rt.dtype.kind is Kind.EVSE)]
        self.pushed = [rt for rt in readable if isinstance(rt.driver, AjaxMeter | AjaxEvse)]
        self.pushed_meters = [rt for rt in self.pushed if isinstance(rt.driver, AjaxMeter)]
        self.polled = [rt for rt in readable if not isinstance(rt.driver, AjaxMeter | AjaxEvse)]
        # The controller's own devices: reading them is a look at its registers, no I/O.
        self.local = [rt for rt in self.polled if isinstance(rt.driver, LocalEvse | LocalMeter)]
        # Polled over I/O: other controllers, Modbus meters and the like.
        self.remote = [rt for rt in self.polled if not isinstance(rt.driver,
                                                                  LocalEvse | LocalMeter)]
        # Every device answers at once (HTTP input): a cycle never waits for I/O.
        self.synchronous = not self.polled and all(
            isinstance(rt.driver, AjaxEvse) or rt.driver is None
            for rt in devices.values() if rt.evse is not None)
        self.groups_and_evses = [rt for rt in ordered if rt.dtype.kind is Kind.GROUP
                                 or rt.evse is not None]
        self.evses = [rt for rt in ordered if rt.evse is not None]
        self._devices = devices
        self._up: dict[int, tuple[int, ...]] = {}
        self.grid: dict[int, list[DeviceRuntime]] = {}
        self.cons: dict[int, list[DeviceRuntime]] = {}
        for rt in devices.values():
            cfg = rt.config
            if rt.dtype.kind is not Kind.METER or not cfg.device_enabled:
                continue
            if cfg.role == C.ROLE_GRID:
                self.grid.setdefault(cfg.group, []).append(rt)
            elif cfg.role in LOAD_ROLES:
                self.cons.setdefault(cfg.group, []).append(rt)
        # The enabled meters of the site itself (group 0), in the devices' order.
        self.site_meters = [rt for rt in devices.values() if rt.dtype.kind is Kind.METER
                            and rt.config.device_enabled and rt.config.group == 0]
        self.has_grid = any(rt.config.role == C.ROLE_GRID for rt in devices.values())
        # Nodes with a meter of their load above each EVSE (its readings are combined
        # with theirs; a grid meter's reading includes its current, taken off again), and
        # those of them with a grid meter; EVSEs without any such node are left out.
        self.evse_nodes: list[tuple[DeviceRuntime, tuple[int, ...], tuple[int, ...]]] = []
        for rt in self.evses:
            nodes = tuple(n for n in _ancestors(devices, rt.config.group)
                          if n in self.grid or n in self.cons)
            if nodes:
                self.evse_nodes.append((rt, nodes, tuple(n for n in nodes if n in self.grid)))
        self.virtual = [rt for rt in devices.values()
                        if rt.dtype.kind is Kind.VIRTUAL and rt.config.device_enabled]

    def path_up(self, group: int) -> tuple[int, ...]:
        """The nodes above a device in `group`, nearest first: its group, the groups
        above it, the site (0) last. Worked out once per group and configuration."""
        path = self._up.get(group)
        if path is None:
            path = self._up[group] = (*_ancestors(self._devices, group)[1:], 0)
        return path
