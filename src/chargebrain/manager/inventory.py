"""The manager's device inventory: checking, installing, changing and removing devices.

A device's configuration is validated before it is installed; installing keeps the
driver and communication state of an unchanged device, compiles its formulas and marks
the topology for working out again. Changes are persisted and wake a cycle. The site
parameters are set here too (their formulas are compiled on the way in).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from chargebrain.clock import Clock
from chargebrain.core.balancer import BalancerState
from chargebrain.core.formula import Formula, FormulaError, compile_formula
from chargebrain.devices.base import EvseDriver, MeterDriver
from chargebrain.devices.powerbrain import internal_address
from chargebrain.devices.registry import DeviceType, DeviceTypes, Kind
from chargebrain.manager.config import ConfigError, DeviceConfig, SiteParams
from chargebrain.manager.drivers import is_internal, make_driver, model_of
from chargebrain.manager.state import ComStatus, DeviceRuntime, EvseRuntime
from chargebrain.manager.topology import _Topology
from chargebrain.powerbrain.controller import PowerBrain

if TYPE_CHECKING:
    from chargebrain.manager.runtime import ConfigStore

log = logging.getLogger("chargebrain.manager")


class _DeviceInventory:
    """The devices of a `ChargingManager` and the site parameters (a mixin)."""

    clock: Clock
    powerbrain: PowerBrain
    types: DeviceTypes
    store: ConfigStore
    site: SiteParams
    devices: dict[str, DeviceRuntime]
    balancer_state: BalancerState
    _order: list[str]
    _formulas: dict[str, Formula]
    _topo: _Topology | None
    _formula_devices: frozenset[str]

    if TYPE_CHECKING:
        def wake(self) -> None: ...

    def devices_in_order(self) -> list[DeviceRuntime]:
        return [self.devices[d] for d in self._order]

    def evses_in_order(self) -> list[DeviceRuntime]:
        """The EVSEs (devices with EVSE state) in configured order (do not change it)."""
        return self._topology().evses

    def ensure_internal_devices(self) -> None:
        """The built-in EVSE and S0 meters exist from the first start (meter 2 disabled)."""
        defaults = (
            DeviceConfig("E1", "evse_powerbrain", name="Wallbox", address="evse:", id=1,
                         number=1, desc="cFos Power Brain Wallbox", max_charging_cur=16000),
            DeviceConfig("M1", "meter_powerbrain", name="S0 Zähler 1", address="meter1:", id=2,
                         number=2, desc="cFos Power Brain, S0 Zähler 1", phases=1),
            DeviceConfig("M2", "meter_powerbrain", name="S0 Zähler 2", address="meter2:", id=3,
                         number=3, desc="cFos Power Brain, S0 Zähler 2", phases=1,
                         device_enabled=False),
        )
        present = {internal_address(rt.config.address) for rt in self.devices.values()
                   if rt.config.dev_type in ("evse_powerbrain", "meter_powerbrain")}
        for cfg in defaults:
            if internal_address(cfg.address) not in present and cfg.dev_id not in self.devices:
                self._install(cfg)
                self.store.save_device(cfg, self._order.index(cfg.dev_id))

    def load_devices(self, configs: Iterable[DeviceConfig]) -> None:
        for cfg in configs:
            try:
                self._install(cfg)
            except ConfigError as exc:
                log.error("device %s not loaded: %s", cfg.dev_id, exc)

    def next_dev_id(self, is_evse: bool) -> str:
        prefix = "E" if is_evse else "M"
        used = {int(d[1:]) for d in self.devices if d.startswith(prefix) and d[1:].isdigit()}
        n = 1
        while n in used:
            n += 1
        return f"{prefix}{n}"

    def dtype_of(self, dev_type: str) -> DeviceType:
        dtype = self.types.get(dev_type)
        if dtype is None:
            raise ConfigError(f"unknown dev_type {dev_type!r}")
        return dtype

    def is_internal(self, cfg: DeviceConfig) -> bool:
        return is_internal(cfg)

    def validate(self, cfg: DeviceConfig) -> None:
        """Raise ConfigError if `cfg` cannot be installed as it is."""
        dtype = self.dtype_of(cfg.dev_type)
        if cfg.dev_id[:1] != ("E" if dtype.kind in (Kind.EVSE, Kind.GROUP) else "M"):
            raise ConfigError(f"{cfg.dev_type} devices need an id starting with "
                              f"{'E' if dtype.kind in (Kind.EVSE, Kind.GROUP) else 'M'}")
        if not cfg.dev_id[1:].isdigit() or not 1 <= int(cfg.dev_id[1:]) <= 9999:
            raise ConfigError(f"{cfg.dev_id!r} is not a valid device id")
        if cfg.group:
            group = self.devices.get(f"E{cfg.group}")
            if group is None or not group.config.is_group:
                raise ConfigError(f"group {cfg.group} does not exist (no evse_group E{cfg.group})")
            if cfg.is_group and self._group_cycle(cfg):
                raise ConfigError(f"group {cfg.dev_id} would contain itself")
        if cfg.attach:
            m = self.devices.get(cfg.attach)
            if m is None or m.dtype.kind is Kind.EVSE:
                raise ConfigError(f"attach: {cfg.attach} is not a meter")
        for name, text in self._formula_fields(cfg):
            try:
                compile_formula(text)
            except FormulaError as exc:
                raise ConfigError(f"{name}: {exc}") from None
        addr = internal_address(cfg.address)
        if cfg.dev_type == "evse_powerbrain" and addr and addr != "evse":
            raise ConfigError("the built-in EVSE has the address 'evse'")
        if cfg.dev_type == "meter_powerbrain" and addr and addr == "evse":
            raise ConfigError("the built-in S0 meters have the addresses 'meter1' and 'meter2'")
        needs_address = dtype.kind in (Kind.EVSE, Kind.METER) and not dtype.pushed
        if needs_address and not addr and not cfg.address.strip():
            raise ConfigError("address is required")

    def _group_cycle(self, cfg: DeviceConfig) -> bool:
        seen = {cfg.group_number}
        g = cfg.group
        while g:
            if g in seen:
                return True
            seen.add(g)
            parent = self.devices.get(f"E{g}")
            g = parent.config.group if parent else 0
        return False

    @staticmethod
    def _formula_fields(cfg: DeviceConfig) -> list[tuple[str, str]]:
        out = []
        if isinstance(cfg.max_charging_cur, str):
            out.append(("max_charging_cur", cfg.max_charging_cur))
        if cfg.expr.strip():
            out.append(("expr", cfg.expr))
        return out

    def _install(self, cfg: DeviceConfig) -> DeviceRuntime:
        self.validate(cfg)
        dtype = self.dtype_of(cfg.dev_type)
        old = self.devices.get(cfg.dev_id)
        rt = DeviceRuntime(cfg, dtype, manager_min_pause=self.site.min_pause_time)
        if dtype.kind is Kind.EVSE:
            rt.evse = old.evse if old and old.evse else EvseRuntime()
        if old is not None and old.config.dev_type == cfg.dev_type and old.config.address == (
            cfg.address
        ) and old.config.id == cfg.id:
            rt.driver, rt.status, rt.meter, rt.model = old.driver, old.status, old.meter, old.model
        else:
            if old is not None and old.driver is not None:
                self._close_later(old.driver)
            rt.driver = self._make_driver(cfg, dtype)
            rt.status = ComStatus(com_state_since=self.clock.monotonic())
        if not rt.model:
            rt.model = self._model_of(cfg, dtype)
        for key in [k for k in self._formulas if k.startswith(cfg.dev_id + ".")]:
            del self._formulas[key]
        for name, text in self._formula_fields(cfg):
            self._formulas[f"{cfg.dev_id}.{name}"] = compile_formula(text)
        self.devices[cfg.dev_id] = rt
        if cfg.dev_id not in self._order:
            self._order.append(cfg.dev_id)
        self._changed()
        return rt

    def _changed(self) -> None:
        """The devices or the formulas changed: work out the topology again."""
        self._topo = None
        self._formula_devices = frozenset(
            d for f in self._formulas.values() for d in f.device_ids)

    def _topology(self) -> _Topology:
        topo = self._topo
        if topo is None:
            topo = self._topo = _Topology(self.devices_in_order(), self.devices)
        return topo

    def _model_of(self, cfg: DeviceConfig, dtype: DeviceType) -> str:
        return model_of(cfg, dtype, self.powerbrain)

    def _make_driver(self, cfg: DeviceConfig, dtype: DeviceType) -> MeterDriver | EvseDriver | None:
        return make_driver(cfg, dtype, self.powerbrain, self.types, self.clock)

    def _close_later(self, driver: MeterDriver | EvseDriver) -> None:
        async def close() -> None:
            try:
                await driver.close()
            except Exception:
                log.debug("closing a driver failed", exc_info=True)

        asyncio.get_running_loop().create_task(close())

    def upsert_device(self, cfg: DeviceConfig) -> DeviceRuntime:
        """Create or update one device; persisted; effective from the next cycle."""
        old = self.devices.get(cfg.dev_id)
        if old is not None and self.is_internal(old.config) and not self.is_internal(cfg):
            raise ConfigError(f"{cfg.dev_id} is built in; its type and address stay")
        self.validate(cfg)
        rt = self._install(cfg)
        self.store.save_device(cfg, self._order.index(cfg.dev_id))
        self.wake()
        return rt

    def delete_device(self, dev_id: str) -> None:
        rt = self.devices.get(dev_id)
        if rt is None:
            raise ConfigError(f"no device {dev_id}")
        if self.is_internal(rt.config):
            raise ConfigError(f"{dev_id} is built in: it can be disabled, not deleted")
        if rt.config.is_group:
            number = rt.config.group_number
            members = [d for d, o in self.devices.items() if o.config.group == number]
            if members:
                raise ConfigError(f"group {dev_id} still has members: {', '.join(members)}")
        users = [d for d, o in self.devices.items() if o.config.attach == dev_id]
        if users:
            raise ConfigError(f"{dev_id} is attached to {', '.join(users)}")
        del self.devices[dev_id]
        self._order.remove(dev_id)
        for key in [k for k in self._formulas if k.startswith(dev_id + ".")]:
            del self._formulas[key]
        self._changed()
        if rt.driver is not None:
            self._close_later(rt.driver)
        self.store.delete_device(dev_id)
        self.wake()

    def reset_device(self, dev_id: str) -> None:
        """Delete and recreate a device with the same settings (fresh driver and state)."""
        rt = self.devices.get(dev_id)
        if rt is None:
            raise ConfigError(f"no device {dev_id}")
        if rt.driver is not None:
            self._close_later(rt.driver)
        fresh = DeviceRuntime(rt.config, rt.dtype, manager_min_pause=self.site.min_pause_time)
        fresh.driver = self._make_driver(rt.config, rt.dtype)
        fresh.status = ComStatus(com_state_since=self.clock.monotonic())
        fresh.model = self._model_of(rt.config, rt.dtype)
        if rt.dtype.kind is Kind.EVSE:
            fresh.evse = EvseRuntime()
        self.devices[dev_id] = fresh
        self._changed()
        self.balancer_state = replace(
            self.balancer_state,
            evses={k: v for k, v in self.balancer_state.evses.items() if k != dev_id},
        )
        self.wake()

    def set_site(self, params: SiteParams, persist: bool = True) -> None:
        for name, value in (("max_total_current", params.max_total_current),
                            ("max_total_evse_current", params.max_total_evse_current),
                            ("surplus_expr", params.surplus_expr)):
            if isinstance(value, str) and value.strip():
                try:
                    self._formulas[f"site.{name}"] = compile_formula(value)
                except FormulaError as exc:
                    raise ConfigError(f"{name}: {exc}") from None
            else:
                self._formulas.pop(f"site.{name}", None)
        self._changed()
        self.site = params
        for rt in self.devices.values():
            rt.manager_min_pause = params.min_pause_time
        if persist:
            self.store.save_site(params)
        self.wake()
