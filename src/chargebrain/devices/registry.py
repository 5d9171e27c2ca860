"""Device types: each `dev_type` with its display name, its kind and how to build it.

This table feeds `dev_meta` in get_params and `get_dev_types`; meter definitions add
`meter_<dev_type>` entries at run time, charger definitions `evse_<dev_type>` (EVSEs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from chargebrain.devices.meterdef import MeterDefinition


class Kind(Enum):
    EVSE = "evse"
    METER = "meter"
    GROUP = "group"  # an EVSE group: no device behind it
    VIRTUAL = "virtual"  # a meter the manager computes


@dataclass(frozen=True)
class DeviceType:
    dev_type: str
    name: str
    kind: Kind
    pushed: bool = False  # values are pushed to us (HTTP input)
    # The EVSE reports its transactions itself (OCPP StartTransaction/StopTransaction):
    # they, not plug-in and unplug, open and close its rows in the transaction log.
    own_transactions: bool = False


STATIC_TYPES: tuple[DeviceType, ...] = (
    DeviceType("evse_powerbrain", "cFos Power Brain", Kind.EVSE),
    DeviceType("evse_ajax", "HTTP Input", Kind.EVSE, pushed=True),
    DeviceType("evse_ocpp", "EVSE with OCPP 1.6", Kind.EVSE, own_transactions=True),
    DeviceType("evse_keba_c_x", "KEBA KeContact P20/P30 (UDP)", Kind.EVSE),
    DeviceType("evse_cm", "Charging Manager Slave", Kind.EVSE),
    DeviceType("evse_group", "EVSE group", Kind.GROUP),
    DeviceType("meter_powerbrain", "cFos Power Brain S0", Kind.METER),
    DeviceType("meter_ajax", "HTTP Input", Kind.METER, pushed=True),
    DeviceType("meter_expression", "Expression", Kind.VIRTUAL),
    DeviceType("meter_virtual_consumed_power", "Consumed non-EVSE power", Kind.VIRTUAL),
    DeviceType("meter_virtual_produced_power", "Produced power", Kind.VIRTUAL),
    DeviceType("meter_virtual_available_evse_power", "Power available for EVSEs", Kind.VIRTUAL),
    DeviceType("meter_virtual_remaining_evse_power", "Power remaining for EVSEs", Kind.VIRTUAL),
    DeviceType("meter_virtual_evse_power", "Consumed EVSE power", Kind.VIRTUAL),
    DeviceType("meter_virtual_surplus", "Surplus", Kind.VIRTUAL),
    DeviceType("meter_virtual_grid_demand", "Grid demand", Kind.VIRTUAL),
)


class DeviceTypes:
    """The static types plus those of the loaded meter definitions.

    A stored device may name a type that is not known (any more): its meter definition
    was deleted or not restored. Such a type is `missing`: it is listed by `names()` (a
    client looks up every dev_type it sees in get_dev_info), but `get()` does not know
    it, so no new device of that type can be made.
    """

    def __init__(self, definitions: dict[str, MeterDefinition] | None = None) -> None:
        self.definitions: dict[str, MeterDefinition] = dict(definitions or {})
        self.missing: dict[str, DeviceType] = {}

    def placeholder(self, dev_type: str, kind: Kind) -> DeviceType:
        """The type of a stored device whose `dev_type` is unknown (listed by names())."""
        known = self.missing.get(dev_type)
        if known is None:
            known = self.missing[dev_type] = DeviceType(
                dev_type, f"{dev_type} (unknown type)", kind)
        return known

    def all(self) -> dict[str, DeviceType]:
        out = {t.dev_type: t for t in STATIC_TYPES}
        for dev_type, definition in sorted(self.definitions.items()):
            kind = Kind.EVSE if definition.is_charger else Kind.METER
            out.setdefault(dev_type, DeviceType(dev_type, definition.name, kind))
        return out

    def get(self, dev_type: str) -> DeviceType | None:
        return self.all().get(dev_type)

    def names(self) -> dict[str, str]:
        out = {k: t.name for k, t in self.all().items()}
        for dev_type, dtype in self.missing.items():
            out.setdefault(dev_type, dtype.name)
        return out
