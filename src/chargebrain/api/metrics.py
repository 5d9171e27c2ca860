"""`GET /metrics`: the charging manager's state for Prometheus.

A custom collector reads the manager's state when Prometheus scrapes (the control cycle
pays nothing for it): the cycle, the site's figures, every EVSE's current, power, state,
energy, offer and reason codes, every meter's power, currents and counters, each
device's communication errors, the HTTP requests by command and status, the MQTT
connection. Devices are labelled by `dev_id` and `name`; currents are in amperes, power
in watts, energy in watt-hours. Two events leave no trace in the state and are counted
as they happen, at the end of each cycle (`CycleTally`, a few comparisons): cycles in
which the site drew more than its limit (an overload: the overdraft penalty starts or is
renewed) and cycles in which the phase imbalance limit held an EVSE back.

Who may read it: the admin (anyone while no admin password is set), or anyone with the
site parameter `metrics_public`. The only module that imports `prometheus_client`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from chargebrain import package_version
from chargebrain.api import auth
from chargebrain.api.answers import challenge, json_response
from chargebrain.api.commands import COMMANDS
from chargebrain.api.errors import ApiError
from chargebrain.api.request_forms import plain_target
from chargebrain.core.balancer import Limit, PauseReason
from chargebrain.manager.ports import CycleListener
from chargebrain.manager.state import DeviceRuntime

if TYPE_CHECKING:
    from chargebrain.api.services import Services
    from chargebrain.manager.runtime import ChargingManager

PATH = "/metrics"
#: The classic text format (what every Prometheus version reads).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PHASES = ("L1", "L2", "L3")


class MqttStats(Protocol):
    """What the MQTT service tells about itself."""

    @property
    def connected(self) -> bool: ...
    @property
    def connections(self) -> int: ...
    @property
    def published(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def ignored(self) -> int: ...
    @property
    def dropped(self) -> int: ...


class CycleTally(CycleListener):
    """Counts, at the end of each cycle, what the state does not keep (a SessionListener
    of the charging manager)."""

    def __init__(self, manager: ChargingManager) -> None:
        self.manager = manager
        self.overload_cycles = 0
        self.imbalance_cycles = 0

    def on_cycle(self, now: float) -> None:
        alloc = self.manager.decider.last_allocation
        if alloc is None:
            return
        if alloc.overshoot > 0:  # the measured current exceeded the connection limit
            self.overload_cycles += 1
        if any(d.lreason is Limit.IMBALANCE or d.pause_reason is PauseReason.IMBALANCE
               for d in alloc.evses):
            self.imbalance_cycles += 1


class RequestCounts:
    """HTTP requests by command and status (counted when the answer is sent)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()

    async def on_response_prepare(self, request: web.BaseRequest,
                                  response: web.StreamResponse) -> None:
        target = plain_target(request.raw_path)
        if target is None:
            path, name = request.path, request.query.get("cmd", "")
        else:
            path, name = target[0], dict(parse_qsl(target[1])).get("cmd", "")
        if path == "/cnf":
            label = name.strip() if name.strip() in COMMANDS else "unknown"
        else:
            label = path if path in (PATH, "/ui/en/sim.htm") else "other"
        self.counts[(label, response.status)] += 1


def _a(ma: float) -> float:
    return ma / 1000.0


class _Families:
    """Metric families by name, made on first use."""

    def __init__(self) -> None:
        self.made: dict[str, Metric] = {}

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
        family = self.made.get(name)
        if family is None:
            family = self.made[name] = GaugeMetricFamily(name, doc, labels=list(labels))
        assert isinstance(family, GaugeMetricFamily)
        return family

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
        family = self.made.get(name)
        if family is None:
            family = self.made[name] = CounterMetricFamily(name, doc, labels=list(labels))
        assert isinstance(family, CounterMetricFamily)
        return family


DEV = ("dev_id", "name")
PHASE = ("dev_id", "name", "phase")


class ManagerCollector:
    """Reads the state at scrape time (see the module's docstring)."""

    def __init__(self, app: Services, requests: RequestCounts, tally: CycleTally,
                 mqtt: MqttStats | None) -> None:
        self.app = app
        self.requests = requests
        self.tally = tally
        self.mqtt = mqtt

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        self._site(f)
        for rt in self.app.manager.inventory.devices_in_order():
            self._device(f, rt)
        self._requests(f)
        self._mqtt(f)
        yield from f.made.values()

    def _site(self, f: _Families) -> None:
        mgr = self.app.manager
        f.gauge("chargebrain_info", "The server: version and serial number",
                ("version", "serial")).add_metric([package_version(), mgr.serial], 1)
        f.gauge("chargebrain_cycle_time_seconds",
                "Measured period of the control cycle").add_metric([], mgr.cycle_time_ms / 1000)
        f.gauge("chargebrain_cycle_duration_seconds",
                "Time the last control cycle took").add_metric([], mgr.cycle_duration_s)
        f.counter("chargebrain_cycles", "Control cycles run").add_metric([], mgr.cycle_count)
        f.gauge("chargebrain_load_management_enabled",
                "1: load management; 0: observe mode").add_metric([], int(mgr.site.lb_enabled))
        decider = mgr.decider
        f.gauge("chargebrain_site_max_total_current_amperes",
                "The connection's limit per phase now (after formulas and percentage)"
                ).add_metric([], _a(decider.evaluated_max_total_ma))
        f.gauge("chargebrain_overdraft_largest_amperes",
                "Largest overdraw of the connection limit seen (until reset)"
                ).add_metric([], _a(decider.overdraft_cur))
        f.counter("chargebrain_overload_cycles",
                  "Cycles in which the measured current exceeded the connection limit"
                  ).add_metric([], self.tally.overload_cycles)
        f.counter("chargebrain_imbalance_limited_cycles",
                  "Cycles in which the phase imbalance limit held an EVSE back"
                  ).add_metric([], self.tally.imbalance_cycles)
        s = decider.last_site
        alloc = decider.last_allocation
        if s is None or alloc is None:
            return
        f.gauge("chargebrain_overdraft_penalty_amperes",
                "Overdraft penalty applied in the last cycle (largest phase)"
                ).add_metric([], _a(s.overdraft_applied_ma))
        f.gauge("chargebrain_phase_imbalance_amperes",
                "Spread of the EVSE current over the phases after the last cycle"
                ).add_metric([], _a(alloc.imbalance))
        avail = f.gauge("chargebrain_site_available_current_amperes",
                        "Current left for the EVSEs per phase in the last cycle", ("phase",))
        load = f.gauge("chargebrain_site_non_evse_current_amperes",
                       "Non-EVSE load per phase the last cycle counted", ("phase",))
        for i, phase in enumerate(PHASES):
            avail.add_metric([phase], _a(s.available[i]))
            load.add_metric([phase], _a(s.non_evse_load[i]))
        for name, doc, value in (
                ("grid", "Power at the grid meters (+ import, - export)", s.grid_w),
                ("consumed", "Consumption without the EVSEs", s.consumed_w),
                ("produced", "Production", s.produced_w),
                ("surplus", "Surplus the rules use", s.surplus_w),
                ("evse", "Power all EVSEs draw", s.evse_power_w)):
            f.gauge(f"chargebrain_site_{name}_power_watts", doc).add_metric([], value)

    def _device(self, f: _Families, rt: DeviceRuntime) -> None:
        labels = [rt.dev_id, rt.config.name]
        st = rt.status
        f.gauge("chargebrain_device_communication_error",
                "1 while the device does not answer", DEV).add_metric(labels, int(st.com_err))
        f.counter("chargebrain_device_communication_errors",
                  "Times communication with the device failed since start", DEV
                  ).add_metric(labels, st.com_errors)
        if rt.evse is not None:
            self._evse(f, rt, labels)
        elif rt.group_state is not None:
            g = f.gauge("chargebrain_group_allocated_current_amperes",
                        "Current given to the group's EVSEs per phase", PHASE)
            for i, phase in enumerate(PHASES):
                g.add_metric([*labels, phase], _a(rt.group_state[i]))
        elif rt.meter is not None:
            self._meter(f, rt, labels)

    def _evse(self, f: _Families, rt: DeviceRuntime, labels: list[str]) -> None:
        ev = rt.evse
        assert ev is not None
        r, d = ev.reading, ev.decision
        state = int(r.state) if r is not None and not rt.status.com_err else 6
        f.gauge("chargebrain_evse_state", "1 waiting, 2 vehicle detected, 3 charging, "
                "4 charging with ventilation, 5 error, 6 offline", DEV).add_metric(labels, state)
        cur = f.gauge("chargebrain_evse_current_amperes",
                      "Current drawn per phase (the wallbox's own order)", PHASE)
        for i, phase in enumerate(PHASES):
            cur.add_metric([*labels, phase], _a(r.currents[i]) if r is not None else 0.0)
        f.gauge("chargebrain_evse_power_watts", "Charging power", DEV).add_metric(
            labels, r.power_w if r is not None else 0.0)
        f.counter("chargebrain_evse_energy_watt_hours", "Energy counter", DEV).add_metric(
            labels, ev.total_energy_wh)
        f.gauge("chargebrain_evse_session_energy_watt_hours", "Energy of this session",
                DEV).add_metric(labels, ev.transaction_energy_wh)
        offered = d.current_ma if d is not None and d.charging_enabled else 0
        f.gauge("chargebrain_evse_offered_current_amperes",
                "Current the manager decided for the EVSE", DEV).add_metric(labels, _a(offered))
        f.gauge("chargebrain_evse_charging_enabled", "1 if charging is enabled",
                DEV).add_metric(labels, int(bool(d and d.charging_enabled)))
        f.gauge("chargebrain_evse_paused", "1 if the manager paused the EVSE",
                DEV).add_metric(labels, int(bool(d and d.paused)))
        f.gauge("chargebrain_evse_limit_reason", "What limits the current (lreason code)",
                DEV).add_metric(labels, int(d.lreason) if d is not None else 0)
        f.gauge("chargebrain_evse_pause_reason", "Why it is paused (pause_reason code)",
                DEV).add_metric(labels, int(d.pause_reason) if d is not None else 0)

    def _meter(self, f: _Families, rt: DeviceRuntime, labels: list[str]) -> None:
        m = rt.meter
        assert m is not None
        f.gauge("chargebrain_meter_power_watts", "Power (+ import/consumption)",
                DEV).add_metric(labels, m.power_w)
        cur = f.gauge("chargebrain_meter_current_amperes", "Current per phase", PHASE)
        volt = f.gauge("chargebrain_meter_voltage_volts", "Voltage per phase", PHASE)
        for i, phase in enumerate(PHASES):
            cur.add_metric([*labels, phase], _a(m.currents[i]))
            volt.add_metric([*labels, phase], m.voltages[i])
        f.counter("chargebrain_meter_import_watt_hours", "Imported energy counter",
                  DEV).add_metric(labels, m.import_wh)
        f.counter("chargebrain_meter_export_watt_hours", "Exported energy counter",
                  DEV).add_metric(labels, m.export_wh)

    def _requests(self, f: _Families) -> None:
        total = f.counter("chargebrain_http_requests", "HTTP requests answered",
                          ("command", "status"))
        errors = f.counter("chargebrain_http_request_errors",
                           "HTTP requests answered with an error (status 400 and above)",
                           ("command", "status"))
        for (command, status), count in sorted(self.requests.counts.items()):
            total.add_metric([command, str(status)], count)
            if status >= 400:
                errors.add_metric([command, str(status)], count)

    def _mqtt(self, f: _Families) -> None:
        mqtt = self.mqtt
        if mqtt is None:
            return
        f.gauge("chargebrain_mqtt_connected", "1 while connected to the MQTT broker"
                ).add_metric([], int(mqtt.connected))
        for name, doc, value in (
                ("connections", "Connections made to the broker", mqtt.connections),
                ("messages_published", "Messages published", mqtt.published),
                ("messages_received", "Messages received", mqtt.received),
                ("messages_ignored", "Messages received and ignored", mqtt.ignored),
                ("messages_dropped", "Messages dropped: the outbox was full", mqtt.dropped)):
            f.counter(f"chargebrain_mqtt_{name}", doc).add_metric([], value)


class MetricsEndpoint:
    """The `/metrics` route, its request counting and its collector."""

    def __init__(self, app: Services, mqtt: MqttStats | None = None) -> None:
        self.app = app
        self.requests = RequestCounts()
        self.tally = CycleTally(app.manager)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ManagerCollector(app, self.requests, self.tally, mqtt))

    def install(self, web_app: web.Application) -> None:
        web_app.router.add_get(PATH, self.handle)
        web_app.on_response_prepare.append(self.requests.on_response_prepare)
        self.app.manager.listeners.append(self.tally)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.app.manager.site.metrics_public:
            try:
                caller = await auth.identify(self.app, request)
            except ApiError as exc:  # credentials over the budget of wrong guesses
                return json_response(exc.body, status=exc.status, headers=exc.headers)
            if not caller.is_admin:
                await auth.penalise(self.app, caller)
                return challenge("the metrics need the admin password (or metrics_public)")
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE})
