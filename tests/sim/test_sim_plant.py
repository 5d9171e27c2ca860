"""Household load, PV, home battery and meters of the simulated site."""

from __future__ import annotations

import random

import pytest

from chargebrain.core.phases import Phases
from chargebrain.sim.load import daily_curve, household_series
from chargebrain.sim.meter import Meter
from chargebrain.sim.pv import battery_series, clear_sky_w, pv_series
from chargebrain.sim.scenario import (
    ApplianceSpec,
    BatterySpec,
    CloudSpec,
    HouseholdSpec,
    MeterSpec,
    PvSpec,
)

H = 3600
V = 230.0


def test_daily_curve_is_linear_and_wraps_midnight() -> None:
    pts = ((6 * H, 100.0), (18 * H, 700.0))
    # start at 22:00; at 00:00 (2 h in) the value is on the line from 18:00/700 to 06:00/100
    curve = daily_curve(pts, 22 * H, 33 * H)
    assert curve[0] == pytest.approx(700 - 600 * 4 / 12)
    assert curve[2 * H] == pytest.approx(700 - 600 * 6 / 12)
    assert curve[8 * H] == pytest.approx(100)
    assert curve[14 * H] == pytest.approx(400)
    assert curve[32 * H] == pytest.approx(100)
    assert curve[20 * H] == pytest.approx(700)


def test_household_is_seeded_and_has_its_appliances() -> None:
    spec = HouseholdSpec(
        base_w=((0, 690.0),),
        phase_split=(0.5, 0.25, 0.25),
        noise_pct=10,
        appliances=(
            ApplianceSpec("cooker", 6900, 0b111, 1200, at_s=(18 * H,)),
            ApplianceSpec("kettle", 2300, 0b010, 180, random_count=3,
                          random_window_s=(8 * H, 20 * H)),
        ),
    )
    a = household_series(spec, 17 * H, 3 * H, V, random.Random("x"))
    b = household_series(spec, 17 * H, 3 * H, V, random.Random("x"))
    c = household_series(spec, 17 * H, 3 * H, V, random.Random("y"))
    assert a == b
    assert a != c
    # base 690 W → 3 A total, half on L1; noise 10 % → mean stays about right
    mean_l1 = sum(a[0][: H]) / H
    assert mean_l1 == pytest.approx(1500, rel=0.15)
    # the cooker adds 10 A per phase from 18:00 for 20 minutes
    assert min(a[2][H + 10 : H + 1190]) > 9000
    assert max(a[2][: H - 10]) < 3000
    quiet = household_series(
        HouseholdSpec(base_w=((0, 0.0),), noise_pct=0, appliances=spec.appliances[1:]),
        0, 24 * H, V, random.Random(1),
    )
    assert max(quiet[0]) == 0 and max(quiet[2]) == 0
    on = sum(1 for x in quiet[1] if x > 0)
    assert on == 3 * 180  # three kettle runs on L2 only


def test_pv_day_curve_and_clouds() -> None:
    spec = PvSpec(10.0, 6 * H, 20 * H)
    assert clear_sky_w(spec, 5 * H) == 0
    assert clear_sky_w(spec, 13 * H) == pytest.approx(10_000)
    assert 0 < clear_sky_w(spec, 8 * H) < 10_000
    clear = pv_series(spec, 0, 24 * H, random.Random(1))
    cloudy_spec = PvSpec(10.0, 6 * H, 20 * H, CloudSpec(per_hour=4, depth=(0.5, 0.5)))
    cloudy = pv_series(cloudy_spec, 0, 24 * H, random.Random(1))
    assert max(clear) == pytest.approx(10_000, rel=1e-3)
    assert sum(cloudy) < sum(clear) * 0.95
    assert all(c <= s + 1e-9 for c, s in zip(cloudy, clear, strict=True))
    assert min(c / s for c, s in zip(cloudy, clear, strict=True) if s > 100) == pytest.approx(0.5)


def test_battery_balances_within_power_and_capacity() -> None:
    spec = BatterySpec(capacity_kwh=1.0, max_power_w=2000, soc=0.5)
    net = [-3000.0] * 3600 + [1500.0] * 7200  # surplus, then import
    out = battery_series(spec, net)
    assert out[0] == 2000  # charging at full power
    assert sum(out[:3600]) / 3600 == pytest.approx(500, rel=0.01)  # only 0.5 kWh of room
    assert out[3600] == -1500
    assert sum(-x for x in out[3600:]) / 3600 == pytest.approx(1000, rel=0.01)
    assert out[-1] == 0


def _history(values: list[float]) -> tuple[list[float], list[float], list[float]]:
    return values, [2 * v for v in values], [3 * v for v in values]


def test_meter_delay() -> None:
    hist = _history([float(i) for i in range(100)])
    m = Meter(MeterSpec(delay_s=5), random.Random(0))
    assert m.read(50, hist) == Phases(45, 90, 135)
    assert m.read(3, hist) == Phases(0, 0, 0)
    assert Meter(MeterSpec(), random.Random(0)).read(50, hist) == Phases(50, 100, 150)


def test_meter_noise_is_seeded_gaussian_percent() -> None:
    hist = _history([10_000.0] * 10)
    a = Meter(MeterSpec(noise_pct=2.0), random.Random(3))
    b = Meter(MeterSpec(noise_pct=2.0), random.Random(3))
    ra = [a.read(5, hist) for _ in range(2000)]
    assert ra == [b.read(5, hist) for _ in range(2000)]
    l1 = [r.l1 for r in ra if r is not None]
    mean = sum(l1) / len(l1)
    sd = (sum((x - mean) ** 2 for x in l1) / len(l1)) ** 0.5
    assert mean == pytest.approx(10_000, rel=0.005)
    assert sd == pytest.approx(200, rel=0.1)


def test_meter_dropout_and_stale() -> None:
    hist = _history([float(i) for i in range(100)])
    m = Meter(MeterSpec(delay_s=1), random.Random(0), dropouts=[(10, 20)], stale=[(30, 40)])
    assert m.read(9, hist) == Phases(8, 16, 24)
    assert m.read(10, hist) is None
    assert m.read(19, hist) is None
    assert m.read(20, hist) == Phases(19, 38, 57)
    assert m.read(35, hist) == Phases(29, 58, 87)  # frozen at what it read when it froze
    assert m.read(39, hist) == Phases(29, 58, 87)
    assert m.read(40, hist) == Phases(39, 78, 117)


def test_meter_random_dropouts_and_spikes() -> None:
    hist = _history([1000.0] * (10 * H + 1))
    spec = MeterSpec(dropouts_per_hour=6, dropout_mean_s=30, spikes_per_hour=12,
                     spike_factor=3.0)
    a = Meter(spec, random.Random(4))
    readings = [a.read(t, hist) for t in range(0, 10 * H, 3)]
    b = Meter(spec, random.Random(4))
    assert readings == [b.read(t, hist) for t in range(0, 10 * H, 3)]  # seeded
    missing = sum(r is None for r in readings)
    spikes = sum(r is not None and r.l1 == 3000 for r in readings)
    # about 60 spells of 30 s (10 readings each) and 120 spikes in 10 hours
    assert 200 < missing < 1200
    assert 70 < spikes < 180
    assert all(r is None or r.l1 in (1000, 3000) for r in readings)
    # without them, the meter's noise is drawn as before
    plain = MeterSpec(noise_pct=1.0)
    assert Meter(plain, random.Random(9)).read(5, hist) == Meter(
        plain, random.Random(9)).read(5, hist)
