"""EVSEs behind OCPP 1.6 charge points: the driver the charging manager sees, and the hub
that tells the central system which connector of which charge point each one is.

An OCPP charge point reports by messages (status, meter values, transactions), so its
driver is a pushed one, like an HTTP-input EVSE: the central system (servers/ocpp) keeps
what the charge point said in the driver's `ConnectorState`, and every change is handed
to the manager as an `EvseReading` through the hub's `feed` (which wakes a cycle when it
matters). Reading never waits for I/O, and a command is only kept and announced to the
central system, which sends it as a charging profile on its own time: the manager's
cycle never waits for a charge point.

A reading fails (DeviceError, the manager's worst-case assumption) while the charge
point is not connected, before it reported the connector's status, while a car charges
and no meter values came for too long, and while the charge point has not accepted the
current limit for `PROFILE_GRACE_S`.

This module must never import a protocol or transport library, nor the manager.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from chargebrain.clock import Clock
from chargebrain.core.model import EvseCommand, EvseReading, EvseState
from chargebrain.core.phases import ZERO, Phases
from chargebrain.devices.ajax import AjaxEvse
from chargebrain.devices.errors import DeviceError

#: OCPP 1.6 connector status → the manager's EVSE state (docs/ocpp.md explains why).
STATUS_STATE: dict[str, EvseState] = {
    "Available": EvseState.WAITING,
    "Reserved": EvseState.WAITING,
    "Preparing": EvseState.EV_PRESENT,
    "SuspendedEV": EvseState.EV_PRESENT,
    "SuspendedEVSE": EvseState.EV_PRESENT,
    "Finishing": EvseState.EV_PRESENT,
    "Charging": EvseState.CHARGING,
    "Unavailable": EvseState.ERROR,
    "Faulted": EvseState.ERROR,
}
#: Seconds a charge point may take to accept a changed current limit before its
#: readings fail (it is then not under control: the manager assumes the worst).
PROFILE_GRACE_S = 60.0
#: While a car charges, meter values older than this many sample intervals fail the
#: reading; a third of that asks for a fresh one (TriggerMessage).
STALE_INTERVALS = 3.0
#: The sample interval assumed when the charge point did not accept ours.
DEFAULT_SAMPLE_S = 60.0
#: A card handed over for a connector is not handed over again within this time (the
#: same card arrives with Authorize and again with StartTransaction).
SAME_CARD_S = 60.0
VOLTAGE = 230.0

#: What the central system should make the connector do: a limit (amperes, phases or
#: 0 = as they are), or no limit at all (CLEAR).
Limit = tuple[float, int]
CLEAR = "clear"
Profile = Limit | str


@dataclass
class ConnectorState:
    """What a charge point said about one connector, as the central system keeps it."""

    status: str | None = None  # the last StatusNotification's status
    error_code: str = "NoError"
    status_at: float | None = None  # monotonic
    transaction_id: int | None = None  # the charge point's running transaction
    currents: Phases = ZERO  # mA, from the last live meter values
    power_w: float = 0.0
    energy_wh: float | None = None  # the energy register (Wh), when known
    has_meter: bool = False  # currents or power have been reported
    phase_mask: int = 0  # phases seen drawing in per-phase reports
    sample_at: float | None = None  # monotonic time of the last live meter values
    sample_s: float = DEFAULT_SAMPLE_S  # the sample interval the charge point runs
    cards: dict[str, float] = field(default_factory=dict)  # card → monotonic handover


class HubListener(Protocol):
    """The central system, told what the manager asks of a connector."""

    def connector_added(self, evse: OcppEvse) -> None: ...
    def command_changed(self, evse: OcppEvse) -> None: ...
    def fresh_reading_wanted(self, evse: OcppEvse) -> None: ...


class OcppEvse(AjaxEvse):
    """One connector of an OCPP charge point, as an EVSE of the charging manager."""

    def __init__(self, hub: OcppHub, dev_id: str, charge_box_id: str, connector: int,
                 clock: Clock) -> None:
        super().__init__(clock)
        self.hub = hub
        self.dev_id = dev_id
        self.charge_box_id = charge_box_id
        self.connector = connector
        self.state = ConnectorState()
        self.connected = False
        self.model = ""
        self.wanted: EvseCommand | None = None  # the manager's last command
        self.released = False  # the manager lifts every limit (disable policy -1)
        self.confirmed: Profile | None = None  # what the charge point accepted last
        self.refused_since: float | None = None  # monotonic: wanted, not accepted
        self.refusal = ""
        self._rfid = ""
        self._trigger_at: float | None = None
        hub.register(self)

    # --- the manager's side ----------------------------------------------------------

    def latest(self, mono: float | None = None) -> EvseReading:
        now = self.clock.monotonic() if mono is None else mono
        name = f"charge point {self.charge_box_id!r}"
        if not self.connected:
            raise DeviceError(f"{name} is not connected")
        st = self.state
        if st.status is None:
            raise DeviceError(f"{name} has not reported connector {self.connector} yet")
        if self.refused_since is not None and now - self.refused_since > PROFILE_GRACE_S:
            raise DeviceError(f"{name} does not accept the current limit: {self.refusal}")
        if st.status == "Charging" and st.has_meter:
            age = now - (st.sample_at if st.sample_at is not None else st.status_at or now)
            if age > STALE_INTERVALS * st.sample_s:
                raise DeviceError(f"{name} sent no meter values for {age:.0f} s")
            if age > st.sample_s * 1.5 and (self._trigger_at is None
                                            or now - self._trigger_at > st.sample_s):
                self._trigger_at = now
                self.hub.listener_do(lambda listener: listener.fresh_reading_wanted(self))
        reading = self.reading(now)
        self.pushed_at = now
        self.last = reading
        if self._rfid:
            self._rfid = ""
        return reading

    async def read(self) -> EvseReading:
        return self.latest()

    def set_command(self, command: EvseCommand) -> None:
        changed = command != self.wanted or self.released
        self.command = command
        self.wanted = command
        self.released = False
        if changed:
            self._note_wanted()
            self.hub.listener_do(lambda listener: listener.command_changed(self))

    def release(self) -> None:
        """Lift every limit: the charge point charges as it would without us."""
        if not self.released:
            self.released = True
            self._note_wanted()
            self.hub.listener_do(lambda listener: listener.command_changed(self))

    async def close(self) -> None:
        self.hub.unregister(self)

    # --- the central system's side ---------------------------------------------------

    def desired(self) -> Profile:
        """What the connector should be told now: the manager's limit, no limit (the
        manager released it), or 0 A until the manager decided (charging forbidden)."""
        if self.released:
            return CLEAR
        cmd = self.wanted
        if cmd is None or not cmd.enabled:
            return (0.0, 0)
        return (math.floor(cmd.current_ma / 100) / 10, cmd.phases if cmd.phases in (1, 3)
                else 0)

    def accepted(self, profile: Profile) -> None:
        """The charge point accepted `profile`."""
        self.confirmed = profile
        if profile == self.desired():
            self.refused_since = None
            self.refusal = ""

    def refused(self, why: str) -> None:
        """The charge point did not accept what it was sent (answer, error, timeout)."""
        self.refusal = why
        if self.refused_since is None:
            self.refused_since = self.clock.monotonic()

    def _note_wanted(self) -> None:
        if self.confirmed != self.desired() and self.refused_since is None:
            self.refused_since = self.clock.monotonic()
        elif self.confirmed == self.desired():
            self.refused_since = None

    def set_connected(self, connected: bool, model: str = "") -> None:
        self.connected = connected
        if model:
            self.model = model
        if connected:
            self.confirmed = None  # it may have forgotten: everything is sent again
            self.refused_since = self.clock.monotonic()
            self.refusal = "not sent yet"
        self.publish()

    def hand_card(self, card: str) -> None:
        """A card presented at this connector, handed to the manager once (the same card
        again within SAME_CARD_S is the same presentation)."""
        now = self.clock.monotonic()
        cards = self.state.cards
        for old in [c for c, t in cards.items() if now - t > SAME_CARD_S]:
            del cards[old]
        key = card.strip().upper()
        if key in cards:
            return
        cards[key] = now
        self._rfid = card
        self.publish()

    def presented(self, card: str) -> bool:
        """Whether the charge point itself presented `card` here lately."""
        at = self.state.cards.get(card.strip().upper())
        return at is not None and self.clock.monotonic() - at <= SAME_CARD_S

    def publish(self) -> None:
        """Hand the manager the connector's reading as it is now."""
        if not self.connected or self.state.status is None:
            return
        self.hub.feed(self, self.reading(self.clock.monotonic()))

    def reading(self, mono: float) -> EvseReading:
        st = self.state
        state = STATUS_STATE.get(st.status or "", EvseState.ERROR)
        live = st.status == "Charging" or (
            st.sample_at is not None and st.status_at is not None and st.sample_at > st.status_at)
        currents = st.currents if live else ZERO
        return EvseReading(
            state=state, currents=currents, power_w=st.power_w if live else 0.0,
            total_energy_wh=st.energy_wh or 0.0, has_meter=st.has_meter,
            energy_known=st.energy_wh is not None, rfid=self._rfid, model=self.model)

    def offered_ma(self) -> int:
        """The current the connector was last allowed (mA), 0 when none is known."""
        limit = self.confirmed
        if isinstance(limit, tuple):
            return round(limit[0] * 1000)
        return 0


class OcppHub:
    """Which OCPP EVSE serves which connector of which charge point (by ChargeBox ID)."""

    def __init__(self) -> None:
        self._boxes: dict[str, dict[int, OcppEvse]] = {}
        self.listener: HubListener | None = None
        #: Hands a reading to the manager (the manager's assembly sets it; alone, the
        #: driver keeps it).
        self.feed: Callable[[OcppEvse, EvseReading], None] = _keep

    def register(self, evse: OcppEvse) -> None:
        self._boxes.setdefault(evse.charge_box_id, {})[evse.connector] = evse
        self.listener_do(lambda listener: listener.connector_added(evse))

    def unregister(self, evse: OcppEvse) -> None:
        box = self._boxes.get(evse.charge_box_id)
        if box is not None and box.get(evse.connector) is evse:
            del box[evse.connector]
            if not box:
                del self._boxes[evse.charge_box_id]

    def connectors(self, charge_box_id: str) -> dict[int, OcppEvse]:
        """The configured connectors of a charge point (empty if it is not configured)."""
        return dict(self._boxes.get(charge_box_id, {}))

    def known(self, charge_box_id: str) -> bool:
        return charge_box_id in self._boxes

    def listener_do(self, action: Callable[[HubListener], None]) -> None:
        if self.listener is not None:
            action(self.listener)


def _keep(evse: OcppEvse, reading: EvseReading) -> None:
    evse.push(reading)
