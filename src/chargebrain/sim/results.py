"""What one simulated run recorded: per car its stay (`SessionTrace`), for the run the
true series at the connection and the counters (`RunResult`). Made by `sim/runner.py`,
turned into figures by `sim/metrics.py`."""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field

from chargebrain.sim.profile import SiteProfile
from chargebrain.sim.scenario import Scenario


@dataclass(frozen=True, slots=True)
class SessionTrace:
    """One car's stay at one EVSE."""

    car_id: str
    evse_id: str
    arrive_s: int
    leave_s: int  # when it was unplugged, or the end of the run
    phase_count: int
    building_mask: int  # building phases it draws on (bit0 = L1)
    need_kwh: float
    delivered_kwh: float
    soc_start: float
    soc_end: float
    drawn_ma: array[float]  # mean current per used phase, one per second from arrive_s
    offers: tuple[tuple[int, int], ...]  # (t, mA) at plug-in and whenever the offer changed
    # (t, phases the car draws on) whenever its EVSE's contactor switched between one and
    # three phases (`phase_switching`), and at plug-in when that was not `phase_count`
    phase_changes: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class RunResult:
    """What happened in one run. Series are per second, index = second since the start."""

    scenario: Scenario
    policy_name: str
    duration_s: int
    grid_ma: tuple[array[float], array[float], array[float]]  # true, at the connection, signed
    evse_ma: tuple[array[float], array[float], array[float]]  # sum of all EVSEs
    profile: SiteProfile
    sessions: tuple[SessionTrace, ...]
    cycles: int
    refused_offers: int  # offers between 0 and an EVSE's minimum (treated as 0)
    capped_offers: int  # offers above an EVSE's maximum (capped)
    wall_s: float
    policy_wall_s: float
    # What a policy with a cycle of its own says about the run (its `stats()`, if it has
    # one; a ManagerPolicy: the manager's cycles and what woke them).
    policy_stats: Mapping[str, int] = field(default_factory=dict)

    def session(self, car_id: str) -> SessionTrace:
        for s in self.sessions:
            if s.car_id == car_id:
                return s
        raise KeyError(car_id)
