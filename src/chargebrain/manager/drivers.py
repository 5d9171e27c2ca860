"""Which driver talks to a configured device, and the model string it shows.

The built-in controller is reached through its register banks, another controller over
Modbus TCP, another charging manager (`evse_cm`) over its HTTP API, HTTP-input devices
are fed by pushes, an OCPP charge point's connector by
the OCPP central system (through the hub), other meters through their meter
definitions (a meter read over MQTT through the broker connection's `TopicFeed`), other
wallboxes through their charger definitions (`DefinedEvse`), KEBA wallboxes over UDP.
Groups and virtual meters have no driver.
"""

from __future__ import annotations

from chargebrain.clock import Clock
from chargebrain.devices.ajax import AjaxEvse, AjaxMeter
from chargebrain.devices.base import EvseDriver, MeterDriver
from chargebrain.devices.cm_slave import CmSlaveEvse
from chargebrain.devices.defined_evse import DefinedEvse
from chargebrain.devices.defined_meter import DefinedMeter
from chargebrain.devices.errors import DeviceError
from chargebrain.devices.keba import KebaEvse
from chargebrain.devices.ocpp import OcppEvse, OcppHub
from chargebrain.devices.powerbrain import (
    LocalEvse,
    LocalMeter,
    RemoteEvse,
    RemoteMeter,
    internal_address,
)
from chargebrain.devices.registry import DeviceType, DeviceTypes, Kind
from chargebrain.devices.topics import TopicFeed
from chargebrain.manager.config import ConfigError, DeviceConfig
from chargebrain.powerbrain.controller import PowerBrain

BUILT_IN_TYPES = ("evse_powerbrain", "meter_powerbrain")


def is_internal(cfg: DeviceConfig) -> bool:
    """The built-in EVSE or one of the built-in S0 meters."""
    return cfg.dev_type in BUILT_IN_TYPES and bool(internal_address(cfg.address))


def model_of(cfg: DeviceConfig, dtype: DeviceType, powerbrain: PowerBrain) -> str:
    if is_internal(cfg):
        ident = powerbrain.identity
        return f"cFos,{ident.product_name},1.1,chargebrain,{powerbrain.serial}"
    return dtype.name


def make_driver(
    cfg: DeviceConfig, dtype: DeviceType, powerbrain: PowerBrain, types: DeviceTypes,
    clock: Clock, ocpp: OcppHub | None = None, topics: TopicFeed | None = None,
) -> MeterDriver | EvseDriver | None:
    """A driver for `cfg`; raises ConfigError if the device cannot be reached that way."""
    if dtype.kind in (Kind.GROUP, Kind.VIRTUAL):
        return None
    if cfg.dev_type == "evse_ocpp":
        if ocpp is None:
            raise ConfigError("no OCPP central system runs here")
        return OcppEvse(ocpp, cfg.dev_id, cfg.address.strip(), cfg.id, clock)
    if cfg.dev_type == "evse_cm":
        try:
            return CmSlaveEvse(cfg.address, cfg.password)
        except DeviceError as exc:
            raise ConfigError(str(exc)) from None
    if dtype.pushed:
        return AjaxEvse(clock) if dtype.kind is Kind.EVSE else AjaxMeter(clock)
    internal = internal_address(cfg.address)
    model = model_of(cfg, dtype, powerbrain)
    try:
        if cfg.dev_type == "evse_powerbrain":
            if internal:
                return LocalEvse(powerbrain.banks["evse"], model)
            return RemoteEvse(cfg.address, cfg.id or 1, contactor=cfg.phase_switch_auto)
        if cfg.dev_type == "evse_keba_c_x":
            return KebaEvse(cfg.address, clock=clock)
        if cfg.dev_type == "meter_powerbrain":
            if internal:
                return LocalMeter(powerbrain.banks[internal], model)
            return RemoteMeter(cfg.address, cfg.id or 2)
    except (DeviceError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    definition = types.definitions.get(cfg.dev_type)
    if definition is None:
        raise ConfigError(f"no meter definition for {cfg.dev_type}")
    try:
        if definition.is_charger:
            return DefinedEvse(definition, cfg.address, cfg.id or 1, clock=clock)
        return DefinedMeter(definition, cfg.address, cfg.id or 1, clock=clock, topics=topics)
    except (DeviceError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
