"""Wires the charging manager from its parts (used by the application and the simulator).

The composition root of the manager: one place that knows every collaborator and hands
each the narrow things it needs. Nothing else imports all of them.
"""

from __future__ import annotations

from chargebrain.clock import Clock
from chargebrain.devices.ocpp import OcppHub
from chargebrain.devices.registry import DeviceTypes
from chargebrain.manager.apply import Writer
from chargebrain.manager.config import SiteParams
from chargebrain.manager.cycle_signal import CycleSignal
from chargebrain.manager.decide import Decider
from chargebrain.manager.formulas import FormulaTable
from chargebrain.manager.inventory import DeviceInventory
from chargebrain.manager.ports import ConfigStore, SessionListener
from chargebrain.manager.pushes import Pushes
from chargebrain.manager.reading import Readers
from chargebrain.manager.runtime import ChargingManager
from chargebrain.manager.schedules import ChargeSchedules
from chargebrain.manager.settings import SiteSettings
from chargebrain.powerbrain.controller import PowerBrain


def build_manager(
    clock: Clock,
    powerbrain: PowerBrain,
    types: DeviceTypes,
    store: ConfigStore,
    site: SiteParams | None = None,
    overdraft_cur: int = 0,
    ocpp: OcppHub | None = None,
) -> ChargingManager:
    """A charging manager with no devices yet (load them with `inventory.load_devices`).
    `ocpp`: the hub of the OCPP central system whose charge points it manages (one of its
    own when not given: its OCPP EVSEs then stay unconnected)."""
    signal = CycleSignal()
    formulas = FormulaTable()
    hub = ocpp if ocpp is not None else OcppHub()
    inventory = DeviceInventory(clock, powerbrain, types, store, formulas, signal.wake, hub)
    settings = SiteSettings(site or SiteParams(), formulas, store, inventory, signal.wake)
    listeners: list[SessionListener] = []
    pushes = Pushes(clock, inventory.devices, signal.wake)
    hub.feed = pushes.feed_evse
    return ChargingManager(
        clock, signal, inventory, settings,
        pushes=pushes,
        readers=Readers(clock, inventory, settings, listeners, signal.changed),
        decider=Decider(clock, powerbrain, inventory, settings, store, overdraft_cur,
                        ChargeSchedules(store)),
        writer=Writer(clock, inventory.devices),
        listeners=listeners,
    )
