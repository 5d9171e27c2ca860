"""Mutable runtime state the manager keeps per device (readings, decisions, sessions).

Owned by the shell; the core never sees these objects, only immutable values built
from them each cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from chargebrain.core.balancer import EvseDecision, EvseInput
from chargebrain.core.model import EvseCommand, EvseReading, MeterReading
from chargebrain.core.phases import ZERO, Phases
from chargebrain.devices.base import EvseDriver, MeterDriver
from chargebrain.devices.registry import DeviceType, Kind
from chargebrain.manager.config import DeviceConfig
from chargebrain.manager.wakeup import WakeTracker

# Override bits as get_dev_info reports them.
OVERRIDE_DISABLE_CHARGING = 1  # C
OVERRIDE_NO_EVSE_RULES = 2  # E
OVERRIDE_NO_USER_RULES = 4  # U


_UNSET = object()


def _marking(name: str) -> property:
    """The attribute `name` of a class, stored as `_name`: a change to another value
    (by anyone: the manager's parts, the API, the session layer, a test) counts up the
    object's `marks`, so that what was made from the attribute can be reused while
    `marks` stays the same (`inputs.evse_input`)."""
    private = "_" + name

    def set_value(self: Any, value: Any) -> None:
        d = self.__dict__
        if d.get(private, _UNSET) != value:
            d["marks"] = d.get("marks", 0) + 1
        d[private] = value

    return property(attrgetter(private), set_value, doc=f"`{name}` (changes are counted)")


def _marked(cls: type, names: tuple[str, ...]) -> None:
    for name in names:
        setattr(cls, name, _marking(name))


@dataclass
class ComStatus:
    com_err: bool = False
    com_errors: int = 0
    last_error: str = ""
    com_state_since: float = 0.0  # monotonic time the com state last changed
    last_ok: float | None = None  # monotonic time of the last good reading
    error_since: float | None = None  # monotonic start of the current error spell


@dataclass(frozen=True, slots=True)
class WakeBand:
    """Per phase (mA, after the meter's factor) and for the power (W): a pushed meter
    reading below `low` or above `high` on any of them matters at once."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    power: tuple[float, float] = (float("-inf"), float("inf"))

    def outside(self, l1: float, l2: float, l3: float, power_w: float) -> bool:
        lo, hi, pw = self.low, self.high, self.power
        return (
            l1 > hi[0] or l2 > hi[1] or l3 > hi[2]
            or l1 < lo[0] or l2 < lo[1] or l3 < lo[2]
            or power_w > pw[1] or power_w < pw[0]
        )


@dataclass
class EvseRuntime:
    # Changes of the marked fields so far (see `_marking`); never goes down.
    marks: int = field(default=0, compare=False, repr=False)
    reading: EvseReading | None = None
    source: EvseReading | None = None  # `reading` as read, before an attached meter's values
    decision: EvseDecision | None = None
    building_currents: Phases = ZERO
    building_rotation: int = -1  # the phase rotation `building_currents` was made with
    last_set_ma: int = -1
    last_command: EvseCommand | None = None
    last_write: float | None = None  # monotonic
    last_read: float | None = None  # monotonic time of the last good reading
    taken_at: float | None = None  # monotonic time `reading` was taken (pushed, or read)
    changed_at: float | None = None  # taken_at of the first reading with its present currents
    total_energy_wh: float = 0.0
    soft_meter_wh: float = 0.0  # integrated energy for EVSEs without a meter
    plugged: bool = False
    plugged_at: float | None = None  # wall time
    plug_energy_wh: float = 0.0
    charging_secs: float = 0.0
    needs_auth: bool = False
    authorised: bool = False
    user_id: str = ""
    rfid: str = ""
    overrides: int = 0
    ov_cur: int | None = None
    rule_wish: int | None = None
    rule_source: str = ""
    rule_surplus: bool = False  # its rules charge it from the PV surplus (manager/phase_auto)
    phase_request: int = 0  # 1 or 3: the phases its command asks for; 0: as they are
    # The limit of an OCPP backend this EVSE reports to (its charging profiles; mA, None
    # = none): the balancer gives the EVSE no more than the lower of it and its own.
    backend_ma: int | None = None
    transaction_id: int | None = None
    max_power_w: float = 0.0
    # The departure plan of the session (manager/plans.py): set with set_plan (wall time
    # of the departure, s; energy wanted in the session, Wh), and as the EVSE reports it.
    plan_departure: float | None = None
    plan_energy_wh: float | None = None
    reported_departure: float | None = None
    reported_energy_wh: float | None = None
    wakeup: WakeTracker = field(default_factory=WakeTracker)
    # A pushed reading with a phase above this (mA) wakes a cycle at once: set by every
    # decision to what the EVSE was given or drew, whichever is more, plus a margin.
    wake_above_ma: int = 1000
    # The balancer input of the last cycle and what it was built from (reused while
    # nothing it depends on changed).
    input: EvseInput | None = None
    input_key: tuple[Any, ...] = ()
    input_cfg: object = None
    # What the reused input was checked against last (`inputs.evse_input`): the reading
    # and the driver objects and `marks`.
    input_seen: tuple[object, object, int] | None = None

    @property
    def transaction_energy_wh(self) -> float:
        if not self.plugged:
            return 0.0
        return max(0.0, self.total_energy_wh - self.plug_energy_wh)

    def end_session(self) -> None:
        self.plugged = False
        self.plugged_at = None
        self.charging_secs = 0.0
        self.authorised = False
        self.user_id = ""
        self.rfid = ""
        self.overrides = 0
        self.ov_cur = None
        self.transaction_id = None
        self.max_power_w = 0.0
        self.plan_departure = self.plan_energy_wh = None
        self.reported_departure = self.reported_energy_wh = None


#: What an EVSE's balancer input is made of that the session layer, the API and an OCPP
#: backend change between cycles (`inputs.evse_input`): every change counts up `marks`.
#: (What the cycle itself sets or reads many times per cycle, the reading, the rules'
#: wish, the communication state, the plug-in, is compared instead: reading a marked
#: field costs a function call.)
_marked(EvseRuntime, ("ov_cur", "overrides", "needs_auth", "authorised", "backend_ma"))


@dataclass
class DeviceRuntime:
    config: DeviceConfig
    dtype: DeviceType
    driver: MeterDriver | EvseDriver | None = None
    status: ComStatus = field(default_factory=ComStatus)
    meter: MeterReading | None = None
    evse: EvseRuntime | None = None
    group_state: Phases | None = None
    model: str = ""
    manager_min_pause: int = 300
    expr_at: float | None = None  # monotonic time an expression meter was last evaluated
    same_since: float | None = None  # monotonic time a meter's values stopped changing
    sample_at: float | None = None  # when the pushed sample last checked was pushed
    taken_at: float | None = None  # monotonic time `meter` was taken (pushed, or read)
    # The node this meter measures had no reading as fresh as its EVSE readings at the
    # last decision: the next pushed reading wakes a cycle (manager.pushes).
    awaited: bool = False
    # Pushed meter readings outside this band wake a cycle at once (None: never; see
    # manager.pushes.meter_bands).
    wake_band: WakeBand | None = None
    # Why the device cannot run as stored ("" = it runs). A faulted device keeps its
    # stored settings in `stored` (shown and kept as they are) and runs on `config`, a
    # safe variant of them, with a driver that fails every read (manager.inventory).
    fault: str = ""
    stored: DeviceConfig | None = None

    @property
    def settings(self) -> DeviceConfig:
        """The device's settings as stored and shown (those in force unless faulted)."""
        return self.stored if self.stored is not None else self.config

    @property
    def kind_name(self) -> str:
        if self.dtype.kind is Kind.EVSE:
            return "evse"
        if self.dtype.kind is Kind.GROUP:
            return "group"
        return "meter"

    @property
    def dev_id(self) -> str:
        return self.config.dev_id
