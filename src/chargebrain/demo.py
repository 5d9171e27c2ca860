"""The demo site behind `make run`: a simulated car and household on the controller.

A car plugs into the internal EVSE, charges until it has what it needs, leaves, and comes
back; S0 meter 1 counts a household load. The log tells what happens.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from chargebrain.powerbrain.hardware import SimCar

if TYPE_CHECKING:
    from chargebrain.app import App

log = logging.getLogger("chargebrain.demo")


def household_w(t: float) -> float:
    """A base load with a slow wave and a cooker every 10 minutes."""
    base = 450 + 150 * math.sin(t / 90.0)
    cooker = 2500 if (t % 600) < 120 else 0
    return base + cooker


async def run_demo(app: App) -> None:
    clock = app.clock
    app.s0_inputs[0].load_w = household_w
    cars = [
        SimCar(max_ma=16_000, phases=3, need_wh=1500, name="demo car (3-phase, 16 A)"),
        SimCar(max_ma=32_000, phases=1, need_wh=800, name="demo car (1-phase, 32 A)"),
    ]
    visit = 0
    while True:
        await clock.sleep(5)
        car = cars[visit % len(cars)]
        car.charged_wh = 0.0
        app.hardware.plug(car)
        log.info("demo: %s plugged in at the internal EVSE (E1), needs %.1f kWh",
                 car.name, (car.need_wh or 0) / 1000)
        while car.wants_energy:
            await clock.sleep(5)
        log.info("demo: %s is full (%.2f kWh charged)", car.name, car.charged_wh / 1000)
        await clock.sleep(30)
        app.hardware.unplug()
        log.info("demo: %s left", car.name)
        visit += 1
        await clock.sleep(20)
