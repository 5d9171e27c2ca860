"""The demo site behind `make run`: load management at work on a simulated house.

A 3 × 32 A connection with a grid meter, a PV system and a household load; the internal
EVSE (E1), two HTTP-input EVSEs (`Sim-Garage` E2, `Sim-Carport` E3) and an OCPP 1.6J
wallbox (`Sim-OCPP` E4); cars arrive, charge and leave. The simulated devices reach the
charging manager through the same interfaces as real ones: the controller's hardware
interface, the HTTP-input drivers, and the OCPP central system, to which the simulated
wallbox (sim/ocpp_wallbox.py) connects over a real socket. The log tells what happens;
`/metrics` shows it to Prometheus, and with `--mqtt URL` the simulated devices are
published on their own MQTT topics too; every device of the demo is published over
SunSpec (shown when the server runs with `--sunspec-port`).
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from dataclasses import dataclass

from chargebrain.clock import Clock
from chargebrain.core.model import EvseReading, EvseState, MeterReading
from chargebrain.core.phases import Phases, rotate
from chargebrain.manager.config import ROLE_DISPLAY, ROLE_GRID, ROLE_PRODUCTION, DeviceConfig
from chargebrain.manager.runtime import ChargingManager
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.powerbrain.hardware import SimCar, SimEvseHardware, SimS0Input
from chargebrain.sim.ocpp_wallbox import Behaviour, SimWallbox

log = logging.getLogger("chargebrain.demo")
VOLTAGE = 230.0
STEP_S = 1.0


def household_ma(t: float, rng: random.Random) -> Phases:
    """Base load per phase with a slow wave, noise and a cooker now and then."""
    base = [1800 + 700 * math.sin(t / 300.0 + k) for k in range(3)]
    cooker = 9000 if (t % 900) < 240 else 0
    kettle = 8000 if (t % 420) < 60 else 0
    return Phases(round(base[0] + cooker + kettle + rng.gauss(0, 150)),
                  round(base[1] + cooker + rng.gauss(0, 150)),
                  round(base[2] + cooker + rng.gauss(0, 150)))


def pv_w(t: float) -> float:
    """A sunny hour that comes and goes over a 20-minute cycle, with a passing cloud."""
    phase = (t % 1200) / 1200.0
    sun = max(0.0, math.sin(math.pi * phase))
    cloud = 0.4 if 0.45 < phase < 0.55 else 1.0
    return 6000.0 * sun * cloud


@dataclass
class SimPoint:
    """An HTTP-input EVSE and the car behind it."""

    dev_id: str
    name: str
    car: SimCar | None = None
    offered_ma: int = 0
    energy_wh: float = 0.0

    def draw(self) -> Phases:
        car = self.car
        if car is None or not car.wants_energy or self.offered_ma < 6000:
            return Phases()
        amps = min(self.offered_ma, car.max_ma)
        return Phases.on_mask(amps, 1 if car.phases == 1 else 7)


DEMO_DEVICES = (
    DeviceConfig("M3", "meter_ajax", name="Sim-Grid", desc="grid connection", role=ROLE_GRID,
                 number=3, publish_sunspec=True, mqtt_publish=True),
    DeviceConfig("M4", "meter_ajax", name="Sim-PV", desc="PV inverter", role=ROLE_PRODUCTION,
                 number=4, publish_sunspec=True, mqtt_publish=True),
    DeviceConfig("E2", "evse_ajax", name="Sim-Garage", desc="simulated wallbox 22 kW",
                 max_charging_cur=32000, number=2, prio=1, publish_sunspec=True,
                 mqtt_publish=True),
    DeviceConfig("E3", "evse_ajax", name="Sim-Carport", desc="simulated wallbox 11 kW",
                 max_charging_cur=16000, number=3, phase_rotation=120, prio=1,
                 publish_sunspec=True, mqtt_publish=True),
    DeviceConfig("E4", "evse_ocpp", name="Sim-OCPP", desc="simulated OCPP 1.6J wallbox 11 kW",
                 address="Sim-OCPP", id=1, max_charging_cur=16000, number=4,
                 phase_rotation=240, prio=1, publish_sunspec=True, mqtt_publish=True),
)
OCPP_POINT = "E4"

CARS = (
    ("e-Golf (1-phase 32 A)", 32_000, 1, 2500),
    ("Model 3 (3-phase 16 A)", 16_000, 3, 4000),
    ("Zoe (3-phase 32 A)", 32_000, 3, 3000),
    ("Leaf (1-phase 16 A)", 16_000, 1, 1500),
)


@dataclass(frozen=True)
class DemoSite:
    """What the demo drives: the charging manager, and the controller with its simulated
    hardware (the car behind E1, the loads behind the S0 inputs)."""

    clock: Clock
    manager: ChargingManager
    powerbrain: PowerBrain
    hardware: SimEvseHardware
    s0_inputs: tuple[SimS0Input, SimS0Input]
    # The OCPP central system the demo's OCPP wallbox connects to ("": none), and the
    # TLS context it connects with.
    ocpp_url: str = ""
    ocpp_tls: ssl.SSLContext | None = None


def setup_site(app: DemoSite) -> None:
    mgr = app.manager
    if "E2" not in mgr.devices:
        mgr.settings.set(mgr.site.with_changes(title="chargebrain demo", max_total_current=32000,
                                           reserve_current=1000))
        m1 = mgr.devices["M1"].config
        mgr.inventory.upsert_device(m1.with_changes(role=ROLE_DISPLAY, name="Sim-Heatpump S0",
                                                    publish_sunspec=True))
        e1 = mgr.devices["E1"].config
        mgr.inventory.upsert_device(e1.with_changes(publish_sunspec=True))
    for cfg in DEMO_DEVICES:  # (a data directory of an older demo gets what it lacks)
        if cfg.dev_id not in mgr.devices:
            mgr.inventory.upsert_device(cfg)


def ocpp_wallbox(app: DemoSite) -> SimWallbox | None:
    """The simulated wallbox behind E4, if the central system runs."""
    if not app.ocpp_url:
        return None
    cfg = next(c for c in DEMO_DEVICES if c.dev_id == OCPP_POINT)
    password = app.manager.site.ocpp_srv_password or None
    return SimWallbox(app.ocpp_url, cfg.address, app.clock, Behaviour(max_ma=16_000),
                      password=password, tls=app.ocpp_tls, seed=4)


async def run_demo(app: DemoSite) -> None:
    rng = random.Random(42)
    setup_site(app)
    points = [SimPoint("E2", "Sim-Garage"), SimPoint("E3", "Sim-Carport"),
              SimPoint(OCPP_POINT, "Sim-OCPP")]
    box = ocpp_wallbox(app)
    app.s0_inputs[0].load_w = lambda t: 1200.0 + 800.0 * math.sin(t / 200.0)
    next_event = {"E1": 10.0, "E2": 25.0, "E3": 60.0, OCPP_POINT: 3.0}
    log.info("demo: site 3 x 32 A with grid meter M3, PV M4, EVSEs E1 (built in), "
             "E2 Sim-Garage, E3 Sim-Carport, E4 Sim-OCPP (OCPP 1.6J%s)",
             f", connecting to {app.ocpp_url}" if box else ": the central system is off")
    try:
        await _run(app, rng, points, box, next_event)
    finally:
        if box is not None:
            await box.close()


async def _run(app: DemoSite, rng: random.Random, points: list[SimPoint],
               box: SimWallbox | None, next_event: dict[str, float]) -> None:
    clock, mgr, hw = app.clock, app.manager, app.hardware
    e1_car_until = 0.0
    t = 0.0
    while True:
        await clock.sleep(STEP_S)
        t += STEP_S
        # Arrivals and departures.
        if t >= next_event["E1"]:
            if hw.car is None:
                name, max_ma, phases, need = rng.choice(CARS)
                hw.plug(SimCar(max_ma=max_ma, phases=phases, need_wh=need, name=name))
                log.info("demo: %s arrives at E1 (needs %.1f kWh)", name, need / 1000)
                e1_car_until = t + rng.uniform(900, 1800)
                next_event["E1"] = e1_car_until
            else:
                car = hw.unplug()
                log.info("demo: %s leaves E1 with %.2f kWh", car.name if car else "car",
                         (car.charged_wh if car else 0) / 1000)
                next_event["E1"] = t + rng.uniform(60, 240)
        for p in points:
            if t < next_event[p.dev_id]:
                continue
            if p.car is None:
                name, max_ma, phases, need = rng.choice(CARS)
                p.car = SimCar(max_ma=max_ma, phases=phases, need_wh=need, name=name)
                log.info("demo: %s arrives at %s %s (needs %.1f kWh)", name, p.dev_id, p.name,
                         need / 1000)
                next_event[p.dev_id] = t + rng.uniform(900, 2400)
            else:
                log.info("demo: %s leaves %s with %.2f kWh", p.car.name, p.dev_id,
                         p.car.charged_wh / 1000)
                p.car = None
                next_event[p.dev_id] = t + rng.uniform(120, 600)
        # Physics of this second.
        house = household_ma(t, rng)
        pv = pv_w(t)
        evse_building = Phases()
        for p in points:
            rt = mgr.devices.get(p.dev_id)
            if p.dev_id == OCPP_POINT:  # what the wallbox offers, following its profile
                p.offered_ma = box.offer_ma() if box is not None else 0
            else:
                d = rt.evse.decision if rt and rt.evse else None
                p.offered_ma = d.current_ma if d and d.charging_enabled else 0
            draw = p.draw()
            if p.car is not None:
                p.car.charged_wh += draw.total() / 1000.0 * VOLTAGE * STEP_S / 3600.0
            p.energy_wh += draw.total() / 1000.0 * VOLTAGE * STEP_S / 3600.0
            rotation = rt.config.phase_rotation if rt else 0
            evse_building = evse_building + rotate(draw, rotation)
            state = EvseState.WAITING
            if p.car is not None:
                state = EvseState.CHARGING if draw.total() else EvseState.EV_PRESENT
            if p.dev_id == OCPP_POINT:
                if box is not None:  # (with the password as set now, should it change)
                    box.password = mgr.site.ocpp_srv_password or None
                    box.sense(p.car is not None, bool(draw.total()), draw.as_tuple(),
                              p.energy_wh)
                    await box.step()
            elif rt is not None:
                mgr.pushes.push_evse(p.dev_id, EvseReading(
                    state=state, currents=draw, power_w=draw.total() * VOLTAGE / 1000.0,
                    total_energy_wh=p.energy_wh, has_meter=True, model="Sim wallbox"))
        e1 = app.powerbrain.banks["evse"]
        e1_draw = Phases(*(e1.get(f"current_l{i}") * 100 for i in (1, 2, 3)))
        pv_phase = round(pv / 3 / VOLTAGE * 1000)
        grid = house + evse_building + e1_draw - Phases.uniform(pv_phase)
        if "M3" in mgr.devices:
            mgr.pushes.push_meter("M3", MeterReading(
                power_w=grid.total() * VOLTAGE / 1000.0, currents=grid, model="Sim grid meter"))
        if "M4" in mgr.devices:
            mgr.pushes.push_meter("M4", MeterReading(power_w=pv, currents=Phases.uniform(pv_phase),
                                              model="Sim PV inverter"))
