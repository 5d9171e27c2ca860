"""The manager's device inventory: checking, installing, changing and removing devices.

A device's configuration is validated before it is installed; installing keeps the
driver and communication state of an unchanged device, compiles its formulas and marks
the topology for working out again. Changes are persisted and wake a cycle. The
inventory also knows which EVSEs need a user's authorisation (their own `users`, or a
user's `dev_ids`). It never reads a device and never decides currents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from chargebrain.clock import Clock
from chargebrain.core.formula import FormulaError, compile_formula
from chargebrain.devices.base import EvseDriver, MeterDriver
from chargebrain.devices.faulty import FaultyEvse, FaultyMeter
from chargebrain.devices.ocpp import OcppHub
from chargebrain.devices.powerbrain import internal_address
from chargebrain.devices.registry import DeviceType, DeviceTypes, Kind
from chargebrain.devices.topics import TopicFeed
from chargebrain.manager.config import ConfigError, DeviceConfig
from chargebrain.manager.drivers import BUILT_IN_TYPES, is_internal, make_driver, model_of
from chargebrain.manager.formulas import FormulaTable
from chargebrain.manager.ports import DeviceStore
from chargebrain.manager.state import ComStatus, DeviceRuntime, EvseRuntime
from chargebrain.manager.topology import Topology
from chargebrain.powerbrain.controller import PowerBrain

log = logging.getLogger("chargebrain.manager")

#: What a faulted EVSE whose maximum current is a formula that does not compile is
#: counted at: the most a wallbox is built for (63 A, the controller's register range).
FAULTED_EVSE_MA = 63_000


class DeviceInventory:
    """The configured devices: their settings, runtime state and drivers, in order."""

    def __init__(self, clock: Clock, powerbrain: PowerBrain, types: DeviceTypes,
                 store: DeviceStore, formulas: FormulaTable,
                 wake: Callable[[], None], ocpp: OcppHub | None = None) -> None:
        self.clock = clock
        self.ocpp = ocpp  # the connectors of OCPP charge points
        self.powerbrain = powerbrain
        self.types = types
        self.store = store
        self.formulas = formulas
        self._wake = wake
        self.devices: dict[str, DeviceRuntime] = {}
        self._order: list[str] = []
        self._topo: Topology | None = None
        self.min_pause_time = 300  # the site's, for new devices (SiteSettings keeps it)
        # EVSEs that some user's dev_ids name (kept current by the user directory).
        self.user_evses: frozenset[str] = frozenset()
        # The broker connection meters read over MQTT use (set by the application).
        self.topic_feed: TopicFeed | None = None

    def devices_in_order(self) -> list[DeviceRuntime]:
        return [self.devices[d] for d in self._order]

    def evses_in_order(self) -> list[DeviceRuntime]:
        """The EVSEs (devices with EVSE state) in configured order (do not change it)."""
        return self.topology().evses

    def ensure_internal_devices(self, stored_ids: Iterable[str] = ()) -> None:
        """The built-in EVSE and S0 meters exist from the first start (meter 2 disabled).

        A default is made only where no row is stored: a stored built-in device, even one
        that cannot run as stored, keeps its settings (`stored_ids`: every stored id).
        """
        defaults = (
            DeviceConfig("E1", "evse_powerbrain", name="Wallbox", address="evse:", id=1,
                         number=1, desc="cFos Power Brain Wallbox", max_charging_cur=16000),
            DeviceConfig("M1", "meter_powerbrain", name="S0 Zähler 1", address="meter1:", id=2,
                         number=2, desc="cFos Power Brain, S0 Zähler 1", phases=1),
            DeviceConfig("M2", "meter_powerbrain", name="S0 Zähler 2", address="meter2:", id=3,
                         number=3, desc="cFos Power Brain, S0 Zähler 2", phases=1,
                         device_enabled=False),
        )
        taken = set(stored_ids) | set(self.devices)
        present = {internal_address(rt.settings.address) for rt in self.devices.values()
                   if rt.settings.dev_type in ("evse_powerbrain", "meter_powerbrain")}
        for cfg in defaults:
            if internal_address(cfg.address) not in present and cfg.dev_id not in taken:
                self._install(cfg)
                self.store.save_device(cfg)

    def load_devices(self, rows: Iterable[tuple[DeviceConfig, str]]) -> None:
        """Install every stored device, whatever order the rows were made in.

        Every row is installed first, then the references between devices (groups,
        attached meters) are resolved, so a device may name one stored after it. A row
        that cannot run as stored (`problem` from decoding it, an unknown type, a
        reference to nothing, a driver that cannot be made) is never dropped and never
        written over: it stays with its stored settings and runs faulted (see
        `_install_faulted`) until it can be built.
        """
        unresolved: list[DeviceConfig] = []
        for cfg, problem in rows:
            if problem:
                self._install_faulted(cfg, problem)
                continue
            try:
                self.validate_own(cfg)
                self._install(cfg, resolved=False)
            except (ConfigError, TypeError, ValueError) as exc:
                self._install_faulted(cfg, str(exc) or type(exc).__name__)
                continue
            unresolved.append(cfg)
        for cfg in unresolved:
            try:
                self.validate_refs(cfg)
            except ConfigError as exc:
                self._install_faulted(cfg, str(exc))
        for rt in self.devices_in_order():
            if rt.fault:
                log.error("device %s (%s) cannot run as stored: %s; it is kept as it is and "
                          "counted as a device that does not answer", rt.dev_id,
                          rt.settings.name or rt.settings.dev_type, rt.fault)

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
        self.validate_own(cfg)
        self.validate_refs(cfg)

    def validate_own(self, cfg: DeviceConfig) -> None:
        """The checks of `cfg` alone: type, id, formulas, address (ConfigError)."""
        dtype = self.dtype_of(cfg.dev_type)
        if cfg.dev_id[:1] != ("E" if dtype.kind in (Kind.EVSE, Kind.GROUP) else "M"):
            raise ConfigError(f"{cfg.dev_type} devices need an id starting with "
                              f"{'E' if dtype.kind in (Kind.EVSE, Kind.GROUP) else 'M'}")
        if not cfg.dev_id[1:].isdigit() or not 1 <= int(cfg.dev_id[1:]) <= 9999:
            raise ConfigError(f"{cfg.dev_id!r} is not a valid device id")
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
        if cfg.dev_type == "evse_ocpp":
            _check_ocpp(cfg, self.devices.values())

    def validate_refs(self, cfg: DeviceConfig) -> None:
        """The checks of what `cfg` refers to: its group, its attached meter (ConfigError).
        A faulted device counts as what its stored settings say it is."""
        if cfg.group:
            group = self.devices.get(f"E{cfg.group}")
            if group is None or not group.settings.is_group:
                raise ConfigError(f"group {cfg.group} does not exist (no evse_group E{cfg.group})")
            if cfg.is_group and self._group_cycle(cfg):
                raise ConfigError(f"group {cfg.dev_id} would contain itself")
        if cfg.attach:
            m = self.devices.get(cfg.attach)
            if m is None or m.settings.is_evse:
                raise ConfigError(f"attach: {cfg.attach} is not a meter")
        built_in = internal_address(cfg.address) if cfg.dev_type in BUILT_IN_TYPES else None
        if built_in:
            for other in self.devices.values():
                o = other.settings
                if o.dev_id != cfg.dev_id and o.dev_type in BUILT_IN_TYPES and (
                        internal_address(o.address) == built_in):
                    raise ConfigError(f"the built-in {built_in} is {o.dev_id} already")

    def _group_cycle(self, cfg: DeviceConfig) -> bool:
        seen = {cfg.group_number}
        g = cfg.group
        while g:
            if g in seen:
                return True
            seen.add(g)
            parent = self.devices.get(f"E{g}")
            g = parent.settings.group if parent else 0
        return False

    @staticmethod
    def _formula_fields(cfg: DeviceConfig) -> list[tuple[str, str]]:
        out = []
        if isinstance(cfg.max_charging_cur, str):
            out.append(("max_charging_cur", cfg.max_charging_cur))
        if cfg.expr.strip():
            out.append(("expr", cfg.expr))
        return out

    def _install(self, cfg: DeviceConfig, resolved: bool = True) -> DeviceRuntime:
        """Install `cfg` (checked completely unless `resolved` is False: then its own
        checks were made and its references are checked once every row is in)."""
        if resolved:
            self.validate(cfg)
        dtype = self.dtype_of(cfg.dev_type)
        old = self.devices.get(cfg.dev_id)
        rt = DeviceRuntime(cfg, dtype, manager_min_pause=self.min_pause_time)
        if dtype.kind is Kind.EVSE:
            rt.evse = old.evse if old and old.evse else EvseRuntime()
        if old is not None and not old.fault and old.config.dev_type == cfg.dev_type and (
                old.config.address == cfg.address) and old.config.id == cfg.id:
            rt.driver, rt.status, rt.meter, rt.model = old.driver, old.status, old.meter, old.model
        else:
            driver = self._make_driver(cfg, dtype)
            if old is not None and old.driver is not None:
                self._close_later(old.driver)
            rt.driver = driver
            rt.status = ComStatus(com_state_since=self.clock.monotonic())
        if not rt.model:
            rt.model = self._model_of(cfg, dtype)
        self.formulas.forget_device(cfg.dev_id)
        for name, text in self._formula_fields(cfg):
            self.formulas.set(f"{cfg.dev_id}.{name}", compile_formula(text))
        self._put(rt)
        return rt

    def _install_faulted(self, stored: DeviceConfig, reason: str) -> DeviceRuntime:
        """Keep a device that cannot run as stored: `stored` stays as it is, the device
        runs on a safe variant of it (references to nothing dropped, a limit that is no
        formula counted at its worst) with a driver that fails every read, and its
        communication state says why from the start."""
        kind = Kind.EVSE if stored.dev_id[:1].upper() == "E" else Kind.METER
        dtype = self.types.get(stored.dev_type) or self.types.placeholder(stored.dev_type, kind)
        safe = self._safe_variant(stored, dtype)
        old = self.devices.get(stored.dev_id)
        if old is not None and old.driver is not None:
            self._close_later(old.driver)
        rt = DeviceRuntime(safe, dtype, manager_min_pause=self.min_pause_time,
                           fault=reason, stored=stored)
        if dtype.kind is Kind.EVSE:
            rt.evse = old.evse if old and old.evse else EvseRuntime()
        if dtype.kind is Kind.EVSE:
            rt.driver = FaultyEvse(reason)
        elif dtype.kind is Kind.METER:
            rt.driver = FaultyMeter(reason)
        mono = self.clock.monotonic()
        rt.status = ComStatus(com_err=True, com_errors=1, last_error=reason,
                              com_state_since=mono, error_since=mono)
        rt.model = dtype.name
        self.formulas.forget_device(stored.dev_id)
        for name, text in self._formula_fields(safe):
            self.formulas.set(f"{safe.dev_id}.{name}", compile_formula(text))
        self._put(rt)
        return rt

    def _safe_variant(self, cfg: DeviceConfig, dtype: DeviceType) -> DeviceConfig:
        """What a faulted device runs on: its group and attached meter only where they
        exist, its formulas only where they compile (else the worst case: an EVSE may
        draw FAULTED_EVSE_MA, a group lets nothing through, a formula meter reads 0)."""
        changes: dict[str, object] = {}
        try:
            self.validate_refs(cfg.with_changes(attach=""))
        except (ConfigError, TypeError, ValueError):
            changes["group"] = 0
        try:
            self.validate_refs(cfg.with_changes(group=0))
        except (ConfigError, TypeError, ValueError):
            changes["attach"] = ""
        for name, text in self._formula_fields(cfg):
            try:
                compile_formula(text)
            except (FormulaError, TypeError, ValueError):
                if name == "expr":
                    changes["expr"] = ""
                else:
                    changes[name] = 1 if dtype.kind is Kind.GROUP else FAULTED_EVSE_MA
        if not isinstance(cfg.max_charging_cur, int | str):
            changes["max_charging_cur"] = 1 if dtype.kind is Kind.GROUP else FAULTED_EVSE_MA
        return cfg.with_changes(**changes) if changes else cfg

    def retry_faulted(self) -> None:
        """Try again to build every faulted device from its stored settings (something
        it refers to may exist now: a group, a meter, a meter definition)."""
        for rt in [rt for rt in self.devices_in_order() if rt.fault]:
            stored = rt.settings
            try:
                self._install(stored)
            except (ConfigError, TypeError, ValueError):
                continue
            log.info("device %s (%s) runs again as stored", stored.dev_id, stored.name)
            self._wake()
        used = {rt.config.dev_type for rt in self.devices.values() if rt.fault}
        self.types.missing = {t: d for t, d in self.types.missing.items()
                              if t in used and self.types.get(t) is None}

    def _put(self, rt: DeviceRuntime) -> None:
        self.devices[rt.dev_id] = rt
        if rt.dev_id not in self._order:
            self._order.append(rt.dev_id)
        self._changed()

    def _changed(self) -> None:
        """The devices changed: work out the topology again."""
        self._topo = None

    def topology(self) -> Topology:
        """The shape of the site as a cycle needs it (worked out once per change)."""
        topo = self._topo
        if topo is None:
            topo = self._topo = Topology(self.devices_in_order(), self.devices)
        return topo

    def _model_of(self, cfg: DeviceConfig, dtype: DeviceType) -> str:
        return model_of(cfg, dtype, self.powerbrain)

    def _make_driver(self, cfg: DeviceConfig, dtype: DeviceType) -> MeterDriver | EvseDriver | None:
        return make_driver(cfg, dtype, self.powerbrain, self.types, self.clock, self.ocpp,
                           self.topic_feed)

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
        if old is not None and self.is_internal(old.settings) and not self.is_internal(cfg):
            raise ConfigError(f"{cfg.dev_id} is built in; its type and address stay")
        self._install(cfg)
        self.store.save_device(cfg)
        self.retry_faulted()
        self._wake()
        return self.devices[cfg.dev_id]

    def delete_device(self, dev_id: str) -> None:
        rt = self.devices.get(dev_id)
        if rt is None:
            raise ConfigError(f"no device {dev_id}")
        if self.is_internal(rt.settings):
            raise ConfigError(f"{dev_id} is built in: it can be disabled, not deleted")
        if rt.settings.is_group:
            number = rt.settings.group_number
            members = [d for d, o in self.devices.items() if o.settings.group == number]
            if members:
                raise ConfigError(f"group {dev_id} still has members: {', '.join(members)}")
        users = [d for d, o in self.devices.items() if o.settings.attach == dev_id]
        if users:
            raise ConfigError(f"{dev_id} is attached to {', '.join(users)}")
        del self.devices[dev_id]
        self._order.remove(dev_id)
        self.formulas.forget_device(dev_id)
        self._changed()
        if rt.driver is not None:
            self._close_later(rt.driver)
        self.store.delete_device(dev_id)
        self._wake()

    def reset_device(self, dev_id: str) -> None:
        """Delete and recreate a device with the same settings (fresh driver and state)."""
        rt = self.devices.get(dev_id)
        if rt is None:
            raise ConfigError(f"no device {dev_id}")
        if rt.fault:
            self.retry_faulted()
            self._wake()
            return
        if rt.driver is not None:
            self._close_later(rt.driver)
        fresh = DeviceRuntime(rt.config, rt.dtype, manager_min_pause=self.min_pause_time)
        fresh.driver = self._make_driver(rt.config, rt.dtype)
        fresh.status = ComStatus(com_state_since=self.clock.monotonic())
        fresh.model = self._model_of(rt.config, rt.dtype)
        if rt.dtype.kind is Kind.EVSE:
            fresh.evse = EvseRuntime()
        self.devices[dev_id] = fresh
        self._changed()
        self._wake()

    # --- authorisation ---------------------------------------------------------------

    def set_user_evses(self, dev_ids: frozenset[str]) -> None:
        """The EVSEs that some user's dev_ids name (the user directory keeps this)."""
        self.user_evses = dev_ids
        self._wake()

    def needs_auth(self, rt: DeviceRuntime) -> bool:
        """An EVSE with at least one user assigned charges only after authorisation."""
        return bool(rt.config.users) or rt.dev_id in self.user_evses


def _check_ocpp(cfg: DeviceConfig, others: Iterable[DeviceRuntime]) -> None:
    """An OCPP EVSE's address is its charge point's ChargeBox ID and its id the connector
    (1 or more); no two EVSEs serve the same connector (ConfigError)."""
    box = cfg.address.strip()
    if len(box) > 48 or "/" in box or any(ord(c) < 33 for c in box):
        raise ConfigError("address: a ChargeBox ID has at most 48 characters, no spaces "
                          "and no '/'")
    if cfg.id < 1:
        raise ConfigError("id: the connector of an OCPP charge point is 1 or more")
    for rt in others:
        other = rt.settings
        if (other.dev_id != cfg.dev_id and other.dev_type == "evse_ocpp"
                and other.address.strip() == box and other.id == cfg.id):
            raise ConfigError(f"{other.dev_id} already is connector {cfg.id} of {box}")
