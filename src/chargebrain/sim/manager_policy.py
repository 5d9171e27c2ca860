"""The real charging manager as a simulator policy: the production control loop, unchanged.

`ManagerPolicy` builds a `ChargingManager` exactly as the application does — on a
`VirtualClock`, with an in-memory store, a `PowerBrain` without persistence, the device
types and (by default) the charging-rules runtime as its wish provider — and configures it
from the scenario's site the way an installer would: the site limits, one `evse_group`
device per group, one HTTP-input EVSE (`evse_ajax`) per EVSE, and HTTP-input meters for
the grid (role 3), when the site has PV the production (role 2), and for each group with
a meter one at its feed (role 3 in the group). An EVSE with
`"interface": "powerbrain"` is instead the controller's own E1, and one with
`"interface": "modbus"` another Power Brain whose registers a Modbus TCP server serves on
a loopback port: the plant's car sits behind the controller's hardware interface
(controller_evse.py), its firmware runs on the virtual clock, and the manager reads and
writes its registers (directly, or over TCP). One with `"interface": "wallbox"` is a
maker's simulated wallbox (sim/wallboxes/) on a loopback port, the plant's car behind it,
its fail-safes and watchdogs on the virtual clock; the manager drives it through the
bundled charger definition (or KEBA driver) exactly as a real one. (Two quirks that cost
real time per request are left out of scenario runs: the ABL box's missed first frame
and KEBA's pause between datagrams; the tests of those wallboxes keep them.)

The scenario's `cycle_s` is how often the devices report; the manager runs on its own
cycle (`cycle_ms`, by default the vendor's 3 s). Each `decide` sets the virtual clock to
the snapshot's time and pushes the snapshot's readings through the HTTP-input drivers
(`push_meter`, and `push_evses`, which is `push_evse` for many at one moment: the path of
`set_ajax_meter` / `set_ajax_evse`), each of which may wake a cycle as in the
application. Then it asks the manager whether a cycle is due (`due_cycle`, the question
the application's loop asks): the periodic cycle, or one woken by a relevant push. If
so, the cycle runs (`cycle_now`: the application's `cycle`, which never waits for I/O
with HTTP-input devices only; with Power Brain EVSEs, the same `cycle` on the policy's
event loop). It returns per EVSE what `set_ajax_evse` would answer:
the decision's current when charging is enabled, else 0. A reading that is None is
simply not pushed, so the device goes stale after 30 s like a silent real one, and the
manager's own staleness, offline and fail-safe handling decide what happens.

This module must never change how the manager decides (no shortcuts around its cycle, no
cycles other than those its own due logic asks for), read the real clock for simulated
time, or look at the plant's true state.
"""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from chargebrain.clock import VirtualClock
from chargebrain.core.model import EvseReading
from chargebrain.devices.ajax import AjaxEvse
from chargebrain.devices.keba import KebaEvse
from chargebrain.devices.meterdef import load_definitions
from chargebrain.devices.ocpp import OcppHub
from chargebrain.devices.registry import DeviceTypes
from chargebrain.manager import config as C
from chargebrain.manager.assembly import build_manager
from chargebrain.manager.config import DeviceConfig, SiteParams
from chargebrain.manager.persistence import ManagerStore
from chargebrain.manager.rules_runtime import RulesRuntime
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.powerbrain.phase_switch import PhaseSwitchSettings
from chargebrain.servers.modbus_tcp import ModbusTcpServers, PortInUseError
from chargebrain.sim.controller_evse import PlantEvse, SimController
from chargebrain.sim.core_policy import number_evses, number_groups
from chargebrain.sim.group_meters import group_meter_key
from chargebrain.sim.ocpp_site import OcppSite
from chargebrain.sim.policy import GRID, PV, Decision, Snapshot
from chargebrain.sim.rules_of_evse import charging_rules
from chargebrain.sim.scenario import Scenario, Site
from chargebrain.sim.wallboxes.catalog import Served, serve
from chargebrain.sim.wallboxes.modbus_boxes import Abl
from chargebrain.store.db import Store

LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


#: Wall-clock date of the simulated day's midnight (what rules and formulas see as "now").
EPOCH_DAY = datetime(2024, 6, 3, tzinfo=UTC).timestamp()
#: The manager's cycle in the simulator unless told otherwise: the vendor's (cFos: about
#: 3 s). Pushed readings that matter wake cycles in between (docs/decisions.md).
MANAGER_CYCLE_S = 3.0
GRID_METER = "M1"
PV_METER = "M2"


class ManagerPolicy:
    """Drives a real ChargingManager with the simulator's measurements.

    It owns an event loop and runs it inside `decide`, so it is used from synchronous
    code (the runner), never from a coroutine. Close it (or use `with`) after the run.
    """

    def __init__(
        self,
        *,
        cycle_s: float = MANAGER_CYCLE_S,
        rules: bool = True,
        learn_phases: bool = True,
        min_pause_time: int = 300,
        wakeup: bool = True,
        name: str = "manager",
    ) -> None:
        """`cycle_s`: the manager's configured cycle (`cycle_ms`); the runner calls
        `decide` whenever the devices report (the scenario's `cycle_s`). `rules`: install
        the rules runtime as in the application. `learn_phases`: configure three-phase
        EVSEs "determine" (the default of a new EVSE: the manager learns the phases a car
        draws on); False configures all three. `wakeup`: allow the manager to wake
        sleeping cars with a control-pilot interruption (`enable_wakeup` on every EVSE)."""
        if cycle_s <= 0:
            raise ValueError("the manager's cycle must be positive")
        self.name = name
        self.cycle_s = cycle_s
        self.rules = rules
        self.learn_phases = learn_phases
        self.min_pause_time = min_pause_time
        self.wakeup = wakeup
        self.wakes = 0  # control-pilot interruptions handed to the EVSEs
        self.loop = asyncio.new_event_loop()
        self.store = Store(":memory:")
        self.clock = VirtualClock(start=EPOCH_DAY)
        self.plant_evse = PlantEvse()  # behind the controller's own EVSE, if one is used
        self.powerbrain = PowerBrain(None, hardware=self.plant_evse)
        hub = OcppHub()
        self.types = DeviceTypes()  # the bundled definitions join when a wallbox needs them
        self.manager = build_manager(
            self.clock, self.powerbrain, self.types, ManagerStore(self.store), ocpp=hub
        )
        # Scenario EVSEs that are OCPP wallboxes, with the central system they connect to.
        self.ocpp = OcppSite(self.manager, hub, self.clock, self.store, self.loop)
        # Scenario EVSEs that are makers' simulated wallboxes, and their cp interruptions
        self.wallboxes: dict[str, Served] = {}
        self._interruptions: dict[str, int] = {}
        # Scenario EVSEs that are Power Brain EVSEs: the manager's own controller's E1
        # ("powerbrain") and other controllers over Modbus TCP ("modbus").
        self.controllers: dict[str, SimController] = {}
        if rules:
            RulesRuntime().install(self.manager.decider)
        self._site: Site | None = None
        self._devices: list[tuple[str, str]] = []  # (scenario EVSE id, device id)
        # per HTTP-input EVSE (fed through `push_evses`, fixed once configured): its
        # scenario id, its device id, [reading from the snapshot, (device id, what was
        # pushed for it)]
        self._fed: list[tuple[str, str, list[Any]]] = []
        self.periodic_cycles = 0  # manager cycles run because the period was due
        self.woken_cycles = 0  # ... because a pushed reading (or a change) mattered
        self.pushes = 0  # readings pushed
        # Wall time spent in the manager's cycles (s): the policy's time less the pushes
        # and the simulator's side of `decide` (a measurement only, never in `stats`).
        self.cycle_wall_s = 0.0
        self._pv = False
        self._t0 = 0  # time of day at t = 0
        self._last: dict[str, int] = {}
        self._decision = Decision({})
        self._switching: list[str] = []  # EVSEs the manager switches between 1 and 3 phases
        self._group_meters: list[tuple[str, str]] = []  # (snapshot key, meter device id)
        self.closed = False

    @classmethod
    def for_scenario(
        cls,
        scenario: Scenario,
        *,
        rules: bool = True,
        learn_phases: bool = True,
        cycle_s: float | None = None,
        wakeup: bool = True,
    ) -> ManagerPolicy:
        """A policy for a scenario whose devices report every `scenario.cycle_s`; the
        manager's own cycle is `cycle_s` (default MANAGER_CYCLE_S)."""
        return cls(cycle_s=MANAGER_CYCLE_S if cycle_s is None else cycle_s, rules=rules,
                   learn_phases=learn_phases, wakeup=wakeup)

    @property
    def cycles(self) -> int:
        """Manager cycles run so far."""
        return self.periodic_cycles + self.woken_cycles

    def stats(self) -> dict[str, int]:
        """The manager's cycles so far, what ran them, and the readings pushed."""
        return {"manager cycles": self.cycles, "periodic": self.periodic_cycles,
                "woken by a push": self.woken_cycles, "pushes": self.pushes,
                "cars woken": self.wakes}

    # --- configuration -----------------------------------------------------------------

    def _configure(self, site: Site, pv: bool, time_of_day_s: int) -> None:
        if self._site is not None:
            raise ValueError("the site of a run cannot change")
        self._site = site
        self._pv = pv
        mgr = self.manager
        lim = site.limits
        self.clock.set(EPOCH_DAY + time_of_day_s)
        self._t0 = time_of_day_s
        mgr.settings.set(SiteParams(
            title="simulated site",
            max_total_current=lim.max_current_ma,
            reserve_current=lim.reserve_ma,
            max_total_evse_current=lim.max_evse_current_ma,
            max_imbalance_cur=lim.max_imbalance_ma,
            min_pause_time=self.min_pause_time,
            cycle_ms=round(self.cycle_s * 1000),
        ))
        groups = number_groups(site)
        pending = list(site.groups)
        while pending:  # parents first
            rest = []
            for g in pending:
                if g.parent is not None and f"E{groups[g.parent]}" not in mgr.devices:
                    rest.append(g)
                    continue
                mgr.inventory.upsert_device(DeviceConfig(
                    f"E{groups[g.id]}", "evse_group", name=g.id,
                    group=groups[g.parent] if g.parent is not None else 0,
                    max_charging_cur=g.max_current_ma, prio=g.prio,
                ))
            if len(rest) == len(pending):
                raise ValueError(f"groups with unknown parents: {[g.id for g in rest]}")
            pending = rest
        numbers = number_evses(site, groups)
        for e in site.evses:
            dev_id = f"E{numbers[e.id]}"
            used = 0b001 if e.used_phases == 1 else (0 if self.learn_phases else 0b111)
            address = ""
            dev_type = ""
            unit = 1
            if e.interface == "wallbox":
                address, unit = self._wallbox(e.id, e.wallbox)
                dev_type = e.wallbox
            elif e.interface == "powerbrain":
                self.powerbrain.start()
                self.controllers[e.id] = SimController(self.powerbrain, self.plant_evse)
                address = "evse"
            elif e.interface == "modbus":
                address = self._remote_controller(e.id)
            if e.phase_switching:
                # The controller permits switching with a car plugged in (its hardware
                # configuration); its delay is the site's, as the application copies it.
                brain = self.controllers[e.id].brain
                brain.configure_phase_switching(PhaseSwitchSettings(plugged=True))
                brain.phase_switch_delay_s = float(mgr.site.phase_switch_delay)
                self._switching.append(e.id)
            elif e.interface == "ocpp":
                address = self.ocpp.add(e.id, e.ocpp, e.max_ma)
            kind = "evse_ocpp" if e.interface == "ocpp" else (
                "evse_powerbrain" if address else "evse_ajax")
            mgr.inventory.upsert_device(DeviceConfig(
                dev_id, dev_type or kind, name=e.id,
                address=address, id=unit,
                group=groups[e.group] if e.group is not None else 0,
                min_charging_cur=e.min_ma, max_charging_cur=e.max_ma, prio=e.prio,
                phase_rotation=e.phase_rotation, used_phases=used,
                enable_wakeup=self.wakeup, phase_switch_auto=e.phase_switching,
                **charging_rules(e),
            ))
            self._devices.append((e.id, dev_id))
            driver = mgr.devices[dev_id].driver
            if isinstance(driver, KebaEvse):  # the simulated box answers the asking port
                driver.local_port, driver.gap_s = 0, 0.0
        self._fed = [(sid, dev, [None, None]) for sid, dev in self._devices
                     if sid not in self.controllers and sid not in self.ocpp.boxes
                     and sid not in self.wallboxes]
        mgr.inventory.upsert_device(DeviceConfig(GRID_METER, "meter_ajax", name="grid",
                                                 role=C.ROLE_GRID))
        if pv:
            mgr.inventory.upsert_device(DeviceConfig(PV_METER, "meter_ajax", name="pv",
                                           role=C.ROLE_PRODUCTION))
        for g in site.groups:  # a group's meter at its feed: the group's grid meter
            if g.meter is not None:
                dev_id = f"M{3 + len(self._group_meters)}"
                mgr.inventory.upsert_device(DeviceConfig(
                    dev_id, "meter_ajax", name=f"group {g.id}", role=C.ROLE_GRID,
                    group=groups[g.id]))
                self._group_meters.append((group_meter_key(g.id), dev_id))

    def device_id(self, evse_id: str) -> str:
        """The manager's device id (E<n>) of a scenario EVSE."""
        for sid, dev in self._devices:
            if sid == evse_id:
                return dev
        raise KeyError(evse_id)

    # --- the cycle ---------------------------------------------------------------------

    def _as_pushed(self, r: EvseReading) -> EvseReading:
        """The reading as `set_ajax_evse` builds it from a feeder's fields: the feeder
        reports state, currents, power and energy, and a car's departure plan as the
        wallbox has it (`departure` as wall-clock time); it has no field for the current
        being signalled (`max_charging_current` means the EVSE's own maximum), so none is
        sent."""
        if r.max_current_ma is None and r.departure is None:
            return r
        departure = None if r.departure is None else EPOCH_DAY + self._t0 + r.departure
        return EvseReading(  # dataclasses.replace, without its cost
            state=r.state, currents=r.currents, power_w=r.power_w,
            total_energy_wh=r.total_energy_wh, has_meter=r.has_meter, max_current_ma=None,
            rfid=r.rfid, model=r.model, energy_known=r.energy_known, departure=departure,
            req_energy_wh=r.req_energy_wh)

    def decide(self, snapshot: Snapshot) -> Decision:
        if self.closed:
            raise RuntimeError("the policy is closed")
        if self._site is None:
            self._configure(snapshot.site, PV in snapshot.meters,
                            snapshot.time_of_day_s - snapshot.t)
        elif snapshot.site is not self._site:
            raise ValueError("the site of a run cannot change")
        clock = self.clock
        target = EPOCH_DAY + self._t0 + snapshot.t
        if target > clock.now():
            clock.advance(target - clock.now())
        mgr = self.manager
        pushes = 0
        grid = snapshot.meters.get(GRID)
        if grid is not None:
            mgr.pushes.push_meter(GRID_METER, grid)
            pushes += 1
        if self._pv:
            pv = snapshot.meters.get(PV)
            if pv is not None:
                mgr.pushes.push_meter(PV_METER, pv)
                pushes += 1
        for key, dev_id in self._group_meters:  # a silent one is not pushed, goes stale
            reading = snapshot.meters.get(key)
            if reading is not None:
                mgr.pushes.push_meter(dev_id, reading)
                pushes += 1
        readings = snapshot.evses
        controllers = self.controllers
        boxes = self.ocpp.boxes
        if boxes:
            self.ocpp.step(readings)
        wallboxes = self.wallboxes
        for sid, w in wallboxes.items():
            r = readings.get(sid)
            if r is not None:
                c = r.currents
                w.box.sense(r.state.plugged, r.state.charging, (c.l1, c.l2, c.l3))
        if controllers:
            mono = clock.monotonic()
            for sid, ctl in controllers.items():
                r = readings.get(sid)
                if ctl.server is not None and ctl.serving is (r is None):
                    # A remote controller that stops answering (no reading) closes its
                    # port; when it answers again, it listens again.
                    self._serve(ctl, r is not None)
                ctl.tick(r, mono)
        as_pushed = self._as_pushed
        batch: list[tuple[str, EvseReading]] = []
        for sid, dev, seen in self._fed:
            r = readings.get(sid)
            if r is None:
                continue
            item = seen[1]
            if seen[0] is not r or item is None:
                seen[0] = r
                seen[1] = item = (dev, as_pushed(r))
            batch.append(item)
        mgr.pushes.push_evses(batch)  # each as `push_evse`, at the same moment
        self.pushes += pushes + len(batch)
        due = mgr.due_cycle()
        if due is not None:
            if due:
                self.periodic_cycles += 1
            else:
                self.woken_cycles += 1
            started = time.perf_counter()
            if not controllers and not boxes and not wallboxes:
                mgr.cycle_now(poll=due)
            else:  # registers are read and written as in the application (over TCP for
                # the remote controllers and the wallboxes); profiles go to the OCPP wallboxes
                self.loop.run_until_complete(mgr.cycle(poll=due))
            self.cycle_wall_s += time.perf_counter() - started
        elif not controllers and not boxes and not wallboxes:
            return self._decision  # nothing ran: the EVSEs keep their orders
        if boxes:
            self.ocpp.settle()
        currents: dict[str, int] = {}
        wake: list[str] = []
        if due is not None:
            self._take_orders(currents, wake)
        else:  # the others keep their orders; a controller's pilot may have moved on
            currents.update((k, v) for k, v in self._last.items()
                            if k not in controllers and k not in boxes
                            and k not in wallboxes)
        # What each OCPP wallbox offers now (it follows its profile over a second or two).
        currents.update(self.ocpp.offers())
        for sid, ctl in controllers.items():
            # What the controller's pilot offers now (its firmware may change it between
            # the manager's cycles: the end of a CP interruption, the fail-safe current).
            offer = ctl.offer_ma()
            if offer > 0:
                currents[sid] = offer
            if ctl.woken():
                wake.append(sid)
        for sid, w in wallboxes.items():
            offer = w.box.offered_ma()  # its own fail-safe may have changed it
            if offer > 0:
                currents[sid] = offer
            if w.box.cp_interruptions != self._interruptions.get(sid, 0):
                self._interruptions[sid] = w.box.cp_interruptions
                wake.append(sid)
        phases = {sid: 1 if self.controllers[sid].brain.one_phase else 3
                  for sid in self._switching}  # what each switching contactor gives now
        if currents != self._last or phases != self._decision.phases:
            self._last = currents
            self._decision = Decision(currents, phases=phases)
        if wake:
            self.wakes += len(wake)
            return Decision(self._decision.currents, wake=frozenset(wake), phases=phases)
        return self._decision

    def _take_orders(self, currents: dict[str, int], wake: list[str]) -> None:
        """Per HTTP-input EVSE what the answer to `set_ajax_evse` would hand over now."""
        devices = self.manager.devices
        for sid, dev, _seen in self._fed:
            rt = devices[dev]
            ev = rt.evse
            d = ev.decision if ev is not None else None
            if d is not None and d.charging_enabled and d.current_ma > 0:
                currents[sid] = d.current_ma
            if isinstance(rt.driver, AjaxEvse) and rt.driver.wake_pending:
                rt.driver.take_wake()  # what the answer to set_ajax_evse hands over
                wake.append(sid)

    def _serve(self, ctl: SimController, on: bool) -> None:
        assert ctl.server is not None
        self.loop.run_until_complete(ctl.server.start() if on else ctl.server.stop())
        ctl.serving = on

    def _wallbox(self, evse_id: str, dev_type: str) -> tuple[str, int]:
        """Start the simulated wallbox of `evse_id` on loopback; its address and unit."""
        if not self.types.definitions:
            self.types.definitions.update(load_definitions())
        served = self.loop.run_until_complete(serve(dev_type, self.clock.monotonic))
        if isinstance(served.box, Abl):
            served.box.wake_drop = False  # its retry would cost real time every cycle
        self.wallboxes[evse_id] = served
        return served.address, served.unit

    def _remote_controller(self, evse_id: str) -> str:
        """Start another Power Brain for `evse_id`, its EVSE bank served over Modbus TCP
        on a free loopback port; its address for the manager."""
        plant = PlantEvse()
        brain = PowerBrain(None, hardware=plant)
        brain.start()
        for _ in range(5):
            port = _free_port()
            server = ModbusTcpServers([brain.banks["evse"]], LOOPBACK, port)
            try:
                self.loop.run_until_complete(server.start())
            except (PortInUseError, OSError):  # taken meanwhile: try another
                continue
            self.controllers[evse_id] = SimController(brain, plant, server)
            return f"{LOOPBACK}:{port}"
        raise RuntimeError(f"no free port for the controller of {evse_id}")

    # --- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the manager, its event loop and its store (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.ocpp.close()
            self.loop.run_until_complete(self.manager.close())
            for ctl in self.controllers.values():
                if ctl.server is not None and ctl.serving:
                    self._serve(ctl, False)
            for w in self.wallboxes.values():
                self.loop.run_until_complete(w.stop())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            self.store.close()

    def __enter__(self) -> ManagerPolicy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
