"""Reading the devices in a control cycle and taking what they report.

Polled devices are read concurrently within a time budget (a read that outlasts it
carries over to the next cycle, and the cycle after it has ended reads that device
again); HTTP-input devices answer at once with their latest pushed reading, and so do
OCPP connectors with what their charge point last sent. A reading updates the device's
communication state; a grid or consumption meter repeating itself exactly for
`FROZEN_AFTER_S` counts as broken, and so does a reading with a number no device can show
(`core.model.implausible`). An EVSE's reading also updates its energy counters and
reports plug-in, unplug and RFID to the session listeners.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from chargebrain.clock import Clock
from chargebrain.core.model import EvseReading, EvseState, MeterReading, implausible
from chargebrain.core.phases import ZERO, Phases
from chargebrain.devices.ajax import AjaxEvse, AjaxMeter
from chargebrain.devices.errors import DeviceError
from chargebrain.devices.ocpp import OcppEvse
from chargebrain.devices.powerbrain import LocalEvse, LocalMeter
from chargebrain.manager import config as C
from chargebrain.manager.config import DeviceConfig
from chargebrain.manager.inventory import DeviceInventory
from chargebrain.manager.plans import reported
from chargebrain.manager.ports import SessionListener
from chargebrain.manager.settings import SiteSettings
from chargebrain.manager.site import VOLTAGE
from chargebrain.manager.state import DeviceRuntime
from chargebrain.manager.topology import Topology

log = logging.getLogger("chargebrain.manager")

READ_TIMEOUT_S = 5.0
FROZEN_AFTER_S = 20.0  # a grid/consumption meter repeating itself this long is stale
_CHARGING = frozenset(s for s in EvseState if s.charging)
_PLUGGED = frozenset(s for s in EvseState if s.plugged)


def meter_corrected(cfg: DeviceConfig, r: MeterReading) -> MeterReading:
    """A meter's reading with its configured factor and sign applied."""
    factor = cfg.factor * (-1.0 if cfg.invert else 1.0)
    if factor == 1.0:
        return r
    return replace(
        r,
        power_w=r.power_w * factor,
        currents=r.currents.map(lambda v: round(v * factor)),
    )


def com_error(rt: DeviceRuntime, message: str, mono: float) -> None:
    """A device failed to answer at `mono` (monotonic time): note it, log the first."""
    st = rt.status
    if not st.com_err:
        st.com_err = True
        st.com_errors += 1
        st.com_state_since = mono
        st.error_since = mono
        never_fed = isinstance(rt.driver, AjaxMeter | AjaxEvse) and rt.driver.pushed_at is None
        level = logging.INFO if never_fed else logging.WARNING
        log.log(level, "%s (%s): %s", rt.dev_id, rt.config.name, message)
    elif log.isEnabledFor(logging.DEBUG):
        # Each further failure only in a diagnostic log (the first is logged above).
        log.debug("%s (%s): still failing: %s", rt.dev_id, rt.config.name, message)
    st.last_error = message


def com_ok(rt: DeviceRuntime, mono: float) -> None:
    """A device answered at `mono` (monotonic time): note it, log a recovery."""
    st = rt.status
    if st.com_err:
        st.com_err = False
        st.com_state_since = mono
        st.error_since = None
        log.info("%s (%s): communication restored", rt.dev_id, rt.config.name)
    st.last_ok = mono


class Readers:
    """Reads the inventory's devices for each cycle and takes what they report."""

    def __init__(self, clock: Clock, inventory: DeviceInventory, settings: SiteSettings,
                 listeners: list[SessionListener],
                 changed: Callable[[], None] = lambda: None) -> None:
        self.clock = clock
        # Told when a read ends, which may be after its cycle (see CycleSignal.changed).
        self.changed = changed
        self.inventory = inventory
        self.devices = inventory.devices  # the same mapping, kept current by the inventory
        self.settings = settings
        self.listeners = listeners  # told about plug-in, unplug and cards
        self._pending: dict[str, asyncio.Task[Any]] = {}

    async def read_all(self, topo: Topology, done: frozenset[str] = frozenset()) -> None:
        """Read every device: the pushed ones at once, the polled ones concurrently (but
        those of `done`, read already for this cycle by `read_first`)."""
        self._read_pushed(topo)
        if topo.polled:
            await self._read_polled(topo.polled, wait_pending=True, done=done)

    async def read_first(self, devices: list[DeviceRuntime], timeout: float) -> None:
        """Read some polled devices before the others of the cycle, waiting at most
        `timeout` seconds (a read that takes longer carries over): those the overload guard
        is about to lower, whose readings are then from the moment of the pushed sample
        that made it act, not from after its write."""
        await self._read_polled(devices, wait_pending=False, budget=timeout)

    async def read_woken(self, topo: Topology, done: frozenset[str] = frozenset()) -> None:
        """Read for a cycle a push woke: the pushed devices and the built-in ones at once,
        and the other polled devices again, since a pushed sample must not meet an older
        reading of the same current (a grid sample that already shows a car's new draw
        beside that car's old reading, or the other way round). A device whose read is
        still running from an earlier cycle is not waited for, nor one of `done` (read
        already for this cycle by `read_first`)."""
        self._read_pushed(topo)
        self._read_local(topo)
        if topo.remote:
            await self._read_polled(topo.remote, wait_pending=False, done=done)

    async def _read_polled(self, devices: list[DeviceRuntime], wait_pending: bool,
                           done: frozenset[str] = frozenset(),
                           budget: float | None = None) -> None:
        """Read `devices` (but those of `done`) concurrently within the cycle's time
        budget (or `budget` seconds); a read that outlasts it carries over to a later
        cycle (and is not started twice)."""
        if budget is None:
            budget = min(READ_TIMEOUT_S,
                         max(0.2, self.settings.params.cycle_ms / 1000.0 * 0.6))
        pending = self._pending
        # A read that carried over and has ended since is done with: this cycle reads
        # that device again (its reading is from before this cycle began).
        for dev_id, task in list(pending.items()):
            if task.done():
                del pending[dev_id]
        started = []
        answered = 0
        clock = self.clock
        for rt in devices:
            if rt.dev_id in pending or (done and rt.dev_id in done):
                continue
            driver = rt.driver
            if isinstance(driver, OcppEvse):
                # What the charge point last sent, kept by the central system: no I/O to
                # wait for, so no task of its own (a site may have a thousand of them).
                self._take_latest(rt, driver, clock.now(), clock.monotonic())
                answered += 1
                continue
            pending[rt.dev_id] = task = asyncio.ensure_future(self._read_one(rt))
            started.append(task)
        if answered:
            self.changed()
        tasks = list(pending.values()) if wait_pending else started
        if tasks:
            await asyncio.wait(tasks, timeout=budget)

    def _read_pushed(self, topo: Topology) -> None:
        """Take the latest reading of every HTTP-input device (never waits)."""
        clock = self.clock
        now, mono = clock.now(), clock.monotonic()
        for rt in topo.pushed:
            driver = rt.driver
            if type(driver) is AjaxEvse:
                # The reading the last cycle took, pushed again and fresh, with no card:
                # `latest` would hand it over as it is, and it was plausible then.
                ev, again = rt.evse, driver.last
                if ev is not None and again is ev.source and not again.rfid and (
                        driver.fresh(mono) and not rt.status.com_err):
                    com_ok(rt, mono)
                    assert driver.pushed_at is not None  # (fresh)
                    self._evse_reading(rt, again, now, mono, driver.pushed_at)
                    continue
            assert isinstance(driver, AjaxMeter | AjaxEvse)
            try:
                reading: MeterReading | EvseReading = driver.latest(mono)
            except DeviceError as exc:
                com_error(rt, str(exc) or type(exc).__name__, mono)
                continue
            if isinstance(reading, EvseReading):
                ev = rt.evse
                # The reading the last cycle took again was plausible then.
                problem = None if ev is not None and ev.source is reading else implausible(
                    reading)
                if problem is not None:
                    com_error(rt, problem, mono)
                    continue
                status = rt.status
                if status.com_err:
                    com_ok(rt, mono)
                else:
                    status.last_ok = mono  # _com_ok, the common case
                self._evse_reading(rt, reading, now, mono, driver.pushed_at)
            else:
                self._take(rt, reading, now, mono, driver.pushed_at)

    def _read_local(self, topo: Topology) -> None:
        """Read the controller's own devices at once (their registers, no I/O, no wait).

        A cycle woken by a push runs on the pushed readings; the built-in devices cost
        nothing to read, and a pushed grid sample that already shows a car's new draw
        must not meet that car's old reading.
        """
        clock = self.clock
        now, mono = clock.now(), clock.monotonic()
        for rt in topo.local:
            driver = rt.driver
            assert isinstance(driver, LocalEvse | LocalMeter)
            self._take(rt, driver.read_now(), now, mono)

    def _take_latest(self, rt: DeviceRuntime, driver: OcppEvse, now: float,
                     mono: float) -> None:
        """Read an OCPP connector at once (what `_read_one_now` does, without awaiting)."""
        try:
            reading = driver.latest(mono)
        except Exception as exc:
            _read_failed(rt, exc, mono)
            return
        self._take(rt, reading, now, mono, mono)

    async def _read_one(self, rt: DeviceRuntime) -> None:
        try:
            await self._read_one_now(rt)
        finally:
            self.changed()

    async def _read_one_now(self, rt: DeviceRuntime) -> None:
        driver = rt.driver
        assert driver is not None
        # A reading counts as taken when its read started: the reads of one cycle start
        # together, and one that carries over to a later cycle is that much older.
        started = self.clock.monotonic()
        try:
            # (asyncio.timeout rather than wait_for: no second task per read)
            async with asyncio.timeout(READ_TIMEOUT_S):
                reading: MeterReading | EvseReading = await driver.read()
        except Exception as exc:
            _read_failed(rt, exc, self.clock.monotonic())
            return
        self._take(rt, reading, self.clock.now(), self.clock.monotonic(), started)

    def _take(self, rt: DeviceRuntime, reading: MeterReading | EvseReading, now: float,
              mono: float, taken: float | None = None) -> None:
        """Take a reading taken at `taken` (monotonic; default `mono`, now)."""
        problem = implausible(reading)
        if problem is not None:
            com_error(rt, problem, mono)
            return
        if isinstance(reading, EvseReading):
            com_ok(rt, mono)
            self._evse_reading(rt, reading, now, mono, taken)
            return
        corrected = meter_corrected(rt.config, reading)
        problem = implausible(corrected)  # the factor may make it so
        if problem is not None:
            com_error(rt, problem, mono)
            return
        if self._frozen(rt, corrected):
            return
        com_ok(rt, mono)
        rt.meter = corrected
        rt.taken_at = mono if taken is None else taken

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
            com_error(rt, f"values unchanged for {mono - rt.same_since:.0f} s "
                           "(frozen meter?)", mono)
            return True
        return False

    def _evse_reading(self, rt: DeviceRuntime, reading: EvseReading, now: float,
                      mono: float, taken: float | None = None) -> None:
        ev = rt.evse
        assert ev is not None
        cfg = rt.config
        prev = ev.reading
        ev.reading = ev.source = reading
        ev.taken_at = mono if taken is None else taken
        attached = self.devices.get(cfg.attach) if cfg.attach else None
        if attached is not None and attached.meter is not None and not reading.has_meter:
            reading = replace(reading, currents=attached.meter.currents,
                              power_w=attached.meter.power_w,
                              total_energy_wh=attached.meter.import_wh, has_meter=True,
                              energy_known=attached.meter.import_wh > 0)
            ev.reading = reading
            if attached.taken_at is not None:
                ev.taken_at = attached.taken_at  # its currents are the meter's
        c = reading.currents
        same = prev is not None and c is prev.currents  # the very same currents again
        if prev is None or (not same and c != prev.currents) or ev.changed_at is None:
            # What the grid meter sees of it changes only when its currents do.
            ev.changed_at = ev.taken_at
        rotation = cfg.phase_rotation % 360
        if not same or rotation != ev.building_rotation:
            ev.building_rotation = rotation
            # core.phases.rotate, spelt out (the building's currents are made again only
            # when the EVSE's currents or its rotation are another)
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
        if plugged and (reading.departure is not None or reading.req_energy_wh is not None):
            reported(ev, reading.departure, reading.req_energy_wh)
        if plugged == was_plugged and prev is not None and not reading.rfid:
            return
        if plugged and not was_plugged:
            ev.plugged = True
            ev.plugged_at = now
            ev.plug_energy_wh = ev.total_energy_wh
            ev.needs_auth = self.inventory.needs_auth(rt)
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
            ev.needs_auth = self.inventory.needs_auth(rt)
        if reading.rfid:
            log.info("%s (%s): RFID/PIN %s presented", rt.dev_id, rt.config.name, reading.rfid)
            for listener in self.listeners:
                listener.on_rfid(rt, reading.rfid, now)

    def cancel(self) -> None:
        """Stop the reads still running (at shutdown)."""
        for task in self._pending.values():
            task.cancel()


def _read_failed(rt: DeviceRuntime, exc: Exception, mono: float) -> None:
    """A read that raised (call it from the except clause): what the device or the link
    said is its communication error; anything else is a fault of ours, logged with its
    traceback, and the device counts as not answering."""
    if isinstance(exc, DeviceError | TimeoutError | OSError):
        com_error(rt, str(exc) or type(exc).__name__, mono)
    else:
        log.exception("reading %s failed", rt.dev_id)
        com_error(rt, f"internal error: {exc}", mono)
