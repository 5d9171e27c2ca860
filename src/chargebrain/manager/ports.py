"""What the charging manager's parts need from the rest of the program, as protocols.

The manager's collaborators depend on these narrow interfaces, never on the classes
that implement them (the SQLite store, the session manager), so that each part can be
built and tested alone and no part imports the module that assembles them.
"""

from __future__ import annotations

from typing import Protocol

from chargebrain.manager.config import DeviceConfig, SiteParams
from chargebrain.manager.schedules import ScheduleStore
from chargebrain.manager.state import DeviceRuntime


class DeviceStore(Protocol):
    """Keeps device settings (manager.persistence.ManagerStore in the application)."""

    def save_device(self, cfg: DeviceConfig) -> None: ...
    def delete_device(self, dev_id: str) -> None: ...


class SiteStore(Protocol):
    """Keeps the site parameters and the overdraft."""

    def save_site(self, params: SiteParams) -> None: ...
    def save_overdraft(self, value: int) -> None: ...


class ConfigStore(DeviceStore, SiteStore, ScheduleStore, Protocol):
    """All of the above (ScheduleStore: where the charging schedules are kept)."""


class SessionListener(Protocol):
    """Told about plug-in, unplug, cards and the end of every cycle (transactions, auth)."""

    def on_plug(self, rt: DeviceRuntime, now: float) -> None: ...
    def on_unplug(self, rt: DeviceRuntime, now: float) -> None: ...
    def on_rfid(self, rt: DeviceRuntime, rfid: str, now: float) -> None: ...
    def on_cycle(self, now: float) -> None: ...


class CycleListener:
    """A session listener told only the end of every cycle (the history recorder, the web
    UI's live feed): plug-in, unplug and cards mean nothing to it."""

    def on_plug(self, rt: DeviceRuntime, now: float) -> None:
        return None

    def on_unplug(self, rt: DeviceRuntime, now: float) -> None:
        return None

    def on_rfid(self, rt: DeviceRuntime, rfid: str, now: float) -> None:
        return None

    def on_cycle(self, now: float) -> None:
        return None
