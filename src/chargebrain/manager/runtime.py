"""The charging manager's control loop: read every device, decide, write what changed.

Each cycle reads all devices concurrently (a slow device's read carries over to the next
cycle instead of delaying the others), turns readings into immutable inputs for the
balancer in core/, and applies its decisions to the EVSEs whose command changed. The
periodic cycle runs every `cycle_ms`; in between, a pushed reading (HTTP input) that
matters — an EVSE's state changing, a first reading or one after a communication error,
an EVSE drawing clearly more than it was given, a meter showing load rising beyond what
the last decision allowed for — runs a cycle at once, so an overload is acted on without
waiting for the period. Other pushed readings are kept for the next cycle.
`due_cycle` decides when a cycle is due, for `run` and for the simulator alike.
Configuration changes take effect at once (they wake a cycle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

from chargebrain.clock import Clock
from chargebrain.core.balancer import (
    Allocation,
    BalancerState,
    EvseDecision,
    EvseInput,
    GroupConfig,
    Measurement,
    SiteConfig,
    SiteInput,
    allocate,
)
from chargebrain.core.formula import DictEvalContext, Formula, FormulaError, compile_formula
from chargebrain.core.hold import DEFAULT_HOLD_S, held_peak, prune
from chargebrain.core.model import EvseCommand, EvseReading, EvseState, MeterReading
from chargebrain.core.phases import ZERO, Phases
from chargebrain.devices.ajax import AjaxEvse, AjaxMeter
from chargebrain.devices.base import EvseDriver, MeterDriver
from chargebrain.devices.errors import DeviceError
from chargebrain.devices.powerbrain import (
    internal_address,
)
from chargebrain.devices.registry import DeviceType, DeviceTypes, Kind
from chargebrain.manager import config as C
from chargebrain.manager.config import ConfigError, DeviceConfig, Limit, SiteParams
from chargebrain.manager.drivers import is_internal, make_driver, model_of
from chargebrain.manager.site import SiteSnapshot, expression_reading, virtual_meter_values
from chargebrain.manager.state import (
    OVERRIDE_DISABLE_CHARGING,
    ComStatus,
    DeviceRuntime,
    EvseRuntime,
    WakeBand,
)
from chargebrain.manager.wakeup import DRAWING_MA
from chargebrain.powerbrain.controller import PowerBrain

log = logging.getLogger("chargebrain.manager")

VOLTAGE = 230.0
READ_TIMEOUT_S = 5.0
REFRESH_WRITE_S = 30.0  # rewrite an unchanged command this often (keeps fail-safes fed)
FROZEN_AFTER_S = 20.0  # a grid/consumption meter repeating itself this long is stale
#: A pushed EVSE reading wakes a cycle at once when a phase draws this much (mA) more
#: than the EVSE was given or drew at the last decision, whichever is more. EVSE meters
#: are good to about 1 % (0.16 A at 16 A): 1 A is far outside their noise, well inside
#: what the reaction budget allows.
WAKE_EVSE_OVER_MA = 1000
#: A pushed meter reading wakes a cycle at once when a phase of the load it measures is
#: this much (mA) above the value the last decision used, beyond what that decision
#: counted on top of it (see `_meter_bands`); a meter a formula reads wakes it when a
#: phase moves this much either way (or its power by this much at 230 V). Grid meters are
#: good to about 0.5 % (1 A at 200 A), and a cycle lowers the current at once.
WAKE_METER_MA = 2000
_INF = float("inf")
_UNBOUNDED = (-_INF, -_INF, -_INF), (_INF, _INF, _INF)
_COMMANDS: dict[tuple[bool, int], EvseCommand] = {}
_CHARGING = frozenset(s for s in EvseState if s.charging)
_PLUGGED = frozenset(s for s in EvseState if s.plugged)
_LOAD_ROLES = (C.ROLE_CONSUMPTION, C.ROLE_PRODUCTION, C.ROLE_STORAGE_HOME, C.ROLE_STORAGE_ALL)


def _command(enabled: bool, current_ma: int) -> EvseCommand:
    """The command (one shared object per value, so that comparing is cheap)."""
    key = (enabled, current_ma)
    cmd = _COMMANDS.get(key)
    if cmd is None:
        if len(_COMMANDS) > 4096:
            _COMMANDS.clear()
        cmd = _COMMANDS[key] = EvseCommand(enabled=enabled, current_ma=current_ma)
    return cmd


class _Topology:
    """What each cycle needs to know about the configured devices, worked out once per
    configuration change: who is read how, which meters measure which node, which nodes
    lie above each EVSE."""

    __slots__ = ("cons", "evse_nodes", "evses", "grid", "groups_and_evses", "has_grid",
                 "polled", "pushed", "synchronous", "virtual")

    def __init__(self, mgr: ChargingManager) -> None:
        ordered = mgr.devices_in_order()
        readable = [rt for rt in mgr.devices.values() if rt.driver is not None
                    and (rt.config.device_enabled or rt.dtype.kind is Kind.EVSE)]
        self.pushed = [rt for rt in readable if isinstance(rt.driver, AjaxMeter | AjaxEvse)]
        self.polled = [rt for rt in readable if not isinstance(rt.driver, AjaxMeter | AjaxEvse)]
        # Every device answers at once (HTTP input): a cycle never waits for I/O.
        self.synchronous = not self.polled and all(
            isinstance(rt.driver, AjaxEvse) or rt.driver is None
            for rt in mgr.devices.values() if rt.evse is not None)
        self.groups_and_evses = [rt for rt in ordered if rt.dtype.kind is Kind.GROUP
                                 or rt.evse is not None]
        self.evses = [rt for rt in ordered if rt.evse is not None]
        self.grid: dict[int, list[DeviceRuntime]] = {}
        self.cons: dict[int, list[DeviceRuntime]] = {}
        for rt in mgr.devices.values():
            cfg = rt.config
            if rt.dtype.kind is not Kind.METER or not cfg.device_enabled:
                continue
            if cfg.role == C.ROLE_GRID:
                self.grid.setdefault(cfg.group, []).append(rt)
            elif cfg.role in _LOAD_ROLES:
                self.cons.setdefault(cfg.group, []).append(rt)
        self.has_grid = any(rt.config.role == C.ROLE_GRID for rt in mgr.devices.values())
        # Nodes with a grid meter above each EVSE (its current is taken off their load).
        self.evse_nodes = [
            (rt, tuple(n for n in mgr._ancestors(rt.config.group) if n in self.grid))
            for rt in self.evses
        ]
        self.virtual = [rt for rt in mgr.devices.values()
                        if rt.dtype.kind is Kind.VIRTUAL and rt.config.device_enabled]


class ConfigStore(Protocol):
    def save_site(self, params: SiteParams) -> None: ...
    def save_device(self, cfg: DeviceConfig, position: int) -> None: ...
    def delete_device(self, dev_id: str) -> None: ...
    def save_overdraft(self, value: int) -> None: ...


class SessionListener(Protocol):
    """Told about plug-in, unplug and the end of every cycle (transactions, auth)."""

    def on_plug(self, rt: DeviceRuntime, now: float) -> None: ...
    def on_unplug(self, rt: DeviceRuntime, now: float) -> None: ...
    def on_rfid(self, rt: DeviceRuntime, rfid: str, now: float) -> None: ...
    def on_cycle(self, mgr: ChargingManager, now: float) -> None: ...


def _meter_corrected(cfg: DeviceConfig, r: MeterReading) -> MeterReading:
    factor = cfg.factor * (-1.0 if cfg.invert else 1.0)
    if factor == 1.0:
        return r
    return replace(
        r,
        power_w=r.power_w * factor,
        currents=r.currents.map(lambda v: round(v * factor)),
    )


def _log_change(rt: DeviceRuntime, old: EvseDecision | None, new: EvseDecision | None) -> None:
    """Say in the log when an EVSE starts, pauses or stops, and why."""
    if new is None:
        return
    was = bool(old and old.charging_enabled and old.current_ma)
    now_on = bool(new.charging_enabled and new.current_ma)
    if was != now_on or (old is not None and old.paused != new.paused):
        what = f"{new.current_ma / 1000:.1f} A" if now_on else (
            "paused" if new.paused else "off")
        log.info("%s (%s): %s (%s)", rt.dev_id, rt.config.name, what, new.reason)


class ChargingManager:
    """Owns the devices and runs the control loop."""

    def __init__(
        self,
        clock: Clock,
        powerbrain: PowerBrain,
        types: DeviceTypes,
        store: ConfigStore,
        site: SiteParams | None = None,
        overdraft_cur: int = 0,
    ) -> None:
        self.clock = clock
        self.powerbrain = powerbrain
        self.types = types
        self.store = store
        self.site = site or SiteParams()
        self.devices: dict[str, DeviceRuntime] = {}
        self._order: list[str] = []
        self.balancer_state = BalancerState(overdraft_cur=overdraft_cur)
        self.last_allocation: Allocation | None = None
        self.last_site: SiteSnapshot | None = None
        self.cycle_time_ms = 0
        self.cycle_count = 0
        self.max_evses = 1000
        self.auth_count = 0
        self.evaluated_max_total_ma = 0
        self.evaluated_max_evse_ma = 0
        self.listeners: list[SessionListener] = []
        self.cm_values: dict[str, float] = {}
        self.wish_provider: Callable[[ChargingManager, DictEvalContext, float], None] | None = None
        self._wake = asyncio.Event()
        self._urgent = False  # something relevant arrived: a cycle is due now
        self._wakes = 0  # wake() calls so far
        self._wakes_seen = 0  # wake() calls before the start of the last finished cycle
        self._next_periodic: float | None = None  # monotonic time the periodic cycle is due
        # (wake count a cycle must have seen, future) of callers waiting for a cycle.
        self._cycle_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._topo: _Topology | None = None
        self._formula_devices: frozenset[str] = frozenset()
        # EVSEs that some user's dev_ids name (kept current by the user directory).
        self.user_evses: frozenset[str] = frozenset()
        self._pending: dict[str, asyncio.Task[Any]] = {}
        self._lock = asyncio.Lock()
        self._formulas: dict[str, Formula] = {}
        self._last_cycle_mono: float | None = None
        self.ctx = DictEvalContext()
        # Recent non-EVSE load per node (0 = site, else group number), for the peak hold.
        self._load_history: dict[int, list[tuple[float, Phases]]] = {}
        self.load_hold_s = DEFAULT_HOLD_S

    # --- configuration -----------------------------------------------------------------

    @property
    def serial(self) -> str:
        return self.powerbrain.serial

    @property
    def overdraft_cur(self) -> int:
        return self.balancer_state.overdraft_cur

    def reset_overdraft(self) -> None:
        self.balancer_state = replace(self.balancer_state, overdraft_cur=0)
        self.store.save_overdraft(0)

    def devices_in_order(self) -> list[DeviceRuntime]:
        return [self.devices[d] for d in self._order]

    def evses_in_order(self) -> list[DeviceRuntime]:
        """The EVSEs (devices with EVSE state) in configured order (do not change it)."""
        return self._topology().evses

    def ensure_internal_devices(self) -> None:
        """The built-in EVSE and S0 meters exist from the first start (meter 2 disabled)."""
        defaults = (
            DeviceConfig("E1", "evse_powerbrain", name="Wallbox", address="evse", id=1,
                         number=1, desc="cFos Power Brain Wallbox", max_charging_cur=16000),
            DeviceConfig("M1", "meter_powerbrain", name="S0 Zähler 1", address="meter1", id=2,
                         number=2, desc="cFos Power Brain, S0 Zähler 1", phases=1),
            DeviceConfig("M2", "meter_powerbrain", name="S0 Zähler 2", address="meter2", id=3,
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
            topo = self._topo = _Topology(self)
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

    # --- pushed values -----------------------------------------------------------------

    def push_meter(self, dev_id: str, reading: MeterReading) -> None:
        """Keep a pushed meter reading; wake a cycle at once if it matters."""
        rt = self._pushed(dev_id, AjaxMeter)
        assert isinstance(rt.driver, AjaxMeter)
        rt.driver.push(reading)
        if self._meter_push_matters(rt, reading):
            self.wake()

    def push_evse(self, dev_id: str, reading: EvseReading) -> DeviceRuntime:
        """Keep a pushed EVSE reading; wake a cycle at once if it matters."""
        return self._push_evse(dev_id, reading, self.clock.monotonic())

    def push_evses(self, readings: Iterable[tuple[str, EvseReading]]) -> None:
        """Several pushed EVSE readings (dev_id, reading) at once: as many `push_evse`
        calls at the same moment. Raises ConfigError at the first unknown device."""
        mono = self.clock.monotonic()
        push = self._push_evse
        for dev_id, reading in readings:
            push(dev_id, reading, mono)

    def _push_evse(self, dev_id: str, reading: EvseReading, mono: float) -> DeviceRuntime:
        rt = self.devices.get(dev_id)
        driver = rt.driver if rt is not None else None
        if not isinstance(driver, AjaxEvse):
            rt = self._pushed(dev_id, AjaxEvse)  # raises
            assert isinstance(rt.driver, AjaxEvse)
            driver = rt.driver
        assert rt is not None
        driver.push(reading, mono)
        ev = rt.evse
        if ev is None:
            return rt
        used = ev.source
        if used is None or rt.status.com_err or reading.rfid or (
                reading.state is not used.state) or (
                reading.has_meter is not used.has_meter) or (
                reading.energy_known is not used.energy_known) or (
                reading.max_current_ma != used.max_current_ma):
            # A first reading, one after an error, a card, a car plugged in, starting,
            # stopping or leaving, or a reading of another kind (with or without a meter or
            # an energy counter, another maximum current of the EVSE's own).
            self.wake()
        else:
            c = reading.currents
            over = ev.wake_above_ma
            if c.l1 > over or c.l2 > over or c.l3 > over:  # it draws more than it may
                self.wake()
        return rt

    def _meter_push_matters(self, rt: DeviceRuntime, reading: MeterReading) -> bool:
        if not rt.config.device_enabled:
            return False
        if rt.meter is None or rt.status.com_err:
            return True  # a first reading, or one after an error
        band = rt.wake_band
        if band is None:
            return False
        factor = rt.config.factor * (-1.0 if rt.config.invert else 1.0)
        c = reading.currents
        return band.outside(c.l1 * factor, c.l2 * factor, c.l3 * factor,
                            reading.power_w * factor)

    def _pushed(self, dev_id: str, cls: type) -> DeviceRuntime:
        rt = self.devices.get(dev_id)
        if rt is None:
            raise ConfigError(f"no device {dev_id}")
        if not isinstance(rt.driver, cls):
            raise ConfigError(f"{dev_id} is not an HTTP input device of that kind")
        return rt

    # --- the loop ----------------------------------------------------------------------

    def wake(self) -> None:
        """Run a cycle now on the latest readings (a relevant push, a changed setting)."""
        self._urgent = True
        self._wakes += 1
        self._wake.set()

    def due_cycle(self) -> bool | None:
        """Whether a cycle is due now: True for the periodic one (every `cycle_ms`; it
        reads every device), False for one on the latest pushed readings (something
        relevant arrived or changed since the last cycle), None for none. The caller
        must run the cycle it is told is due. `run` and the simulator both ask this."""
        mono = self.clock.monotonic()
        nxt = self._next_periodic
        if nxt is None or mono >= nxt:
            period = self.site.cycle_ms / 1000.0
            # Keep the rhythm; after a late cycle, the next one a period later.
            nxt = mono + period if nxt is None or nxt + period <= mono else nxt + period
            self._next_periodic = nxt
            self._urgent = False
            return True
        if self._urgent:
            self._urgent = False
            return False
        return None

    async def wait_cycle(self, timeout: float = 2.0) -> None:
        """Wake the loop and wait until a cycle has run (shared by concurrent callers)."""
        self.wake()
        await self._wait_seen(self._wakes, timeout)

    async def wait_woken(self, timeout: float = 2.0) -> None:
        """Wait for the cycle that something relevant woke (a pushed reading that mattered,
        a changed setting), if it has not run yet; return at once when none is pending."""
        await self._wait_seen(self._wakes, timeout)

    async def _wait_seen(self, wakes: int, timeout: float) -> None:
        """Wait until a cycle that started after the `wakes`th wake() has finished."""
        if self._wakes_seen >= wakes:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._cycle_waiters.append((wakes, fut))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(fut), timeout)

    async def run(self) -> None:
        """The periodic cycle every `cycle_ms`; in between, a cycle at once when woken."""
        while True:
            self._wake.clear()
            due = self.due_cycle()
            if due is None:
                assert self._next_periodic is not None
                wait = self._next_periodic - self.clock.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, wait))
                continue
            try:
                await self.cycle(poll=due)
            except Exception:
                log.exception("control cycle failed")

    async def cycle(self, poll: bool = True) -> Allocation:
        """One control cycle. `poll=False` reuses the latest readings (pushed data)."""
        async with self._lock:
            # The cycle sees everything that woke it so far.
            self._urgent = False
            seen = self._wakes
            started = time.perf_counter()
            if poll:
                await self._read_all()
            else:
                self._read_pushed()
            alloc = self._decide()
            await self._apply(alloc)
            self.cycle_count += 1
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            mono = self.clock.monotonic()
            if poll:
                if self._last_cycle_mono is not None:
                    self.cycle_time_ms = round((mono - self._last_cycle_mono) * 1000) or elapsed_ms
                else:
                    self.cycle_time_ms = elapsed_ms
                self._last_cycle_mono = mono
            listeners = self.listeners
            if listeners:
                now = self.clock.now()
                for listener in listeners:
                    listener.on_cycle(self, now)
            self._wakes_seen = seen
            if self._cycle_waiters:
                waiting = []
                for wakes, fut in self._cycle_waiters:
                    if wakes > seen:
                        waiting.append((wakes, fut))
                    elif not fut.done():
                        fut.set_result(None)
                self._cycle_waiters = waiting
            return alloc

    def cycle_now(self, poll: bool = True) -> Allocation:
        """`cycle(poll)` run to its end at once, without an event loop.

        For a manager whose every device is an HTTP-input device: nothing in its cycle
        waits for I/O, so the coroutine finishes in one step (the simulator runs the
        application's cycle this way). Raises RuntimeError when a device would need
        I/O or a cycle is running.
        """
        if self._lock.locked():
            raise RuntimeError("a cycle is running")
        if not self._topology().synchronous:
            raise RuntimeError("some devices are read or written over I/O")
        coro = self.cycle(poll)
        try:
            coro.send(None)
        except StopIteration as done:
            result: Allocation = done.value
            return result
        coro.close()
        raise RuntimeError("the cycle had to wait")

    async def _read_all(self) -> None:
        topo = self._topology()
        self._read_pushed()
        if not topo.polled:
            return
        budget = min(READ_TIMEOUT_S, max(0.2, self.site.cycle_ms / 1000.0 * 0.6))
        for rt in topo.polled:
            if rt.dev_id not in self._pending:
                self._pending[rt.dev_id] = asyncio.ensure_future(self._read_one(rt))
        tasks = list(self._pending.values())
        if tasks:
            await asyncio.wait(tasks, timeout=budget)
        for dev_id, task in list(self._pending.items()):
            if task.done():
                del self._pending[dev_id]

    def _read_pushed(self) -> None:
        """Take the latest reading of every HTTP-input device (never waits)."""
        clock = self.clock
        now, mono = clock.now(), clock.monotonic()
        for rt in self._topology().pushed:
            driver = rt.driver
            assert isinstance(driver, AjaxMeter | AjaxEvse)
            try:
                reading: MeterReading | EvseReading = driver.latest(mono)
            except DeviceError as exc:
                self._com_error(rt, str(exc) or type(exc).__name__)
                continue
            if isinstance(reading, EvseReading):
                status = rt.status
                if status.com_err:
                    self._com_ok(rt, mono)
                else:
                    status.last_ok = mono  # _com_ok, the common case
                self._evse_reading(rt, reading, now, mono)
            else:
                self._take(rt, reading, now, mono)

    async def _read_one(self, rt: DeviceRuntime) -> None:
        driver = rt.driver
        assert driver is not None
        try:
            reading: MeterReading | EvseReading = await asyncio.wait_for(
                driver.read(), timeout=READ_TIMEOUT_S)
        except (DeviceError, TimeoutError, OSError) as exc:
            self._com_error(rt, str(exc) or type(exc).__name__)
            return
        except Exception as exc:
            log.exception("reading %s failed", rt.dev_id)
            self._com_error(rt, f"internal error: {exc}")
            return
        self._take(rt, reading, self.clock.now(), self.clock.monotonic())

    def _take(self, rt: DeviceRuntime, reading: MeterReading | EvseReading, now: float,
              mono: float) -> None:
        if isinstance(reading, EvseReading):
            self._com_ok(rt, mono)
            self._evse_reading(rt, reading, now, mono)
            return
        corrected = _meter_corrected(rt.config, reading)
        if self._frozen(rt, corrected):
            return
        self._com_ok(rt, mono)
        rt.meter = corrected

    def _frozen(self, rt: DeviceRuntime, reading: MeterReading) -> bool:
        """A grid or consumption meter repeating exactly the same values is broken.

        Real household readings always move a little; a gateway that keeps sending its
        last value after losing the meter would otherwise look perfectly healthy.
        """
        mono = self.clock.monotonic()
        if isinstance(rt.driver, AjaxMeter):
            # Re-reading the same push is no new sample (staleness covers a silent feeder).
            if rt.driver.pushed_at == rt.sample_at:
                return rt.status.com_err and rt.same_since is not None
            rt.sample_at = rt.driver.pushed_at
        same = rt.meter is not None and (reading.currents, reading.power_w) == (
            rt.meter.currents, rt.meter.power_w) and reading.currents != ZERO
        if not same or rt.config.role not in (C.ROLE_GRID, C.ROLE_CONSUMPTION):
            rt.same_since = None
            return False
        if rt.same_since is None:
            rt.same_since = mono
        if mono - rt.same_since > FROZEN_AFTER_S:
            self._com_error(rt, f"values unchanged for {mono - rt.same_since:.0f} s "
                                "(frozen meter?)")
            return True
        return False

    def _com_error(self, rt: DeviceRuntime, message: str) -> None:
        st = rt.status
        mono = self.clock.monotonic()
        if not st.com_err:
            st.com_err = True
            st.com_errors += 1
            st.com_state_since = mono
            st.error_since = mono
            never_fed = isinstance(rt.driver, AjaxMeter | AjaxEvse) and rt.driver.pushed_at is None
            level = logging.INFO if never_fed else logging.WARNING
            log.log(level, "%s (%s): %s", rt.dev_id, rt.config.name, message)
        st.last_error = message

    def _com_ok(self, rt: DeviceRuntime, mono: float) -> None:
        st = rt.status
        if st.com_err:
            st.com_err = False
            st.com_state_since = mono
            st.error_since = None
            log.info("%s (%s): communication restored", rt.dev_id, rt.config.name)
        st.last_ok = mono

    def _evse_reading(self, rt: DeviceRuntime, reading: EvseReading, now: float,
                      mono: float) -> None:
        ev = rt.evse
        assert ev is not None
        cfg = rt.config
        prev = ev.reading
        ev.reading = ev.source = reading
        attached = self.devices.get(cfg.attach) if cfg.attach else None
        if attached is not None and attached.meter is not None and not reading.has_meter:
            reading = replace(reading, currents=attached.meter.currents,
                              power_w=attached.meter.power_w,
                              total_energy_wh=attached.meter.import_wh, has_meter=True)
            ev.reading = reading
        c = reading.currents
        rotation = cfg.phase_rotation % 360
        # core.phases.rotate, spelt out: this runs for every EVSE in every cycle
        if rotation == 120:
            ev.building_currents = Phases(c.l3, c.l1, c.l2)
        elif rotation == 240:
            ev.building_currents = Phases(c.l2, c.l3, c.l1)
        else:
            ev.building_currents = c
        last = ev.last_read
        dt = (mono - last) if last is not None else 0.0
        ev.last_read = mono
        state = reading.state
        charging = state in _CHARGING
        if reading.has_meter and reading.energy_known:
            ev.total_energy_wh = reading.total_energy_wh
        else:
            # No energy counter: integrate what it draws, or else the current we gave it.
            if reading.has_meter:
                power = reading.power_w
            else:
                given = ev.decision.current_ma if ev.decision and charging else 0
                phases = bin(ev.decision.phases).count("1") if ev.decision else 1
                power = given / 1000.0 * VOLTAGE * max(1, phases)
            ev.soft_meter_wh += power * dt / 3600.0
            ev.total_energy_wh = ev.soft_meter_wh
        if charging:
            ev.charging_secs += dt
        if reading.power_w > ev.max_power_w:
            ev.max_power_w = reading.power_w
        was_plugged = ev.plugged
        plugged = state in _PLUGGED
        if plugged == was_plugged and prev is not None and not reading.rfid:
            return
        if plugged and not was_plugged:
            ev.plugged = True
            ev.plugged_at = now
            ev.plug_energy_wh = ev.total_energy_wh
            ev.needs_auth = self.needs_auth(rt)
            log.info("%s (%s): vehicle plugged in", rt.dev_id, rt.config.name)
            for listener in self.listeners:
                listener.on_plug(rt, now)
        elif not plugged and state is not EvseState.ERROR and was_plugged:
            log.info("%s (%s): vehicle unplugged after %.2f kWh", rt.dev_id, rt.config.name,
                     ev.transaction_energy_wh / 1000)
            for listener in self.listeners:
                listener.on_unplug(rt, now)
            ev.end_session()
        if prev is None:
            ev.needs_auth = self.needs_auth(rt)
        if reading.rfid:
            log.info("%s (%s): RFID/PIN %s presented", rt.dev_id, rt.config.name, reading.rfid)
            for listener in self.listeners:
                listener.on_rfid(rt, reading.rfid, now)

    def needs_auth(self, rt: DeviceRuntime) -> bool:
        """An EVSE with at least one user assigned charges only after authorisation."""
        return bool(rt.config.users) or rt.dev_id in self.user_evses

    # --- deciding ----------------------------------------------------------------------

    def _eval_limit(self, key: str, value: Limit, ctx: DictEvalContext) -> Phases:
        if isinstance(value, int):
            return Phases.uniform(value)
        formula = self._formulas.get(key)
        if formula is None:
            return Phases.uniform(0)
        return Phases(*(max(0, round(formula.evaluate(ctx.derive(phase=p)))) for p in (1, 2, 3)))

    def _fill_context(self, now: float) -> DictEvalContext:
        """This cycle's formula context. The device values are filled when a formula first
        asks for one (`_fill_devices`), from the state at the start of the decision."""
        ctx = self.ctx
        ctx.set_now(now)
        ctx.defer_devices(self._fill_devices)
        banks = self.powerbrain.banks
        bits = banks["evse"].get("s0_inputs")
        ctx.set_pb("input1", float(bits & 1))
        ctx.set_pb("input2", float((bits >> 1) & 1))
        ctx.update_cm(self.cm_values)
        return ctx

    def _fill_devices(self, ctx: DictEvalContext) -> None:
        for rt in self.devices.values():
            com_err = rt.status.com_err
            values: dict[str, float] = {"com_err": 1.0 if com_err else 0.0}
            m = rt.meter
            if m is not None:
                c = m.currents
                values.update(power_w=float(m.power_w), import_wh=float(m.import_wh),
                              export_wh=float(m.export_wh), current_l1=float(c.l1),
                              current_l2=float(c.l2), current_l3=float(c.l3))
                if m.soc is not None:
                    values["soc"] = float(m.soc)
            ev = rt.evse
            if ev is not None:
                r = ev.reading
                if r is not None:
                    c = r.currents
                    values.update(power_w=float(r.power_w), current_l1=float(c.l1),
                                  current_l2=float(c.l2), current_l3=float(c.l3),
                                  state=float(int(r.state) if not com_err else 6),
                                  import_wh=float(ev.total_energy_wh))
                d = ev.decision
                values.update(offered=float(d.current_ma if d else 0),
                              min_current=float(rt.config.min_charging_cur),
                              txn_energy=float(ev.transaction_energy_wh),
                              charging_dur=float(ev.charging_secs))
            ctx.set_device_values(rt.dev_id, values)

    def _measurements(
        self, topo: _Topology
    ) -> tuple[dict[int, Measurement], dict[str, float], dict[int, Phases]]:
        """Non-EVSE load per node (0 = site, else group number), from the meter roles;
        the site's power figures; and the load per node before the peak hold."""
        grid, cons = topo.grid, topo.cons
        under: dict[int, list[int]] = {}
        if grid:
            for rt, nodes in topo.evse_nodes:
                ev = rt.evse
                if not nodes or ev is None or not ev.reading or rt.status.com_err:
                    continue
                bc = ev.building_currents
                for node in nodes:
                    acc = under.get(node)
                    if acc is None:
                        under[node] = [bc.l1, bc.l2, bc.l3]
                    else:
                        acc[0] += bc.l1
                        acc[1] += bc.l2
                        acc[2] += bc.l3
        out: dict[int, Measurement] = {}
        raw: dict[int, Phases] = {}
        figures = {"grid_w": 0.0, "consumed_w": 0.0, "produced_w": 0.0}
        for node in set(grid) | set(cons):
            stale = 0
            load = ZERO
            if node in grid:
                for rt in grid[node]:
                    if rt.status.com_err or rt.meter is None:
                        stale |= 7
                        continue
                    load = load + rt.meter.currents
                    if node == 0:
                        figures["grid_w"] += rt.meter.power_w
                acc = under.get(node)
                if acc is not None:
                    load = load - Phases(acc[0], acc[1], acc[2])
            else:
                for rt in cons[node]:
                    if rt.status.com_err or rt.meter is None:
                        stale |= 7
                        continue
                    sign = -1 if rt.config.role == C.ROLE_PRODUCTION else 1
                    currents = rt.meter.currents
                    load = load + (currents if sign > 0 else -currents)
                    if node == 0:
                        key = "produced_w" if sign < 0 else "consumed_w"
                        figures[key] += abs(rt.meter.power_w)
            raw[node] = load
            out[node] = Measurement(current=self._held(node, load), stale=stale)
        return out, figures, raw

    def _held(self, node: int, load: Phases) -> Phases:
        """The non-EVSE load of a node with a fall believed only after the hold time."""
        mono = self.clock.monotonic()
        samples = self._load_history.setdefault(node, [])
        samples.append((mono, load))
        prune(samples, mono, self.load_hold_s)
        return held_peak(samples, mono, self.load_hold_s)

    def _ancestors(self, group: int) -> list[int]:
        nodes = [0]
        seen = set()
        while group and group not in seen:
            seen.add(group)
            nodes.append(group)
            parent = self.devices.get(f"E{group}")
            group = parent.config.group if parent else 0
        return nodes

    def _decide(self) -> Allocation:
        now = self.clock.now()
        mono = self.clock.monotonic()
        site = self.site
        topo = self._topology()
        ctx = self._fill_context(now)
        max_total = self._eval_limit("site.max_total_current", site.max_total_current, ctx)
        max_total = max_total.scale(site.max_total_cur_prc / 100.0)
        max_evse = self._eval_limit("site.max_total_evse_current", site.max_total_evse_current,
                                    ctx)
        self.evaluated_max_total_ma = max_total.low()
        self.evaluated_max_evse_ma = max_evse.low()
        if self.wish_provider is not None:
            self.wish_provider(self, ctx, now)
        measurements, figures, raw = self._measurements(topo)
        groups = []
        evses = []
        for rt in topo.groups_and_evses:
            cfg = rt.config
            if rt.evse is None:
                limit = self._eval_limit(f"{cfg.dev_id}.max_charging_cur", cfg.max_charging_cur,
                                         ctx)
                groups.append(GroupConfig(
                    id=cfg.group_number, parent=cfg.group, max_current=limit.low(),
                    priority=cfg.prio, load=measurements.get(cfg.group_number),
                    name=cfg.name or cfg.dev_id))
            else:
                evses.append(self._evse_input(rt, ctx, mono))
        config = SiteConfig(
            max_total_current=max_total.low(),
            reserve_current=site.reserve_current,
            max_total_evse_current=max_evse.low(),
            max_imbalance_cur=site.max_imbalance_cur,
            imbalance_add=site.imbalance_add,
            min_pause_time=float(site.min_pause_time),
            lb_enabled=site.lb_enabled,
            disable_policy=site.disable_policy,
        )
        site_input = SiteInput(config=config, load=measurements.get(0, Measurement()),
                               groups=tuple(groups), evses=tuple(evses))
        alloc = allocate(site_input, self.balancer_state, mono)
        if alloc.overdraft_cur != self.balancer_state.overdraft_cur:
            self.store.save_overdraft(alloc.overdraft_cur)
        self.balancer_state = alloc.state
        self.last_allocation = alloc
        if self._formulas:
            # Formulas still to be evaluated this cycle see the state it started with.
            ctx.materialize()
        # Decisions come in input order: the EVSEs of `groups_and_evses`, as in `devices`.
        evse_power = 0.0
        for rt, new in zip(topo.evses, alloc.evses, strict=True):
            ev = rt.evse
            assert ev is not None
            old = ev.decision
            if old is None or old.current_ma != new.current_ma or (
                    old.charging_enabled is not new.charging_enabled) or (
                    old.paused is not new.paused):
                _log_change(rt, old, new)
            ev.decision = new
            r = ev.reading
            given = new.current_ma if new.charging_enabled else 0
            if r is not None:
                c = r.currents
                drawn = max(c.l1, c.l2, c.l3)
                if not rt.status.com_err:
                    evse_power += r.power_w
            else:
                drawn = 0
            ev.wake_above_ma = (given if given > drawn else drawn) + WAKE_EVSE_OVER_MA
        for node in alloc.nodes:
            if node.id:
                g = self.devices.get(f"E{node.id}")
                if g is not None:
                    g.group_state = node.allocated
        if 0 in topo.grid and 0 not in topo.cons:
            figures["consumed_w"] = max(0.0, figures["grid_w"] - evse_power)
        load = measurements.get(0, Measurement()).current
        surplus = (-figures["grid_w"] + evse_power) if topo.has_grid else (
            figures["produced_w"] - figures["consumed_w"])
        # The surplus the rules use (a surplus formula may replace the built-in one).
        surplus = self.cm_values.get("_surplus", surplus)
        self.last_site = SiteSnapshot(
            available=alloc.available, allocated=alloc.allocated, consumed=alloc.consumed,
            non_evse_load=load, overdraft_applied_ma=alloc.overdraft_applied.peak(),
            grid_w=figures["grid_w"], consumed_w=figures["consumed_w"],
            produced_w=figures["produced_w"], surplus_w=max(0.0, surplus),
            evse_power_w=evse_power)
        self._virtual_meters(ctx, topo)
        self._meter_bands(topo, measurements, raw)
        return alloc

    def _meter_bands(self, topo: _Topology, measurements: dict[int, Measurement],
                     raw: dict[int, Phases]) -> None:
        """Set, for every pushed meter, the band outside which a pushed reading wakes a
        cycle at once (`push_meter`).

        A meter that measures a node's load (a grid meter, or where there is none the
        consumption, production and storage meters): a phase WAKE_METER_MA higher than
        the value this decision used, plus what the decision counted above the present
        load (the peak hold, `_held`), wakes the next cycle (lower, for production). A grid
        meter also rises while cars take up current they were just given; the cycle that
        wakes then finds nothing new, but the meter alone cannot tell that from the house
        drawing more, which must not wait. A meter that a formula of the manager reads: a
        phase (or the power) moving WAKE_METER_MA either way. Any other meter (for
        display, or one a grid meter makes redundant) waits for the periodic cycle.
        """
        margin = float(WAKE_METER_MA)
        for rt in topo.pushed:
            m = rt.meter
            if m is None or not isinstance(rt.driver, AjaxMeter):
                continue
            cfg = rt.config
            node = cfg.group
            band: WakeBand | None = None
            measured = measurements.get(node)
            counted = cfg.role == C.ROLE_GRID if node in topo.grid else cfg.role in _LOAD_ROLES
            if measured is not None and counted:
                # How much higher than its present value the load of the node was counted
                # (its peak of the last seconds): a rise eats that first.
                load = raw[node]
                held = measured.current
                c = m.currents
                slack = (held.l1 - load.l1 + margin, held.l2 - load.l2 + margin,
                         held.l3 - load.l3 + margin)
                if cfg.role == C.ROLE_PRODUCTION:  # less production is more load
                    band = WakeBand((c.l1 - slack[0], c.l2 - slack[1], c.l3 - slack[2]),
                                    _UNBOUNDED[1])
                else:
                    band = WakeBand(_UNBOUNDED[0],
                                    (c.l1 + slack[0], c.l2 + slack[1], c.l3 + slack[2]))
            elif rt.dev_id in self._formula_devices:
                c = m.currents
                watts = margin / 1000.0 * VOLTAGE
                band = WakeBand(
                    (c.l1 - margin, c.l2 - margin, c.l3 - margin),
                    (c.l1 + margin, c.l2 + margin, c.l3 + margin),
                    (m.power_w - watts, m.power_w + watts))
            rt.wake_band = band

    def _evse_input(self, rt: DeviceRuntime, ctx: DictEvalContext, mono: float) -> EvseInput:
        cfg = rt.config
        ev = rt.evse
        assert ev is not None
        r = ev.reading
        limit = cfg.max_charging_cur
        if isinstance(limit, int):
            max_cur = limit
        else:
            max_cur = self._eval_limit(f"{cfg.dev_id}.max_charging_cur", limit,
                                       ctx.derive(self_device=cfg.dev_id)).low()
        if r is not None and r.max_current_ma and isinstance(rt.driver, AjaxEvse):
            max_cur = min(max_cur, r.max_current_ma)
        status = rt.status
        offline = status.error_since if status.com_err else None
        plugged_since = None
        if ev.plugged and ev.plugged_at is not None:
            plugged_since = mono - max(0.0, self.clock.now() - ev.plugged_at)
        key = (max_cur, r, status.com_err, offline, ev.rule_wish, ev.ov_cur, ev.overrides,
               ev.needs_auth, ev.authorised, plugged_since)
        if ev.input is not None and ev.input_cfg is cfg and ev.input_key == key:
            return ev.input
        state = r.state if r is not None else EvseState.WAITING
        if status.com_err:
            state = EvseState.OFFLINE
        made = EvseInput(
            id=cfg.dev_id,
            group=cfg.group,
            priority=cfg.prio,
            min_current=cfg.min_charging_cur,
            max_current=max_cur,
            rotation=cfg.phase_rotation,
            used_phases=cfg.used_phases,
            state=state,
            measured=r.currents if r is not None else ZERO,
            has_meter=bool(r and r.has_meter),
            rule_current=ev.rule_wish,
            override_current=ev.ov_cur,
            override_disable=bool(ev.overrides & OVERRIDE_DISABLE_CHARGING),
            enabled=cfg.device_enabled,
            offline_since=offline,
            needs_auth=ev.needs_auth,
            authorised=ev.authorised,
            plugged_since=plugged_since,
        )
        ev.input, ev.input_key, ev.input_cfg = made, key, cfg
        return made

    def _virtual_meters(self, ctx: DictEvalContext, topo: _Topology) -> None:
        s = self.last_site
        if s is None or not topo.virtual:
            return
        values = virtual_meter_values(s)
        mono = self.clock.monotonic()
        for rt in topo.virtual:
            if rt.config.dev_type in values:
                currents, power = values[rt.config.dev_type]
                rt.meter = MeterReading(power_w=power, currents=currents, model=rt.dtype.name)
                continue
            formula = self._formulas.get(f"{rt.dev_id}.expr")
            if rt.config.dev_type == "meter_expression" and formula is not None:
                dt = mono - rt.expr_at if rt.expr_at is not None else 0.0
                rt.expr_at = mono
                rt.meter = expression_reading(formula, rt.meter, ctx, rt.dev_id, dt)

    # --- applying ----------------------------------------------------------------------

    async def _apply(self, alloc: Allocation) -> None:
        mono = self.clock.monotonic()
        writes: list[Awaitable[None]] = []
        for d in alloc.evses:
            rt = self.devices.get(d.id)
            if rt is None or rt.evse is None or rt.driver is None:
                continue
            ev = rt.evse
            if not d.write or not d.controlled:
                continue
            cmd = _command(d.charging_enabled and d.current_ma > 0,
                           d.current_ma if d.charging_enabled else 0)
            if rt.config.enable_wakeup and self._wake_due(rt, d, mono):
                cmd = replace(cmd, wake=True)
            due = ev.last_write is None or mono - ev.last_write >= REFRESH_WRITE_S
            if (cmd is not ev.last_command and cmd != ev.last_command) or due:
                if isinstance(rt.driver, AjaxEvse):
                    self._write_now(rt, rt.driver, cmd, mono)
                else:
                    writes.append(self._write(rt, cmd, mono))
        if writes:
            await asyncio.gather(*writes)

    def _wake_due(self, rt: DeviceRuntime, d: EvseDecision, mono: float) -> bool:
        """Whether this EVSE's car should get a control-pilot interruption now."""
        ev = rt.evse
        assert ev is not None
        r = ev.reading
        drawing = r is not None and (r.currents.peak() >= DRAWING_MA if r.has_meter
                                     else r.state.charging)
        offered = d.charging_enabled and d.current_ma >= rt.config.min_charging_cur
        return ev.wakeup.update(mono, plugged=ev.plugged, offered=offered, drawing=drawing)

    def _write_now(self, rt: DeviceRuntime, driver: AjaxEvse, cmd: EvseCommand,
                   mono: float) -> None:
        """Hand a command to an HTTP-input EVSE (its feeder gets it with the next answer)."""
        ev = rt.evse
        assert ev is not None
        driver.set_command(cmd)
        ev.last_command = _command(cmd.enabled, cmd.current_ma) if cmd.wake else cmd
        ev.last_write = mono
        ev.last_set_ma = cmd.current_ma

    async def _write(self, rt: DeviceRuntime, cmd: EvseCommand, mono: float) -> None:
        ev = rt.evse
        driver = rt.driver
        assert ev is not None and driver is not None
        try:
            await asyncio.wait_for(driver.apply(cmd), timeout=READ_TIMEOUT_S)  # type: ignore[union-attr]
        except (DeviceError, TimeoutError, OSError) as exc:
            self._com_error(rt, f"write failed: {exc}")
            return
        ev.last_command = _command(cmd.enabled, cmd.current_ma) if cmd.wake else cmd
        ev.last_write = mono
        ev.last_set_ma = cmd.current_ma

    async def close(self) -> None:
        for task in self._pending.values():
            task.cancel()
        for rt in self.devices.values():
            if rt.driver is not None:
                try:
                    await rt.driver.close()
                except Exception:
                    log.debug("closing %s failed", rt.dev_id, exc_info=True)
