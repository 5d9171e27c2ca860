"""The charging manager's control loop: read every device, decide, write what changed.

Each cycle reads all devices concurrently (a slow device's read carries over to the next
cycle instead of delaying the others), turns readings into immutable inputs for the
balancer in core/, and applies its decisions to the EVSEs whose command changed. A
pushed reading (HTTP input) wakes the loop at once so an overload is acted on without
waiting for the period. Configuration changes take effect from the next cycle.
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
from chargebrain.core.phases import ZERO, Phases, rotate
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
)
from chargebrain.powerbrain.controller import PowerBrain

log = logging.getLogger("chargebrain.manager")

VOLTAGE = 230.0
READ_TIMEOUT_S = 5.0
REFRESH_WRITE_S = 30.0  # rewrite an unchanged command this often (keeps fail-safes fed)
FROZEN_AFTER_S = 20.0  # a grid/consumption meter repeating itself this long is stale


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
        self._cycle_waiters: list[asyncio.Future[None]] = []
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
        for name, text in self._formula_fields(cfg):
            self._formulas[f"{cfg.dev_id}.{name}"] = compile_formula(text)
        self.devices[cfg.dev_id] = rt
        if cfg.dev_id not in self._order:
            self._order.append(cfg.dev_id)
        return rt

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
        self.site = params
        for rt in self.devices.values():
            rt.manager_min_pause = params.min_pause_time
        if persist:
            self.store.save_site(params)
        self.wake()

    # --- pushed values -----------------------------------------------------------------

    def push_meter(self, dev_id: str, reading: MeterReading) -> None:
        rt = self._pushed(dev_id, AjaxMeter)
        assert isinstance(rt.driver, AjaxMeter)
        rt.driver.push(reading)
        self.wake()

    def push_evse(self, dev_id: str, reading: EvseReading) -> DeviceRuntime:
        rt = self._pushed(dev_id, AjaxEvse)
        assert isinstance(rt.driver, AjaxEvse)
        rt.driver.push(reading)
        self.wake()
        return rt

    def _pushed(self, dev_id: str, cls: type) -> DeviceRuntime:
        rt = self.devices.get(dev_id)
        if rt is None:
            raise ConfigError(f"no device {dev_id}")
        if not isinstance(rt.driver, cls):
            raise ConfigError(f"{dev_id} is not an HTTP input device of that kind")
        return rt

    # --- the loop ----------------------------------------------------------------------

    def wake(self) -> None:
        """Run a cycle now on the latest readings (pushed data, a changed setting)."""
        self._wake.set()

    async def wait_cycle(self, timeout: float = 2.0) -> None:
        """Wake the loop and wait until a cycle has run (shared by concurrent callers)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._cycle_waiters.append(fut)
        self.wake()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(fut), timeout)

    async def run(self) -> None:
        """Poll every period; in between, run a cycle at once when pushed data arrives."""
        next_poll = self.clock.monotonic()
        while True:
            wait = next_poll - self.clock.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
            poll = self.clock.monotonic() >= next_poll
            self._wake.clear()
            if poll:
                next_poll = max(next_poll + self.site.cycle_ms / 1000.0, self.clock.monotonic())
            try:
                await self.cycle(poll=poll)
            except Exception:
                log.exception("control cycle failed")

    async def cycle(self, poll: bool = True) -> Allocation:
        """One control cycle. `poll=False` reuses the latest readings (pushed data)."""
        async with self._lock:
            # Only waiters that came before this cycle started are answered by it.
            waiters, self._cycle_waiters = self._cycle_waiters, []
            started = time.perf_counter()
            if poll:
                await self._read_all()
            else:
                await self._read_pushed()
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
            for listener in self.listeners:
                listener.on_cycle(self, self.clock.now())
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
            return alloc

    def _readable(self) -> list[DeviceRuntime]:
        return [rt for rt in self.devices.values() if rt.driver is not None
                and (rt.config.device_enabled or rt.dtype.kind is Kind.EVSE)]

    async def _read_all(self) -> None:
        budget = min(READ_TIMEOUT_S, max(0.2, self.site.cycle_ms / 1000.0 * 0.6))
        for rt in self._readable():
            if rt.dev_id not in self._pending:
                self._pending[rt.dev_id] = asyncio.ensure_future(self._read_one(rt))
        tasks = list(self._pending.values())
        if tasks:
            await asyncio.wait(tasks, timeout=budget)
        for dev_id, task in list(self._pending.items()):
            if task.done():
                del self._pending[dev_id]

    async def _read_pushed(self) -> None:
        for rt in self._readable():
            if isinstance(rt.driver, AjaxMeter | AjaxEvse):
                await self._read_one(rt)

    async def _read_one(self, rt: DeviceRuntime) -> None:
        driver = rt.driver
        assert driver is not None
        try:
            if isinstance(driver, AjaxMeter | AjaxEvse):
                reading: MeterReading | EvseReading = await driver.read()  # never blocks
            else:
                reading = await asyncio.wait_for(driver.read(), timeout=READ_TIMEOUT_S)
        except (DeviceError, TimeoutError, OSError) as exc:
            self._com_error(rt, str(exc) or type(exc).__name__)
            return
        except Exception as exc:
            log.exception("reading %s failed", rt.dev_id)
            self._com_error(rt, f"internal error: {exc}")
            return
        if isinstance(reading, EvseReading):
            self._com_ok(rt)
            self._evse_reading(rt, reading)
            return
        corrected = _meter_corrected(rt.config, reading)
        if self._frozen(rt, corrected):
            return
        self._com_ok(rt)
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

    def _com_ok(self, rt: DeviceRuntime) -> None:
        st = rt.status
        mono = self.clock.monotonic()
        if st.com_err:
            st.com_err = False
            st.com_state_since = mono
            st.error_since = None
            log.info("%s (%s): communication restored", rt.dev_id, rt.config.name)
        st.last_ok = mono

    def _evse_reading(self, rt: DeviceRuntime, reading: EvseReading) -> None:
        ev = rt.evse
        assert ev is not None
        now = self.clock.now()
        mono = self.clock.monotonic()
        prev = ev.reading
        ev.reading = reading
        attached = self.devices.get(rt.config.attach) if rt.config.attach else None
        if attached is not None and attached.meter is not None and not reading.has_meter:
            reading = replace(reading, currents=attached.meter.currents,
                              power_w=attached.meter.power_w,
                              total_energy_wh=attached.meter.import_wh, has_meter=True)
            ev.reading = reading
        ev.building_currents = rotate(reading.currents, rt.config.phase_rotation)
        dt = (mono - ev.last_read) if ev.last_read is not None else 0.0
        ev.last_read = mono
        if reading.has_meter and reading.energy_known:
            ev.total_energy_wh = reading.total_energy_wh
        else:
            # No energy counter: integrate what it draws, or else the current we gave it.
            if reading.has_meter:
                power = reading.power_w
            else:
                given = ev.decision.current_ma if ev.decision and reading.state.charging else 0
                phases = bin(ev.decision.phases).count("1") if ev.decision else 1
                power = given / 1000.0 * VOLTAGE * max(1, phases)
            ev.soft_meter_wh += power * dt / 3600.0
            ev.total_energy_wh = ev.soft_meter_wh
        if reading.state.charging:
            ev.charging_secs += dt
        ev.max_power_w = max(ev.max_power_w, reading.power_w)
        was_plugged = ev.plugged
        if reading.state.plugged and not was_plugged:
            ev.plugged = True
            ev.plugged_at = now
            ev.plug_energy_wh = ev.total_energy_wh
            ev.needs_auth = self.needs_auth(rt)
            log.info("%s (%s): vehicle plugged in", rt.dev_id, rt.config.name)
            for listener in self.listeners:
                listener.on_plug(rt, now)
        elif not reading.state.plugged and reading.state is not EvseState.ERROR and was_plugged:
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
        ctx = self.ctx
        ctx.set_now(now)
        for rt in self.devices.values():
            values: dict[str, float] = {"com_err": 1.0 if rt.status.com_err else 0.0}
            if rt.meter is not None:
                m = rt.meter
                values.update(power_w=m.power_w, import_wh=m.import_wh, export_wh=m.export_wh,
                              current_l1=m.currents.l1, current_l2=m.currents.l2,
                              current_l3=m.currents.l3)
                if m.soc is not None:
                    values["soc"] = m.soc
            if rt.evse is not None:
                ev = rt.evse
                r = ev.reading
                if r is not None:
                    values.update(power_w=r.power_w, current_l1=r.currents.l1,
                                  current_l2=r.currents.l2, current_l3=r.currents.l3,
                                  state=float(int(r.state) if not rt.status.com_err else 6),
                                  import_wh=ev.total_energy_wh)
                values.update(offered=float(ev.decision.current_ma if ev.decision else 0),
                              min_current=float(rt.config.min_charging_cur),
                              txn_energy=ev.transaction_energy_wh,
                              charging_dur=ev.charging_secs)
            ctx.set_device(rt.dev_id, values)
        banks = self.powerbrain.banks
        bits = banks["evse"].get("s0_inputs")
        ctx.set_pb("input1", float(bits & 1))
        ctx.set_pb("input2", float((bits >> 1) & 1))
        ctx.update_cm(self.cm_values)
        return ctx

    def _measurements(self) -> tuple[dict[int, Measurement], dict[str, float]]:
        """Non-EVSE load per node (0 = site, else group number), from the meter roles."""
        grid: dict[int, list[DeviceRuntime]] = {}
        cons: dict[int, list[DeviceRuntime]] = {}
        for rt in self.devices.values():
            cfg = rt.config
            if rt.dtype.kind is not Kind.METER or not cfg.device_enabled:
                continue
            if cfg.role == C.ROLE_GRID:
                grid.setdefault(cfg.group, []).append(rt)
            elif cfg.role in (C.ROLE_CONSUMPTION, C.ROLE_PRODUCTION, C.ROLE_STORAGE_HOME,
                              C.ROLE_STORAGE_ALL):
                cons.setdefault(cfg.group, []).append(rt)
        evse_under: dict[int, Phases] = {}
        for rt in self.devices.values():
            if rt.evse is None or not rt.evse.reading or rt.status.com_err:
                continue
            for node in self._ancestors(rt.config.group):
                evse_under[node] = evse_under.get(node, ZERO) + rt.evse.building_currents
        out: dict[int, Measurement] = {}
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
                load = load - evse_under.get(node, ZERO)
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
            out[node] = Measurement(current=self._held(node, load), stale=stale)
        if 0 in grid and 0 not in cons:
            evse_w = sum(rt.evse.reading.power_w for rt in self.devices.values()
                         if rt.evse and rt.evse.reading and not rt.status.com_err)
            figures["consumed_w"] = max(0.0, figures["grid_w"] - evse_w)
        return out, figures

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
        ctx = self._fill_context(now)
        max_total = self._eval_limit("site.max_total_current", site.max_total_current, ctx)
        max_total = max_total.scale(site.max_total_cur_prc / 100.0)
        max_evse = self._eval_limit("site.max_total_evse_current", site.max_total_evse_current,
                                    ctx)
        self.evaluated_max_total_ma = max_total.low()
        self.evaluated_max_evse_ma = max_evse.low()
        if self.wish_provider is not None:
            self.wish_provider(self, ctx, now)
        measurements, figures = self._measurements()
        groups = []
        evses = []
        for rt in self.devices_in_order():
            cfg = rt.config
            if rt.dtype.kind is Kind.GROUP:
                limit = self._eval_limit(f"{cfg.dev_id}.max_charging_cur", cfg.max_charging_cur,
                                         ctx)
                groups.append(GroupConfig(
                    id=cfg.group_number, parent=cfg.group, max_current=limit.low(),
                    priority=cfg.prio, load=measurements.get(cfg.group_number),
                    name=cfg.name or cfg.dev_id))
            elif rt.evse is not None:
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
        by_id = alloc.by_id()
        for rt in self.devices.values():
            if rt.evse is not None:
                new = by_id.get(rt.dev_id)
                _log_change(rt, rt.evse.decision, new)
                rt.evse.decision = new
        for node in alloc.nodes:
            if node.id:
                g = self.devices.get(f"E{node.id}")
                if g is not None:
                    g.group_state = node.allocated
        load = measurements.get(0, Measurement()).current
        evse_power = sum(rt.evse.reading.power_w for rt in self.devices.values()
                         if rt.evse and rt.evse.reading and not rt.status.com_err)
        surplus = (-figures["grid_w"] + evse_power) if any(
            rt.config.role == C.ROLE_GRID for rt in self.devices.values()
        ) else figures["produced_w"] - figures["consumed_w"]
        # The surplus the rules use (a surplus formula may replace the built-in one).
        surplus = self.cm_values.get("_surplus", surplus)
        self.last_site = SiteSnapshot(
            available=alloc.available, allocated=alloc.allocated, consumed=alloc.consumed,
            non_evse_load=load, overdraft_applied_ma=alloc.overdraft_applied.peak(),
            grid_w=figures["grid_w"], consumed_w=figures["consumed_w"],
            produced_w=figures["produced_w"], surplus_w=max(0.0, surplus),
            evse_power_w=evse_power)
        self._virtual_meters(ctx)
        return alloc

    def _evse_input(self, rt: DeviceRuntime, ctx: DictEvalContext, mono: float) -> EvseInput:
        cfg = rt.config
        ev = rt.evse
        assert ev is not None
        r = ev.reading
        max_cur = self._eval_limit(f"{cfg.dev_id}.max_charging_cur", cfg.max_charging_cur,
                                   ctx.derive(self_device=cfg.dev_id)).low()
        if r is not None and r.max_current_ma and isinstance(rt.driver, AjaxEvse):
            max_cur = min(max_cur, r.max_current_ma)
        offline = rt.status.error_since if rt.status.com_err else None
        state = r.state if r is not None else EvseState.WAITING
        if rt.status.com_err:
            state = EvseState.OFFLINE
        plugged_since = None
        if ev.plugged and ev.plugged_at is not None:
            plugged_since = mono - max(0.0, self.clock.now() - ev.plugged_at)
        return EvseInput(
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

    def _virtual_meters(self, ctx: DictEvalContext) -> None:
        s = self.last_site
        if s is None:
            return
        values = virtual_meter_values(s)
        mono = self.clock.monotonic()
        for rt in self.devices.values():
            if rt.dtype.kind is not Kind.VIRTUAL or not rt.config.device_enabled:
                continue
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
            cmd = EvseCommand(enabled=d.charging_enabled and d.current_ma > 0,
                              current_ma=d.current_ma if d.charging_enabled else 0)
            due = ev.last_write is None or mono - ev.last_write >= REFRESH_WRITE_S
            if cmd != ev.last_command or due:
                writes.append(self._write(rt, cmd, mono))
        if writes:
            await asyncio.gather(*writes)

    async def _write(self, rt: DeviceRuntime, cmd: EvseCommand, mono: float) -> None:
        ev = rt.evse
        driver = rt.driver
        assert ev is not None and driver is not None
        try:
            await asyncio.wait_for(driver.apply(cmd), timeout=READ_TIMEOUT_S)  # type: ignore[union-attr]
        except (DeviceError, TimeoutError, OSError) as exc:
            self._com_error(rt, f"write failed: {exc}")
            return
        ev.last_command = cmd
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
