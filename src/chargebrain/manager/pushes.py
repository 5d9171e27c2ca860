"""Pushed readings (HTTP input, OCPP) and which of them wake a control cycle at once.

A pushed reading is kept by its device's driver and taken by the next cycle. HTTP input
pushes by device id (`push_meter`, `push_evse`); another feeder (the OCPP central system)
hands its driver's readings to `feed_evse`. It wakes a
cycle at once when it matters: an EVSE's first reading or one after a communication
error, a changed state, an RFID, a reading of another kind, a phase drawing clearly more
than the EVSE was given or drew; a meter's first reading or one after an error, one the
last decision waited for (see `inputs.measurements`: a meter older than the EVSE readings
beside it lets nobody be raised), or one outside the band that the last decision set for
it (`meter_bands`). Thresholds and why:
docs/decisions.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from chargebrain.clock import Clock
from chargebrain.core.balancer import Measurement
from chargebrain.core.model import EvseReading, MeterReading
from chargebrain.core.phases import Phases
from chargebrain.devices.ajax import AjaxEvse, AjaxMeter
from chargebrain.devices.ocpp import OcppEvse
from chargebrain.manager import config as C
from chargebrain.manager.config import ConfigError
from chargebrain.manager.site import VOLTAGE
from chargebrain.manager.state import DeviceRuntime, WakeBand
from chargebrain.manager.topology import LOAD_ROLES, Topology

#: A pushed EVSE reading wakes a cycle at once when a phase draws this much (mA) more
#: than the EVSE was given or drew at the last decision, whichever is more. EVSE meters
#: are good to about 1 % (0.16 A at 16 A): 1 A is far outside their noise, well inside
#: what the reaction budget allows.
WAKE_EVSE_OVER_MA = 1000
#: A pushed meter reading wakes a cycle at once when a phase of the load it measures is
#: this much (mA) above the value the last decision used, beyond what that decision
#: counted on top of it (see `meter_bands`); a meter a formula reads wakes it when a
#: phase moves this much either way (or its power by this much at 230 V). Grid meters are
#: good to about 0.5 % (1 A at 200 A), and a cycle lowers the current at once.
WAKE_METER_MA = 2000
_INF = float("inf")
_UNBOUNDED = (-_INF, -_INF, -_INF), (_INF, _INF, _INF)


class Pushes:
    """Takes pushed readings (HTTP input) and wakes the loop when one matters."""

    def __init__(self, clock: Clock, devices: Mapping[str, DeviceRuntime],
                 wake: Callable[[], None]) -> None:
        self.clock = clock
        self.devices = devices  # the inventory's devices (the same mapping, kept current)
        self.wake = wake

    def push_meter(self, dev_id: str, reading: MeterReading) -> None:
        """Keep a pushed meter reading; wake a cycle at once if it matters."""
        rt = self._pushed(dev_id, AjaxMeter)
        assert isinstance(rt.driver, AjaxMeter)
        rt.driver.push(reading)
        if _meter_push_matters(rt, reading):
            self.wake()

    def push_evse(self, dev_id: str, reading: EvseReading) -> DeviceRuntime:
        """Keep a pushed EVSE reading; wake a cycle at once if it matters."""
        return self._push_evse(dev_id, reading, self.clock.monotonic())

    def push_evses(self, readings: Iterable[tuple[str, EvseReading]]) -> None:
        """Several pushed EVSE readings (dev_id, reading) at once: as many `push_evse`
        calls at the same moment. Raises ConfigError at the first unknown device."""
        mono = self.clock.monotonic()
        devices = self.devices
        push = self._push_evse
        wake = self.wake
        for dev_id, reading in readings:
            rt = devices.get(dev_id)
            if rt is not None:
                ev = rt.evse
                driver = rt.driver
                if ev is not None and ev.source is reading and type(driver) is AjaxEvse and (
                        not reading.rfid and not rt.status.com_err and rt.dtype.pushed):
                    # The reading the last cycle took, pushed again to an HTTP-input EVSE:
                    # of `_keep_evse`'s tests only the currents can tell (the others
                    # compare it with itself).
                    driver.push(reading, mono)
                    c = reading.currents
                    over = ev.wake_above_ma
                    if c.l1 > over or c.l2 > over or c.l3 > over:
                        wake()
                    continue
            push(dev_id, reading, mono)  # the whole of `push_evse`

    def feed_evse(self, driver: OcppEvse, reading: EvseReading) -> None:
        """A reading that a feeder other than HTTP input hands over for its driver (an
        OCPP charge point's connector): kept, and a cycle woken at once if it matters."""
        rt = self.devices.get(driver.dev_id)
        mono = self.clock.monotonic()
        if rt is None or rt.driver is not driver:
            driver.push(reading, mono)  # a driver the manager no longer uses
            return
        self._keep_evse(rt, driver, reading, mono)

    def _push_evse(self, dev_id: str, reading: EvseReading, mono: float) -> DeviceRuntime:
        rt = self.devices.get(dev_id)
        driver = rt.driver if rt is not None else None
        if rt is None or not isinstance(driver, AjaxEvse) or not rt.dtype.pushed:
            rt = self._pushed(dev_id, AjaxEvse)  # raises
            assert isinstance(rt.driver, AjaxEvse)
            driver = rt.driver
        assert rt is not None
        self._keep_evse(rt, driver, reading, mono)
        return rt

    def _keep_evse(self, rt: DeviceRuntime, driver: AjaxEvse, reading: EvseReading,
                   mono: float) -> None:
        driver.push(reading, mono)
        ev = rt.evse
        if ev is None:
            return
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

    def _pushed(self, dev_id: str, cls: type) -> DeviceRuntime:
        rt = self.devices.get(dev_id)
        if rt is None:
            raise ConfigError(f"no device {dev_id}")
        if rt.fault:
            raise ConfigError(f"{dev_id} cannot run as stored: {rt.fault}")
        if not isinstance(rt.driver, cls) or not rt.dtype.pushed:
            raise ConfigError(f"{dev_id} is not an HTTP input device of that kind")
        return rt


def _meter_push_matters(rt: DeviceRuntime, reading: MeterReading) -> bool:
    if not rt.config.device_enabled:
        return False
    if rt.meter is None or rt.status.com_err or rt.awaited:
        # A first reading, one after an error, or one the last decision waited for (its
        # meter's reading was older than the EVSE readings beside it: nobody was raised).
        return True
    band = rt.wake_band
    if band is None:
        return False
    factor = rt.config.factor * (-1.0 if rt.config.invert else 1.0)
    c = reading.currents
    return band.outside(c.l1 * factor, c.l2 * factor, c.l3 * factor,
                        reading.power_w * factor)


def meter_bands(topo: Topology, measurements: dict[int, Measurement],
                 raw: dict[int, Phases], formula_devices: frozenset[str]) -> None:
    """Set, for every pushed meter, the band outside which a pushed reading wakes a
    cycle at once (`push_meter`).

    A meter that measures a node's load (a grid meter, or where there is none the
    consumption, production and storage meters): a phase WAKE_METER_MA higher than
    the value this decision used, plus what the decision counted above the present
    load (the peak hold, `_held`), wakes the next cycle (lower, for production). A grid
    meter also rises while cars take up current they were just given; the cycle that
    wakes then finds nothing new, but the meter alone cannot tell that from the house
    drawing more, which must not wait. A meter that a formula of the manager reads
    (its id in `formula_devices`): a phase (or the power) moving WAKE_METER_MA either
    way. Any other meter (for display, or one a grid meter makes redundant) waits for
    the periodic cycle.
    """
    margin = float(WAKE_METER_MA)
    for rt in topo.pushed_meters:
        m = rt.meter
        if m is None:
            continue
        cfg = rt.config
        node = cfg.group
        band: WakeBand | None = None
        measured = measurements.get(node)
        counted = cfg.role == C.ROLE_GRID if node in topo.grid else cfg.role in LOAD_ROLES
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
        elif rt.dev_id in formula_devices:
            c = m.currents
            watts = margin / 1000.0 * VOLTAGE
            band = WakeBand(
                (c.l1 - margin, c.l2 - margin, c.l3 - margin),
                (c.l1 + margin, c.l2 + margin, c.l3 + margin),
                (m.power_w - watts, m.power_w + watts))
        rt.wake_band = band
