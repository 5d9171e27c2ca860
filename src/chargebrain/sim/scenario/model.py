"""The shape of a scenario file, declared once as pydantic models.

One model per object of the file: `ScenarioShape` at the top; the site, groups, EVSEs,
cars, household and its appliances, PV, battery and meters here, the faults in
`faults.py`, the way values are written (durations, times, names) in `fields.py`. Field
types say what a value may be, so validation, messages naming the field and the JSON
Schema of the format (`json_schema()`) all come from these declarations; a field's
docstring is its description. A rule about one field is a validator of that field; a rule
tying fields of one object together is a model validator reporting the field it concerns.
Rules across objects (ids, references, overlaps, times relative to the start) are
`checks.py`'s. A new setting is a field here, with its docstring; a new kind of object a
new model, and a field where it is written.

This module must never read text or files, and never build the simulator's values.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from chargebrain.core.rules import compile_rules
from chargebrain.shapes import Boolean, Integer, Lowered, Number, OneOf, Parsed, Text, problem_at
from chargebrain.sim.scenario.faults import FaultShape
from chargebrain.sim.scenario.fields import (
    Duration,
    Milliamps,
    Moment,
    Name,
    Part,
    PositiveDuration,
    Share,
    TimeOfDay,
    at_least,
    duration_schema,
    or_null,
)
from chargebrain.sim.scenario.spec import (
    IEC_MIN_MA,
    MAX_EVSE_MA,
    WALLBOX_MODELS,
    ChargeMode,
    Interface,
)

__all__ = ["ScenarioShape", "json_schema"]


# -- the static site -------------------------------------------------------------------------


class SiteShape(Part):
    """Limits at the grid connection, each per phase."""

    max_current_ma: Annotated[int, Integer(1)]
    """The house connection (main fuse), mA per phase."""
    reserve_ma: Milliamps = 0
    """Headroom a manager keeps unused, mA per phase."""
    max_imbalance_ma: Milliamps = 0
    """Largest difference between the phases of the EVSE load, mA; 0: none."""
    max_evse_current_ma: Milliamps = 0
    """The supply line of all EVSEs, mA per phase; 0: none."""
    voltage_v: Annotated[float, Number(lo=100, hi=400)] = 230.0
    """Phase voltage."""

    @model_validator(mode="after")
    def _reserve_below_the_fuse(self) -> SiteShape:
        if self.reserve_ma >= self.max_current_ma:
            message = "must be smaller than max_current_ma"
            raise problem_at(("reserve_ma",), message, self.reserve_ma)
        return self


class MeterShape(Part):
    """How a measuring point reports."""

    delay_s: Duration = 0
    """Seconds late."""
    noise_pct: Annotated[float, Number(lo=0, hi=50)] = 0.0
    """Gaussian noise, % of the value."""
    energy_step_wh: Annotated[float, Number(above=0)] = 10.0
    """Resolution of the energy counter."""
    dropouts_per_hour: Annotated[float, Number(lo=0, hi=3600)] = 0.0
    """Random spells without a reading, per hour (grid and PV meters)."""
    dropout_mean: PositiveDuration = 20
    """Their mean length (exponential, at least 1 s)."""
    spikes_per_hour: Annotated[float, Number(lo=0, hi=3600)] = 0.0
    """Single readings far off the truth, per hour (grid and PV meters)."""
    spike_factor: Annotated[float, Number(lo=0, hi=100)] = 3.0
    """Such a reading is the true one times this, on every phase."""


def _positive_duration_or_null(value: Any) -> int | None:
    return or_null(at_least(1, "must be positive or null"))(value)


class OcppBoxShape(Part):
    """How a simulated OCPP wallbox behaves (an EVSE with `"interface": "ocpp"`)."""

    nullable: ClassVar[frozenset[str]] = frozenset({"drop_every_s"})

    sample_s: Annotated[float, Number(above=0, hi=3600)] = 10.0
    """Seconds between its meter values until the central system sets its interval."""
    status_delay_s: Annotated[float, Number(lo=0, hi=600)] = 1.0
    """A change of its connector's status is reported this many seconds late."""
    ramp_s: Annotated[float, Number(lo=0, hi=600)] = 1.5
    """What it offers the car follows a new limit over this many seconds."""
    drop_every_s: Annotated[
        int | None,
        Parsed(_positive_duration_or_null),
        WithJsonSchema({"anyOf": [duration_schema(1), {"type": "null"}]}),
    ] = None
    """It drops its connection this often on average; null: never."""
    drop_for_s: PositiveDuration = 20
    """A dropped connection stays down this long."""


def _wallbox(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in WALLBOX_MODELS:
        raise ValueError(f"unknown wallbox {value!r} (known: {', '.join(WALLBOX_MODELS)})")
    return value


class EvseShape(Part):
    """A charge point as the charging manager knows it."""

    id: Name
    group: Name | None = None
    """The group it is part of; none: directly under the site."""
    prio: Annotated[int, Integer()] = 1
    min_ma: Annotated[int, Integer(IEC_MIN_MA, MAX_EVSE_MA)] = IEC_MIN_MA
    max_ma: Annotated[int, Integer(IEC_MIN_MA, MAX_EVSE_MA)] = 16_000
    phase_rotation: Annotated[int, OneOf(0, 120, 240)] = 0
    """At 120 the EVSE's L1, L2, L3 sit on the building's L2, L3, L1."""
    used_phases: Annotated[int, OneOf(1, 3)] = 3
    """Phases wired to the EVSE."""
    interface: Annotated[Interface, Lowered(Interface, "interface")] = Interface.HTTP
    """How the charging manager reaches it: an HTTP-input EVSE, the controller's own EVSE
    (at most one), another Power Brain over Modbus TCP, an OCPP 1.6J wallbox that
    connects to the central system, or a maker's wallbox (`wallbox`)."""
    ocpp: OcppBoxShape | None = None
    """How the OCPP wallbox behaves (only with `"interface": "ocpp"`)."""
    wallbox: Annotated[str | None, Parsed(_wallbox, "string")] = None
    """With interface "wallbox": the simulated wallbox, by dev_type (evse_heidelberg,
    evse_alfen_evepro, ...); the manager drives it through its bundled definition or driver."""
    mode: Annotated[ChargeMode, Lowered(ChargeMode, "mode")] = ChargeMode.ALWAYS
    """What it charges from: "always" (whatever the site allows; no charging rule),
    "surplus" (only the PV surplus: the vendor's rule mode 5) or "solar" (up to the PV
    production: rule mode 2). The manager gets it as an EVSE charging rule, before `rules`."""
    undercut: Annotated[int | None, Parsed(or_null(at_least(0, "must not be negative"))),
                        WithJsonSchema(duration_schema(0))] = None
    """The surplus or solar rule's undercut time (`udur`): how long the car keeps its
    minimum after the surplus fell below it; none: the rule has no `udur`, and the
    manager's default applies."""
    meter: MeterShape | None = None
    """Its own meter's delay, noise and energy resolution; none: the scenario's
    `meters.evse`."""
    rules: list[dict[str, Any]] | dict[str, Any] | None = None
    """Charging rules as the manager's API takes them (`charging_rules`: a list of classic
    rule objects, e.g. a time window or a price level; or a `crule_set` object), after
    the one `mode` makes."""

    phase_switching: Annotated[bool, Boolean()] = False
    """A Power Brain (`powerbrain` or `modbus`) that may switch between one and three
    phases with a car plugged in; the manager switches it automatically for surplus
    charging (`phase_switch_auto`)."""

    @field_validator("rules")
    @classmethod
    def _rules_compile(cls, value: object) -> object:
        if value is not None:
            errors = compile_rules(value).errors
            if errors:
                raise ValueError("; ".join(errors))
        return value

    @model_validator(mode="after")
    def _min_within_max(self) -> EvseShape:
        if self.min_ma > self.max_ma:
            raise problem_at(("min_ma",), f"must not exceed max_ma ({self.max_ma})", self.min_ma)
        if self.ocpp is not None and self.interface is not Interface.OCPP:
            raise problem_at(("ocpp",), 'only for an EVSE with "interface": "ocpp"')
        if (self.interface is Interface.WALLBOX) != (self.wallbox is not None):
            raise problem_at(("wallbox",), 'a wallbox is named with interface "wallbox", '
                             "and that interface needs one", self.wallbox)
        if self.phase_switching and self.interface not in (
                Interface.POWERBRAIN, Interface.MODBUS):
            raise problem_at(("phase_switching",), 'only a Power Brain ("interface": '
                             '"powerbrain" or "modbus") switches phases')
        if self.phase_switching and self.used_phases != 3:
            raise problem_at(("phase_switching",), "needs three phases wired (used_phases 3)")
        return self


# -- what happens on the site ------------------------------------------------------------------


def _positive_or_null(value: Any) -> int | None:
    return or_null(at_least(1, "must be positive or null"))(value)


class PlanShape(Part):
    """What the car tells its EVSE about its stay (ISO 15118: departure and energy), which
    the EVSE reports to the charging manager: its departure plan."""

    departure: Moment | None = None
    """When it says it leaves (after `arrive`); default: when it leaves."""
    energy_kwh: Annotated[float | None, Number(lo=0)] = None
    """The energy it asks for in the session; default: its `need_kwh`."""
    after: Duration = 0
    """It tells this long after it arrives."""


class CarShape(Part):
    """A car: when it is plugged in where, and how it behaves."""

    nullable: ClassVar[frozenset[str]] = frozenset({"sleep_after_s", "wake_after_s"})

    id: Name
    evse: Name
    """The EVSE it is plugged into."""
    arrive: Moment
    leave: Moment
    """After `arrive`: "07:30" after an evening arrival is the next morning."""
    need_kwh: Annotated[float, Number(lo=0)]
    """The car stops by itself once it has taken this much."""
    max_ma: Annotated[int, Integer(1, MAX_EVSE_MA)] = 16_000
    phases: Annotated[int, OneOf(1, 2, 3)] = 3
    """Phases the car charges on: 1, 2 (L1 and L2 of its EVSE) or 3."""
    min_start_ma: Annotated[int, Integer(1)] = IEC_MIN_MA
    """Offered less than this, the car draws nothing."""
    capacity_kwh: Annotated[float, Number(above=0)] = 60.0
    soc: Share = 0.3
    """State of charge at arrival, 0..1."""
    lag_s: Duration = 3
    """Time the draw takes to ramp to a new limit."""
    taper_soc: Annotated[float, Number(above=0, hi=1)] = 0.8
    """Above this state of charge the draw falls towards zero at 100 %."""
    sleep_after_s: Annotated[
        int | None,
        Parsed(_positive_or_null),
        WithJsonSchema({"anyOf": [duration_schema(1), {"type": "null"}]}),
    ] = None
    """Offered nothing this long, it sleeps; null: never."""
    wake_after_s: Annotated[
        int | None,
        Parsed(or_null(at_least(0, "must not be negative"))),
        WithJsonSchema({"anyOf": [duration_schema(0), {"type": "null"}]}),
    ] = 0
    """Offered enough this long wakes it; null: only a control-pilot interruption."""
    plan: PlanShape | None = None
    """The departure plan it announces; none: it announces nothing."""

    @model_validator(mode="after")
    def _starts_within_max(self) -> CarShape:
        if self.min_start_ma > self.max_ma:
            raise problem_at(
                ("min_start_ma",), f"must not exceed max_ma ({self.max_ma})", self.min_start_ma
            )
        return self

    def stay(self, start_tod: int) -> tuple[int, int]:
        """Arrival and departure in seconds since the start of a run starting at `start_tod`."""
        arrive = self.arrive.resolve(start_tod, 0)
        return arrive, self.leave.resolve(start_tod, arrive + 1)

    def announced(self, start_tod: int) -> tuple[int, int, float] | None:
        """The plan it announces: (when it tells, the departure it gives, in seconds
        since the start of a run starting at `start_tod`, and the energy in kWh)."""
        if self.plan is None:
            return None
        arrive, leave = self.stay(start_tod)
        p = self.plan
        departure = leave if p.departure is None else p.departure.resolve(start_tod, arrive + 1)
        energy = self.need_kwh if p.energy_kwh is None else p.energy_kwh
        return arrive + p.after, departure, energy


def _window_in_order(window: tuple[int, int] | None) -> tuple[int, int] | None:
    if window is not None and window[1] <= window[0]:
        raise ValueError("to must be after from (within one day)")
    return window


class RandomStarts(Part):
    """Starts at random times of day."""

    count: Annotated[int, Integer(0)]
    """Starts per day."""
    window: Annotated[tuple[TimeOfDay, TimeOfDay] | None, AfterValidator(_window_in_order)] = None
    """["HH:MM", "HH:MM"]: the part of the day they fall in (default: the whole day)."""


class ApplianceShape(Part):
    """A household consumer switched on at times of day: fixed, random or periodic."""

    name: Name
    power_w: Annotated[float, Number(above=0)]
    phases: tuple[Annotated[int, OneOf(1, 2, 3)], ...] = ()
    """The building phases it draws on (default all three)."""
    duration: PositiveDuration
    """How long it runs each time."""
    at: tuple[TimeOfDay, ...] = ()
    """Fixed start times of day."""
    random: RandomStarts | None = None
    every: Duration = 0
    """Periodic with this period (random phase); 0: not periodic."""

    @model_validator(mode="after")
    def _starts_somehow(self) -> ApplianceShape:
        if self.every and self.every < self.duration:
            raise problem_at(("every",), "must be at least the duration", self.every)
        if not self.at and not (self.random and self.random.count) and not self.every:
            raise problem_at(("at",), "an appliance needs 'at', 'random' or 'every'")
        return self


def _increasing(points: tuple[tuple[int, float], ...]) -> tuple[tuple[int, float], ...]:
    times = [t for t, _ in points]
    if times != sorted(set(times)):
        raise ValueError("times must be increasing")
    return points


def _sums_to_one(split: tuple[float, float, float]) -> tuple[float, float, float]:
    if abs(sum(split) - 1.0) > 0.01:
        raise ValueError("expected three non-negative shares summing to 1")
    return split


class HouseholdShape(Part):
    """Household (non-EVSE) consumption: a daily curve with noise, plus appliances."""

    base_w: Annotated[
        tuple[tuple[TimeOfDay, Annotated[float, Number(lo=0)]], ...], AfterValidator(_increasing)
    ]
    """[["HH:MM", W], …]: total watts, piecewise linear, repeating daily."""
    phase_split: Annotated[
        tuple[Annotated[float, Number(lo=0)], Annotated[float, Number(lo=0)],
              Annotated[float, Number(lo=0)]],
        AfterValidator(_sums_to_one),
    ] = (1 / 3, 1 / 3, 1 / 3)
    """Shares of L1, L2, L3, summing to 1."""
    noise_pct: Annotated[float, Number(lo=0, hi=100)] = 5.0
    """Standard deviation of a slow random wander, % of the curve."""
    noise_tau_s: PositiveDuration = 60
    """Correlation time of the wander."""
    appliances: tuple[ApplianceShape, ...] = ()


def _low_to_high(depth: tuple[float, float]) -> tuple[float, float]:
    if depth[0] > depth[1]:
        raise ValueError("expected [low, high] within 0..1")
    return depth


class CloudsShape(Part):
    """Cloud dips: a Poisson process over daylight."""

    per_hour: Annotated[float, Number(lo=0)] = 0.0
    """Mean number of dips per daylight hour."""
    mean_duration: PositiveDuration = 300
    depth: Annotated[tuple[Share, Share], AfterValidator(_low_to_high)] = (0.3, 0.8)
    """[low, high]: the fraction of production lost, uniform in that range."""
    at: tuple[tuple[TimeOfDay, PositiveDuration, Share], ...] = ()
    """[["HH:MM", duration, depth], …]: dips at fixed times of day besides the random ones
    (depth: the fraction of production lost)."""


class PvShape(Part):
    """A PV plant behind a three-phase symmetric inverter."""

    peak_kw: Annotated[float, Number(above=0)]
    sunrise: TimeOfDay
    sunset: TimeOfDay
    clouds: CloudsShape = CloudsShape()

    @model_validator(mode="after")
    def _sun_sets_after_it_rises(self) -> PvShape:
        if self.sunset <= self.sunrise:
            raise problem_at(("sunset",), "must be after sunrise")
        return self


class BatteryShape(Part):
    """A home battery balancing household load against PV (it does not see the EVSEs)."""

    capacity_kwh: Annotated[float, Number(above=0)]
    max_power_w: Annotated[float, Number(above=0)]
    soc: Share = 0.5


class MetersShape(Part):
    """The grid meter, the PV meter and the EVSEs' meters (one setting for all)."""

    grid: MeterShape = MeterShape()
    pv: MeterShape = MeterShape()
    evse: MeterShape = MeterShape()


class GroupShape(Part):
    """A group of EVSEs behind its own feed (a sub-distribution), possibly nested."""

    id: Name
    max_current_ma: Annotated[int, Integer(1)]
    """The group's feed, mA per phase."""
    parent: Name | None = None
    """The group this one is part of (no cycles)."""
    prio: Annotated[int, Integer()] = 1
    household: HouseholdShape | None = None
    """The group's own consumers (a workshop, a flat) behind its feed: they count against
    the group's limit and, with the rest of the house, against the connection."""
    meter: MeterShape | None = None
    """A meter at the group's feed (its consumers and its EVSEs, signed per phase), with
    its quality; none: the group's own load is not measured (only the grid meter sees it)."""



# -- the whole file --------------------------------------------------------------------------


def _some_evse(evses: tuple[EvseShape, ...]) -> tuple[EvseShape, ...]:
    if not evses:
        raise ValueError("at least one EVSE is required")
    return evses


class ScenarioShape(Part):
    """A site simulator scenario: the site, and what happens on it."""

    model_config = ConfigDict(title="chargebrain scenario")

    schema_ref: Annotated[str | None, Text()] = Field(None, alias="$schema")
    """The JSON Schema of this format, for editors; not read."""
    name: Name
    description: Annotated[str, Text()] = ""
    start: TimeOfDay = Field(0, json_schema_extra={"default": "00:00"})
    """Time of day at the start of the run."""
    duration: PositiveDuration
    """Length of the run."""
    cycle_s: Annotated[
        int,
        Parsed(at_least(1, "must be at least 1 s and at most the duration")),
        WithJsonSchema(duration_schema(1)),
    ] = 3
    """The control cycle: how often the devices report and the policy decides."""
    seed: Annotated[int, Integer()] = 0
    """Seed of every random part (household, clouds, meter noise)."""
    site: SiteShape
    groups: tuple[GroupShape, ...] = ()
    evses: Annotated[tuple[EvseShape, ...], AfterValidator(_some_evse)]
    cars: tuple[CarShape, ...] = ()
    """Cars on one EVSE must not overlap."""
    household: HouseholdShape | None = None
    pv: PvShape | None = None
    battery: BatteryShape | None = None
    meters: MetersShape = MetersShape()
    """Ideal by default."""
    faults: tuple[FaultShape, ...] = ()


def _comments_allowed(node: Any) -> None:
    """Every object that refuses unknown keys takes `_`-prefixed ones (comments)."""
    if isinstance(node, dict):
        if node.get("additionalProperties") is False:
            node["patternProperties"] = {"^_": {}}
        for value in node.values():
            _comments_allowed(value)
    elif isinstance(node, list):
        for value in node:
            _comments_allowed(value)


def json_schema() -> dict[str, Any]:
    """JSON Schema of a scenario file (JSON or YAML), for editors and other tools."""
    schema = ScenarioShape.model_json_schema()
    _comments_allowed(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
