"""What a scenario is once read: the frozen values the simulator runs on.

A scenario (`Scenario`) is the static site (`Site`: limits, groups, EVSEs) and what happens
on it (cars, household, PV, battery, meters, faults), every time already in whole seconds
since the start of the run (`start_s` keeps the time of day at the start, so daily
profiles line up). The runner, the policies, the metrics and the optimum read these.

This module must never read files or text, validate input or hold mutable state; the
file format is declared in `model.py` and turned into these values by `build.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol, TypeVar

DAY_S = 86_400
IEC_MIN_MA = 6_000
MAX_EVSE_MA = 80_000


# ---------------------------------------------------------------------------------------
# The static site: what a charging manager is configured with.


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """Limits at the grid connection, all per phase in mA."""

    max_current_ma: int  # the house connection (main fuse), per phase
    reserve_ma: int = 0  # headroom a manager keeps unused
    max_imbalance_ma: int = 0  # largest allowed difference between phases of EVSE load; 0 = none
    max_evse_current_ma: int = 0  # dedicated supply line of all EVSEs, per phase; 0 = none
    voltage_v: float = 230.0


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A group of EVSEs behind its own feed (e.g. a sub-distribution), possibly nested."""

    id: str
    max_current_ma: int  # per phase
    parent: str | None = None
    prio: int = 1
    household: HouseholdSpec | None = None  # its own consumers, behind its feed
    meter: MeterSpec | None = None  # a meter at its feed (its consumers and EVSEs)


@dataclass(frozen=True, slots=True)
class OcppBoxSpec:
    """How a simulated OCPP wallbox behaves (sim/ocpp_wallbox.py)."""

    sample_s: float = 10.0  # meter values, until the central system sets its interval
    status_delay_s: float = 1.0  # a change of status is reported this late
    ramp_s: float = 1.5  # what it offers follows a new limit over this time
    drop_every_s: int | None = None  # mean time between dropped connections; None: never
    drop_for_s: int = 20  # how long a dropped connection stays down


@dataclass(frozen=True, slots=True)
class EvseSpec:
    """One charge point as the charging manager knows it."""

    id: str
    group: str | None = None
    prio: int = 1
    min_ma: int = IEC_MIN_MA
    max_ma: int = 16_000
    phase_rotation: int = 0  # 0/120/240: at 120 the EVSE's L1, L2, L3 sit on building L2, L3, L1
    used_phases: int = 3  # phases wired to the EVSE: 1 or 3
    # How the charging manager reaches it: "http" (an HTTP-input EVSE pushing its
    # readings), "powerbrain" (the controller's own EVSE, through its hardware interface),
    # "modbus" (another Power Brain, over Modbus TCP), "ocpp" (an OCPP 1.6J wallbox
    # connected to the central system; `ocpp` says how it behaves) or "wallbox" (a simulated
    # wallbox of a maker, `wallbox` its dev_type, driven through its charger definition)
    interface: str = "http"
    mode: str = "always"  # "always", "surplus" (PV surplus only) or "solar" (up to PV)
    undercut_s: int | None = None  # the surplus/solar rule's undercut; None = not given
    rules_json: str = ""  # further charging rules as the API takes them, JSON text
    meter: MeterSpec | None = None  # its own meter's quality; None = the scenario's EVSE meter

    ocpp: OcppBoxSpec | None = None
    wallbox: str = ""
    phase_switching: bool = False  # a Power Brain the manager switches between 1 and 3 phases

    @property
    def from_sun(self) -> bool:
        """It charges from the surplus or the production only."""
        return self.mode != ChargeMode.ALWAYS


class ChargeMode(StrEnum):
    """What an EVSE charges from."""

    ALWAYS = "always"
    SURPLUS = "surplus"
    SOLAR = "solar"


class Interface(StrEnum):
    """How the charging manager reaches an EVSE."""

    HTTP = "http"  # an HTTP-input EVSE pushing its readings
    POWERBRAIN = "powerbrain"  # the controller's own EVSE, through its hardware interface
    MODBUS = "modbus"  # another Power Brain, over Modbus TCP
    OCPP = "ocpp"  # an OCPP 1.6J wallbox connected to the central system
    WALLBOX = "wallbox"  # a simulated wallbox of a maker (WALLBOX_MODELS)


INTERFACES = tuple(i.value for i in Interface)
#: The simulated wallboxes a scenario may use (sim/wallboxes/catalog.py), by dev_type.
WALLBOX_MODELS = ("evse_abl_emh1", "evse_alfen_evepro", "evse_go_e_homeplus_mobile",
                  "evse_heidelberg", "evse_keba_c_x", "evse_mennekes_hcc3",
                  "evse_phoenix_ev_eth", "evse_smartevse", "evse_vestel_evc04", "evse_wallbe",
                  "evse_webasto_next")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


_T = TypeVar("_T", bound=_HasId)


def _by_id(items: Iterable[_T], item_id: str) -> _T:
    """The item with this id (KeyError if none)."""
    for item in items:
        if item.id == item_id:
            return item
    raise KeyError(item_id)


@dataclass(frozen=True, slots=True)
class Site:
    """Everything static about the site: limits, groups and EVSEs."""

    limits: SiteLimits
    groups: tuple[GroupSpec, ...] = ()
    evses: tuple[EvseSpec, ...] = ()

    def evse(self, evse_id: str) -> EvseSpec:
        return _by_id(self.evses, evse_id)

    def group(self, group_id: str) -> GroupSpec:
        return _by_id(self.groups, group_id)

    def group_chain(self, group_id: str | None) -> tuple[str, ...]:
        """The group and all its ancestors, innermost first (empty for the main group)."""
        chain: list[str] = []
        by_id = {g.id: g for g in self.groups}
        current = group_id
        while current is not None and current not in chain:
            chain.append(current)
            current = by_id[current].parent
        return tuple(chain)


# ---------------------------------------------------------------------------------------
# What happens on the site.


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """A departure plan a car announces through its EVSE (ISO 15118)."""

    at_s: int  # when it tells (seconds since the start)
    departure_s: int  # the departure it gives (seconds since the start)
    energy_kwh: float  # the energy it asks for in the session


@dataclass(frozen=True, slots=True)
class CarSpec:
    """A car: when it is plugged in where, and how it behaves."""

    id: str
    evse: str
    arrive_s: int
    leave_s: int
    need_kwh: float  # the car stops by itself once it has taken this much
    max_ma: int = 16_000
    phases: int = 3
    min_start_ma: int = IEC_MIN_MA  # offered less than this, the car draws nothing
    capacity_kwh: float = 60.0
    soc: float = 0.3  # at arrival, 0..1
    lag_s: float = 3.0  # time the draw takes to ramp to a new limit
    taper_soc: float = 0.8  # above this state of charge the draw falls towards zero at 100 %
    sleep_after_s: float | None = None  # offered nothing this long, it sleeps; None = never
    wake_after_s: float | None = 0.0  # offered enough this long wakes it; None = only a CP cycle
    plan: PlanSpec | None = None  # the departure plan it announces, if any


@dataclass(frozen=True, slots=True)
class ApplianceSpec:
    """A household consumer switched on at times of day (fixed, random or periodic)."""

    name: str
    power_w: float
    phase_mask: int  # bit0 = L1
    duration_s: int
    at_s: tuple[int, ...] = ()  # fixed start times of day
    random_count: int = 0  # random starts per day ...
    random_window_s: tuple[int, int] = (0, DAY_S)  # ... within this window of the day
    every_s: int = 0  # periodic with this period (random phase), 0 = not periodic


@dataclass(frozen=True, slots=True)
class HouseholdSpec:
    """Household (non-EVSE) consumption: a daily curve with noise, plus appliances."""

    base_w: tuple[tuple[int, float], ...]  # (time of day s, total W), piecewise linear, daily
    phase_split: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    noise_pct: float = 5.0  # standard deviation of a slow random wander, % of the base
    noise_tau_s: float = 60.0  # its correlation time
    appliances: tuple[ApplianceSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class CloudSpec:
    per_hour: float = 0.0  # mean number of cloud dips per daylight hour
    mean_duration_s: float = 300.0
    depth: tuple[float, float] = (0.3, 0.8)  # fraction of production lost, uniform in range
    at: tuple[tuple[int, int, float], ...] = ()  # fixed dips: (time of day, duration, depth)


@dataclass(frozen=True, slots=True)
class PvSpec:
    """A PV plant behind a three-phase symmetric inverter."""

    peak_kw: float
    sunrise_s: int  # time of day
    sunset_s: int
    clouds: CloudSpec = field(default_factory=CloudSpec)


@dataclass(frozen=True, slots=True)
class BatterySpec:
    """A home battery that balances household load against PV (it does not see the EVSEs)."""

    capacity_kwh: float
    max_power_w: float
    soc: float = 0.5


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """How a measuring point reports: `delay_s` late, with gaussian noise in % of the value."""

    delay_s: int = 0
    noise_pct: float = 0.0
    energy_step_wh: float = 10.0  # resolution of the energy counter
    dropouts_per_hour: float = 0.0  # random spells without a reading ...
    dropout_mean_s: float = 20.0  # ... lasting this long on average (exponential, ≥ 1 s)
    spikes_per_hour: float = 0.0  # single readings that are far off ...
    spike_factor: float = 3.0  # ... by this factor on every phase


@dataclass(frozen=True, slots=True)
class MetersSpec:
    grid: MeterSpec = field(default_factory=MeterSpec)
    pv: MeterSpec = field(default_factory=MeterSpec)
    evse: MeterSpec = field(default_factory=MeterSpec)


class FaultKind(StrEnum):
    METER_STALE = "meter_stale"  # the meter keeps repeating one reading
    METER_DROPOUT = "meter_dropout"  # the meter delivers no reading
    EVSE_OFFLINE = "evse_offline"  # no reading, commands are not received
    CAR_UNDERDRAW = "car_underdraw"  # the car draws less than offered
    CAR_OVERDRAW = "car_overdraw"  # the car draws more than offered


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: FaultKind
    target: str  # meter name ("grid", "pv"), EVSE id or car id
    start_s: int
    end_s: int
    factor: float = 1.0  # car_underdraw: draws offered × factor − offset_ma
    offset_ma: int = 0  # car_overdraw: − the extra current
    fail_safe_ma: int | None = None  # evse_offline: current it falls back to; None = keeps last


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    site: Site
    cars: tuple[CarSpec, ...]
    duration_s: int
    cycle_s: int = 3  # period of the control loop
    seed: int = 0
    start_s: int = 0  # time of day at the start of the run
    description: str = ""
    household: HouseholdSpec | None = None
    pv: PvSpec | None = None
    battery: BatterySpec | None = None
    meters: MetersSpec = field(default_factory=MetersSpec)
    faults: tuple[FaultSpec, ...] = ()

    def car(self, car_id: str) -> CarSpec:
        return _by_id(self.cars, car_id)


def with_plans(scenario: Scenario) -> Scenario:
    """The scenario with every car that announces nothing announcing, as it arrives, when
    it leaves and the energy it needs: exact departure plans for every car."""
    cars = tuple(
        c if c.plan is not None else replace(
            c, plan=PlanSpec(at_s=c.arrive_s, departure_s=c.leave_s, energy_kwh=c.need_kwh))
        for c in scenario.cars
    )
    return replace(scenario, cars=cars)
