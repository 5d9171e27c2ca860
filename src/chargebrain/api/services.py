"""What the HTTP API needs from the application: the parts its commands work on.

The composition root (`chargebrain.app.App`) provides these; the API depends on this
protocol only, never on the application module, so the application can import the API
without a circle. A test may hand the API any object with these parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

    from chargebrain.api.offload import Worker
    from chargebrain.api.passwords import CheckPool
    from chargebrain.api.throttle import Throttle
    from chargebrain.clock import Clock
    from chargebrain.devices.registry import DeviceTypes
    from chargebrain.manager.cm_vars import CmVars
    from chargebrain.manager.diaglog import DiagLog
    from chargebrain.manager.history import HistoryRecorder
    from chargebrain.manager.runtime import ChargingManager
    from chargebrain.manager.sessions import SessionManager
    from chargebrain.manager.users import UserDirectory
    from chargebrain.powerbrain.controller import PowerBrain
    from chargebrain.servers.ocpp.server import CentralSystem
    from chargebrain.store.db import Store


class Services(Protocol):
    """The application's parts, as the API's commands use them."""

    @property
    def clock(self) -> Clock: ...
    @property
    def store(self) -> Store: ...
    @property
    def powerbrain(self) -> PowerBrain: ...
    @property
    def manager(self) -> ChargingManager: ...
    @property
    def users(self) -> UserDirectory: ...
    @property
    def sessions(self) -> SessionManager: ...
    @property
    def cm_vars(self) -> CmVars: ...
    @property
    def diaglog(self) -> DiagLog: ...
    @property
    def types(self) -> DeviceTypes: ...
    @property
    def throttle(self) -> Throttle: ...
    @property
    def password_checks(self) -> CheckPool: ...
    @property
    def ocpp(self) -> CentralSystem: ...
    @property
    def http_host(self) -> str:
        """The address the HTTP API listens on."""
    @property
    def allow_insecure(self) -> bool:
        """Started with --allow-insecure: may be without an admin password anywhere."""
    @property
    def meterdef_dir(self) -> Path: ...
    @property
    def worker(self) -> Worker:
        """The thread that compiles and parses the heavy part of a request."""
    @property
    def history(self) -> HistoryRecorder:
        """Samples power and current every 10 s and writes the history file."""
    @property
    def meterdefs_lock(self) -> asyncio.Lock:
        """Held while a meter definition is uploaded or deleted (in order)."""
