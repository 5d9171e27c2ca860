"""Composition root: builds every part of chargebrain, starts and stops them in order.

Owns the long-lived objects (store, controller, charging manager, servers) and the
background tasks. Policy lives elsewhere; this module only wires things together.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from chargebrain import __version__
from chargebrain import api as _api  # noqa: F401 - registers the commands
from chargebrain.api.http_errors import JsonErrorRunner
from chargebrain.api.metrics import MetricsEndpoint
from chargebrain.api.offload import Worker
from chargebrain.api.passwords import CheckPool
from chargebrain.api.server import HttpApi
from chargebrain.api.throttle import Throttle
from chargebrain.clock import Clock, RealClock
from chargebrain.demo import DemoSite, run_demo
from chargebrain.devices.meterdef import MeterDefinition, builtin_definitions_dir, load_definitions
from chargebrain.devices.ocpp import OcppHub
from chargebrain.devices.registry import DeviceTypes
from chargebrain.manager.assembly import build_manager
from chargebrain.manager.cm_vars import CmVars
from chargebrain.manager.diaglog import DiagLog
from chargebrain.manager.history import HistoryRecorder
from chargebrain.manager.persistence import ManagerStore
from chargebrain.manager.reported import ReportedTransactions
from chargebrain.manager.rules_runtime import RulesRuntime, local_zone, user_rules_of
from chargebrain.manager.runtime import ChargingManager
from chargebrain.manager.sessions import SessionManager
from chargebrain.manager.users import UserDirectory
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.powerbrain.hardware import SimEvseHardware, SimS0Input
from chargebrain.servers.access import AccessList
from chargebrain.servers.modbus_tcp import (
    ConnectionLimits,
    ListenError,
    ModbusTcpServers,
    PortInUseError,
    bind_failure,
)
from chargebrain.servers.mqtt.service import MqttService
from chargebrain.servers.ocpp.adapter import Limits as OcppLimits
from chargebrain.servers.ocpp.gateway import Identity
from chargebrain.servers.ocpp.gateways import Gateways
from chargebrain.servers.ocpp.server import CentralSystem, OcppSettings, StoredBoots
from chargebrain.servers.sunspec import SunSpecServer
from chargebrain.servers.tls import TlsSetup, ensure_self_signed, server_context
from chargebrain.store.datadir import DataDirLock, meterdef_dir
from chargebrain.store.db import Store
from chargebrain.store.history import HistoryStore, history_path
from chargebrain.store.opening import database_errors, open_data_dir

log = logging.getLogger("chargebrain")

CONTROLLER_TICK_S = 0.25
#: A background task still running this long after its cancellation is cancelled again.
RECANCEL_S = 1.0


class AddressError(ListenError):
    """The HTTP address cannot be listened on (other than being in use)."""

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        hint = ""
        if host.lower().startswith("::ffff:"):
            hint = f" (an IPv4 address is written as it is: {host[7:]})"
        super().__init__(host, port, bind_failure(exc) + hint)


def check_address(host: str, port: int) -> None:
    """PortInUseError or AddressError if `host`:`port` cannot be listened on now (each
    address it names is bound once, as the server will, and let go at once)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise AddressError(host, port, exc) from None
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUseError(host, port) from None
                raise AddressError(host, port, exc) from None


@dataclass
class Config:
    data_dir: Path = Path("chargebrain-data")
    http_host: str = "127.0.0.1"
    http_port: int = 4712
    modbus_port: int = 4701  # 0 = Modbus TCP off
    demo: bool = False
    # Modbus TCP has no authentication: it listens on loopback unless told otherwise,
    # and admits only clients from these networks.
    modbus_host: str = "127.0.0.1"
    modbus_allow: AccessList = field(default_factory=AccessList.local)
    modbus_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    # HTTPS: a certificate and key (PEM), or a self-signed pair made in the data directory.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False
    # Started with --allow-insecure: may be without an admin password beyond loopback.
    allow_insecure: bool = False
    # The OCPP central system, on the HTTP host: its port (0 = off; None = the site
    # parameter ocpp_srv_port, as `chargebrain run` without --ocpp-port), its limits.
    # Off unless asked, so that an embedded App (tests, tools) never listens unasked.
    ocpp_port: int | None = 0
    ocpp_limits: OcppLimits = field(default_factory=OcppLimits)
    # The SunSpec Modbus server, on the Modbus host with its allowed networks: its port
    # (0 = off; None = the site parameter sunspec_port). Off unless asked, as OCPP.
    sunspec_port: int | None = 0
    # --mqtt URL: stored as the site parameter mqtt_url at start ("" switches MQTT off);
    # None keeps the stored one.
    mqtt_url: str | None = None


@dataclass
class App:
    config: Config
    clock: Clock = field(default_factory=RealClock)
    data_lock: DataDirLock = field(init=False)
    store: Store = field(init=False)
    powerbrain: PowerBrain = field(init=False)
    hardware: SimEvseHardware = field(init=False)
    s0_inputs: tuple[SimS0Input, SimS0Input] = field(init=False)
    throttle: Throttle = field(init=False)
    password_checks: CheckPool = field(init=False)
    # The thread that compiles and parses for requests, and the order of definition uploads.
    worker: Worker = field(default_factory=Worker)
    meterdefs_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    http: HttpApi = field(init=False)
    mqtt: MqttService = field(init=False)
    metrics: MetricsEndpoint = field(init=False)
    manager: ChargingManager = field(init=False)
    manager_store: ManagerStore = field(init=False)
    users: UserDirectory = field(init=False)
    sessions: SessionManager = field(init=False)
    diaglog: DiagLog = field(init=False)
    history: HistoryRecorder = field(init=False)
    cm_vars: CmVars = field(init=False)
    rules: RulesRuntime = field(init=False)
    types: DeviceTypes = field(init=False)
    modbus: ModbusTcpServers | None = None
    tls: TlsSetup | None = None
    ocpp: CentralSystem = field(init=False)
    gateways: Gateways = field(init=False)
    ocpp_tls: TlsSetup | None = None
    ocpp_bound_port: int = 0
    sunspec: SunSpecServer = field(init=False)
    sunspec_tcp: ModbusTcpServers | None = None
    _runner: web.AppRunner | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    http_bound_port: int = 0

    def __post_init__(self) -> None:
        # One server per data directory; raises DataDirBusyError before anything is read,
        # DataError when the directory or its database cannot be used (nothing changed).
        self.data_lock, self.store = open_data_dir(self.config.data_dir)
        try:
            with database_errors(self.store.path):
                self._build()
        except BaseException:
            self.store.close()
            self.data_lock.release()
            raise

    def _build(self) -> None:
        self.hardware = SimEvseHardware()
        self.s0_inputs = (SimS0Input(), SimS0Input())
        self.powerbrain = PowerBrain(self.store, self.hardware, self.s0_inputs)
        self.types = DeviceTypes(self._load_definitions())
        self.manager_store = ManagerStore(self.store)
        hub = OcppHub()
        self.manager = build_manager(
            self.clock, self.powerbrain, self.types, self.manager_store,
            site=self.manager_store.load_site(),
            overdraft_cur=self.manager_store.load_overdraft(), ocpp=hub,
        )
        self.users = UserDirectory(self.store, self.manager)
        self.sessions = SessionManager(self.store, self.manager, self.users, self.clock)
        self.manager.listeners.append(self.sessions)
        reported = ReportedTransactions(self.store, self.manager, self.users, self.sessions,
                                        self.clock)
        self.ocpp = CentralSystem(hub, self.clock, reported, StoredBoots(self.store),
                                  self._ocpp_settings, self.manager.devices)
        self.manager.listeners.append(self.ocpp)
        self.gateways = Gateways(self.manager.devices, self.manager.inventory.topology,
                                 self.sessions, self.manager.wake, self.clock,
                                 Identity(serial=self.powerbrain.serial,
                                          firmware=f"chargebrain {__version__}"))
        self.manager.listeners.append(self.gateways)
        self.cm_vars = CmVars(self.store, self.manager)
        self.rules = RulesRuntime(self.cm_vars, user_rules_of(self.users), local_zone())
        self.rules.install(self.manager.decider)
        self.sunspec = SunSpecServer(self.manager, self.cm_vars,
                                     lambda: self.manager.site.sunspec_id)
        self.diaglog = DiagLog(self.clock)
        self.throttle = Throttle(self.clock.monotonic)
        self.password_checks = CheckPool(self.clock.monotonic)
        self.history = HistoryRecorder(
            self.manager, HistoryStore(history_path(self.config.data_dir)), self.clock,
            lambda: self.manager.site.history_max_mb * 1024 * 1024)
        self.manager.listeners.append(self.history)
        self.http = HttpApi(self)
        self.manager.listeners.append(self.http.live)
        self.mqtt = MqttService(self)
        self.manager.inventory.topic_feed = self.mqtt.feed
        self.manager.listeners.append(self.mqtt.listener)
        self.metrics = MetricsEndpoint(self, self.mqtt)
        self.metrics.install(self.http.web)

    def _ocpp_settings(self) -> OcppSettings:
        site = self.manager.site
        return OcppSettings(site.ocpp_srv_password, site.ocpp_srv_accept_unknown)

    @property
    def ocpp_port(self) -> int:
        """The port the OCPP central system is to listen on (0: off)."""
        port = self.config.ocpp_port
        return self.manager.site.ocpp_srv_port if port is None else port

    @property
    def sunspec_port(self) -> int:
        """The port the SunSpec Modbus server is to listen on (0: off)."""
        port = self.config.sunspec_port
        return self.manager.site.sunspec_port if port is None else port

    @property
    def ocpp_listens(self) -> bool:
        """Whether the central system runs: on its port, or for the demo's OCPP wallbox
        on a free one when its port is 0."""
        return bool(self.ocpp_port) or self.config.demo

    @property
    def ocpp_host(self) -> str:
        """Where the central system listens: the HTTP host, or loopback when it runs
        only for the demo's OCPP wallbox (its port 0)."""
        return self.config.http_host if self.ocpp_port else "127.0.0.1"

    def _demo_ocpp(self) -> tuple[str, ssl.SSLContext | None]:
        """Where the demo's OCPP wallbox connects, and its TLS context (the demo's own
        server: its certificate is not checked)."""
        if not self.ocpp_bound_port:
            return "", None
        host = self.ocpp_host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        if self.ocpp_tls is None:
            return f"ws://{host}:{self.ocpp_bound_port}", None
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return f"wss://{host}:{self.ocpp_bound_port}", context

    @property
    def http_host(self) -> str:
        return self.config.http_host

    @property
    def allow_insecure(self) -> bool:
        return self.config.allow_insecure

    @property
    def meterdef_dir(self) -> Path:
        return meterdef_dir(self.config.data_dir)

    def _load_definitions(self) -> dict[str, MeterDefinition]:
        return load_definitions(builtin_definitions_dir(), self.meterdef_dir)

    def spawn(self, coro_fn: Callable[[], Awaitable[None]], name: str) -> None:
        async def guarded() -> None:
            try:
                await coro_fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s failed", name)

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def _end_tasks(self) -> None:
        """Cancel the background tasks and wait until every one has ended. A task that
        went on after its cancellation is cancelled again, every `RECANCEL_S`: under
        Python 3.11 `asyncio.wait_for` (which aiomqtt uses while connecting) loses a
        cancellation that arrives as what it waits for completes, and the process would
        otherwise never stop."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
            for task in pending:
                log.warning("background task %s went on after it was cancelled; cancelling "
                            "it again", task.get_name())
                task.cancel()

    def _tls_setup(self) -> TlsSetup | None:
        """The HTTPS context the configuration asks for; raises TlsError."""
        config = self.config
        if config.tls_self_signed:
            cert, key = ensure_self_signed(config.data_dir, [config.http_host])
        elif config.tls_cert is not None and config.tls_key is not None:
            cert, key = config.tls_cert, config.tls_key
        else:
            return None
        return server_context(cert, key)

    def _ocpp_tls_setup(self) -> TlsSetup | None:
        """The OCPP server's TLS (`ocpp_srv_tls_mode` on): the HTTPS certificate if one
        is given, else the data directory's self-signed one; raises TlsError."""
        if not self.ocpp_listens or self.manager.site.ocpp_srv_tls_mode != "on":
            return None
        config = self.config
        if config.tls_cert is not None and config.tls_key is not None:
            return server_context(config.tls_cert, config.tls_key)
        if self.tls is not None:
            return self.tls
        return server_context(*ensure_self_signed(config.data_dir, [config.http_host]))

    async def start(self) -> None:
        self.tls = self._tls_setup()
        self.ocpp_tls = self._ocpp_tls_setup()
        # An address that cannot be listened on stops the start before anything runs.
        check_address(self.config.http_host, self.config.http_port)
        if self.ocpp_port:
            check_address(self.config.http_host, self.ocpp_port)
        with database_errors(self.store.path):
            self.powerbrain.start()
            self._wire_controller()
            self.manager.inventory.load_devices(self.manager_store.load_devices())
            self.manager.inventory.ensure_internal_devices(self.manager_store.stored_ids())
            self.cm_vars.load()
            self.sessions.restore()
            if self.config.mqtt_url is not None:
                params = self.manager.site.with_changes(mqtt_url=self.config.mqtt_url)
                self.manager.settings.set(params)
        self._runner = JsonErrorRunner(self.http.web, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, port = self.config.http_host, self.config.http_port
        site = web.TCPSite(self._runner, host, port,
                           ssl_context=self.tls.context if self.tls else None)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(host, port) from None
            raise AddressError(host, port, exc) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_bound_port = sockets[0].getsockname()[1] if sockets else self.config.http_port
        if self.config.modbus_port:
            banks = [self.powerbrain.banks[n] for n in ("evse", "meter1", "meter2")]
            self.modbus = ModbusTcpServers(
                banks, self.config.modbus_host, self.config.modbus_port,
                limits=self.config.modbus_limits, access=self.config.modbus_allow)
            try:
                await self.modbus.start()
            except BaseException:
                await self._runner.cleanup()
                raise
        if self.sunspec_port:
            self.sunspec_tcp = ModbusTcpServers(
                [], self.config.modbus_host, self.sunspec_port,
                limits=self.config.modbus_limits, access=self.config.modbus_allow,
                responders=[self.sunspec.respond])
            try:
                await self.sunspec_tcp.start()
            except BaseException:
                self.sunspec_tcp = None
                if self.modbus is not None:
                    await self.modbus.stop()
                await self._runner.cleanup()
                raise
        if self.ocpp_listens:
            try:
                self.ocpp_bound_port = await self.ocpp.start(
                    self.ocpp_host, self.ocpp_port,
                    self.ocpp_tls.context if self.ocpp_tls else None, self.config.ocpp_limits)
            except OSError as exc:
                if self.modbus is not None:
                    await self.modbus.stop()
                if self.sunspec_tcp is not None:
                    await self.sunspec_tcp.stop()
                await self._runner.cleanup()
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUseError(self.ocpp_host, self.ocpp_port) from None
                raise AddressError(self.ocpp_host, self.ocpp_port, exc) from None
        self.spawn(self._controller_loop, "controller")
        self.spawn(self.manager.run, "charging manager")
        self.spawn(self.mqtt.run, "mqtt")
        self.spawn(self.history.run, "history")
        logging.getLogger("chargebrain").addHandler(self.http.log_tail)
        if self.config.demo:
            url, context = self._demo_ocpp()
            demo = DemoSite(self.clock, self.manager, self.powerbrain, self.hardware,
                            self.s0_inputs, url, context)
            self.spawn(lambda: run_demo(demo), "demo")

    async def _controller_loop(self) -> None:
        last = self.clock.monotonic()
        while True:
            await self.clock.sleep(CONTROLLER_TICK_S)
            now = self.clock.monotonic()
            self._wire_controller()
            self.powerbrain.tick(now - last, now)
            last = now

    def _wire_controller(self) -> None:
        """Hand the controller the charging manager's settings it honours: the least time
        between two contactor changes is the site's `phase_switch_delay`."""
        self.powerbrain.phase_switch_delay_s = float(self.manager.site.phase_switch_delay)

    async def stop(self) -> None:
        self.http.live.close()
        logging.getLogger("chargebrain").removeHandler(self.http.log_tail)
        await self._end_tasks()
        await self.gateways.close()
        await self.ocpp.close_all()
        await self.ocpp.stop()
        await self.manager.close()
        self.sessions.flush()
        try:
            await self.history.close()
        except Exception:
            log.exception("writing the history failed")
        self.history.store.close()
        self.diaglog.stop()
        if self.modbus is not None:
            await self.modbus.stop()
        if self.sunspec_tcp is not None:
            await self.sunspec_tcp.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        self.worker.close()
        self.powerbrain.save_counters()
        self.store.close()
        self.data_lock.release()
        self._stopped.set()
