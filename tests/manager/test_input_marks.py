"""An EVSE's balancer input reused from its marks is the input made from scratch.

`inputs.evse_input` reuses the last input when the reading, the settings and the driver
are the same objects, the marked fields (changed by the session layer, the API, an OCPP
backend) were not set to other values, and what it compares (the communication state,
the rules' wish, the plug-in time, the departure plan, the schedule) is equal. Random
sequences of changes, made the way the manager's parts make them (plain assignments),
must give after every step an input equal to one made without any reuse.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from chargebrain.clock import VirtualClock
from chargebrain.core.balancer import EvseInput
from chargebrain.core.formula import DictEvalContext
from chargebrain.core.model import EvseReading, EvseState
from chargebrain.core.phases import Phases
from chargebrain.devices.ajax import AjaxEvse
from chargebrain.devices.registry import DeviceTypes
from chargebrain.manager.config import DeviceConfig
from chargebrain.manager.formulas import FormulaTable
from chargebrain.manager.inputs import evse_input
from chargebrain.manager.state import DeviceRuntime, EvseRuntime

_STATES = list(EvseState)


def _made_anew(rt: DeviceRuntime, ctx: DictEvalContext, mono: float, now: float,
               formulas: FormulaTable, schedule: int | None) -> EvseInput:
    """The input made without reusing anything (the EVSE's caches left as they were)."""
    ev = rt.evse
    assert ev is not None
    kept = ev.input, ev.input_key, ev.input_cfg, ev.input_seen
    ev.input = ev.input_seen = None
    try:
        return evse_input(rt, ctx, mono, now, formulas, schedule)
    finally:
        ev.input, ev.input_key, ev.input_cfg, ev.input_seen = kept


def _reading(rnd: random.Random) -> EvseReading:
    ma = rnd.choice([0, 0, 6000, 16000, rnd.randrange(0, 32000)])
    return EvseReading(
        state=rnd.choice(_STATES), currents=Phases(ma, ma, rnd.choice([0, ma])),
        power_w=ma * 0.69, has_meter=rnd.random() < 0.8,
        max_current_ma=rnd.choice([None, 0, 10000, 32000]),
        departure=rnd.choice([None, 1e9 + 7200.0]))


def _step(rnd: random.Random, rt: DeviceRuntime, clock: VirtualClock,
          wall: list[float]) -> None:
    """One change as a part of the manager (or a client through the API) makes it;
    `wall`: how far the wall clock is set off the virtual clock's time."""
    ev = rt.evse
    assert ev is not None
    what = rnd.randrange(17)
    if what == 0:
        ev.reading = _reading(rnd)
    elif what == 1:
        ev.ov_cur = rnd.choice([None, 6000, 10000, ev.ov_cur])
    elif what == 2:
        ev.overrides = rnd.choice([0, 1, 2, 4, 7, ev.overrides])
    elif what == 3:
        ev.needs_auth = rnd.random() < 0.5
    elif what == 4:
        ev.authorised = rnd.random() < 0.5
    elif what == 5:
        ev.backend_ma = rnd.choice([None, 8000, 16000])
    elif what == 6:
        ev.rule_wish = rnd.choice([None, 0, 6000, 12000])
    elif what == 7:
        ev.plugged = not ev.plugged
        ev.plugged_at = clock.now() - rnd.choice([0.0, 60.0]) if ev.plugged else None
    elif what == 8:
        ev.plugged_at = rnd.choice([None, clock.now() - 100.0])
    elif what == 9:
        ev.plan_departure = rnd.choice([None, clock.now() + rnd.choice([-5.0, 5.0, 3600.0])])
        ev.plan_energy_wh = rnd.choice([None, 0.0, 5000.0, 20000.0])
    elif what == 10:
        ev.reported_departure = rnd.choice([None, clock.now() + 1800.0])
        ev.reported_energy_wh = rnd.choice([None, 8000.0])
    elif what == 11:
        err = rnd.random() < 0.5
        rt.status.com_err = err
        rt.status.error_since = clock.monotonic() if err else None
    elif what == 12:
        rt.config = replace(rt.config, max_charging_cur=rnd.choice(
            [16000, 10000, rt.config.max_charging_cur, "6000 + 1000"]),
            min_charging_cur=rnd.choice([6000, 8000]))
    elif what == 13:
        rt.driver = AjaxEvse(clock)
    elif what == 14:
        ev.total_energy_wh += rnd.choice([0.0, 500.0])  # the need for a plan moves
    elif what == 15:
        clock.advance(rnd.choice([1.0, 3.0, 600.0]))
    else:
        wall[0] += rnd.choice([-30.0, 45.0])  # the wall clock is set


@pytest.mark.parametrize("seed", range(40))
def test_the_input_reused_from_marks_is_the_one_made_anew(seed: int) -> None:
    rnd = random.Random(seed)
    clock = VirtualClock(start=1e9)
    types = DeviceTypes()
    dtype = types.get("evse_ajax")
    assert dtype is not None
    rt = DeviceRuntime(config=DeviceConfig(dev_id="E1", dev_type="evse_ajax"), dtype=dtype,
                       driver=AjaxEvse(clock), evse=EvseRuntime())
    ctx, formulas = DictEvalContext(), FormulaTable()
    reused = 0
    wall = [0.0]
    for _ in range(150):
        for _ in range(rnd.choice([0, 1, 1, 2])):
            _step(rnd, rt, clock, wall)
        schedule = rnd.choice([None, None, 10000])
        mono, now = clock.monotonic(), clock.now() + wall[0]
        before = rt.evse.input if rt.evse is not None else None
        got = evse_input(rt, ctx, mono, now, formulas, schedule)
        assert got == _made_anew(rt, ctx, mono, now, formulas, schedule)
        reused += got is before
    assert reused > 10  # the shortcut was taken, not only the full path


def test_a_marked_field_set_to_its_own_value_marks_nothing() -> None:
    ev = EvseRuntime()
    marks = ev.marks
    ev.ov_cur = None
    ev.overrides = 0
    assert ev.marks == marks
    ev.ov_cur = 6000
    assert ev.marks == marks + 1
    assert ev.ov_cur == 6000
