"""Reading every variable a definition describes, over Modbus, HTTP or MQTT.

`DefinitionReader` takes a parsed definition and a device address and returns the
variables' values (numbers in the definition's units after resolution, texts) and the
input bits, with as few requests as it can: contiguous Modbus registers of one function
code are fetched together; each HTTP method and URL once per reading; an MQTT device takes
the last message of each topic from the broker connection (`TopicFeed`). It applies types,
word order, resolution, reserved values and a variable's `map`, keeps `once` variables,
`upd_delay` and `delay_accumulated`, and evaluates `fixed` and `expr` variables. Every
failure is a `DeviceError` naming the device and what went wrong. The meter and charger
drivers build their readings from these values, and share its connections for writing.

This module must never decide anything about charging, and never import pymodbus.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import aiohttp

from chargebrain.clock import Clock, RealClock
from chargebrain.devices.defined.decode import (
    Answer,
    as_number,
    as_text,
    bits,
    decode_registers,
    format_version,
    plan_register_reads,
    scale,
)
from chargebrain.devices.defined.links import (
    ModbusLink,
    parse_http_base,
    parse_modbus_link,
    release_adapter,
    shared_adapter,
)
from chargebrain.devices.errors import DeviceError, ModbusIOError
from chargebrain.devices.meterdef import (
    DefinitionValues,
    InputDef,
    MeterDefinition,
    RType,
    ValueType,
    Variable,
)
from chargebrain.devices.meterdef.values import map_key
from chargebrain.devices.modbus_client import ModbusClientAdapter
from chargebrain.devices.topics import TopicFeed, feed_for, topics_of

__all__ = ["DEFAULT_TIMEOUT_S", "DefinitionReader", "Value"]

DEFAULT_TIMEOUT_S = 2.0
#: An MQTT device's value older than this is a communication error (as a pushed meter's).
MQTT_STALE_AFTER_S = 30.0
# With `delay_accumulated`, energy counters are fetched at most this often.
ACCUMULATED_INTERVAL_S = 3.0
MAX_HTTP_BODY = 1024 * 1024
ENERGY_VARIABLES = frozenset({"import_wh", "export_wh"})

Value = float | str


class DefinitionReader:
    """Reads one device through its definition. See the module docstring.

    `address`: Modbus (see `links.parse_modbus_link`), HTTP "http://host:port",
    "host:port" or "host", MQTT "mqtt". `unit_id` is the Modbus unit. `timeout` bounds
    every request (seconds). A `modbus` adapter or an aiohttp `session` may be given;
    the reader closes only what it made itself (adapters of a link are shared).
    """

    def __init__(
        self,
        definition: MeterDefinition,
        address: str,
        unit_id: int = 1,
        *,
        what: str = "meter",
        timeout: float = DEFAULT_TIMEOUT_S,
        clock: Clock | None = None,
        modbus: ModbusClientAdapter | None = None,
        session: aiohttp.ClientSession | None = None,
        topics: TopicFeed | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.definition = definition
        self.address = address
        self.unit = unit_id
        self.what = what
        self.timeout = timeout
        self.clock: Clock = clock or RealClock()
        self._modbus = modbus
        self._shared = False
        self._session = session
        self._owns_session = session is None
        self.link: ModbusLink | None = None
        self.base_url = ""
        self._topics: TopicFeed | None = None
        if definition.rtype is RType.MODBUS:
            if not 0 <= unit_id <= 255:
                raise DeviceError(f"Modbus unit id {unit_id} out of range 0..255")
            rtu = definition.rtu
            self.link = parse_modbus_link(
                address, framing=definition.framing,
                serial=(rtu.baudrate, rtu.bytesize, rtu.parity, rtu.stopbits))
        elif definition.rtype is RType.HTTP:
            self.base_url = parse_http_base(address)
        else:
            self._topics = feed_for(definition, address, topics)
            self._topics.watch(self, topics_of(definition))
        self._once: dict[str, Value] = {}
        self._energy: dict[str, Value] = {}
        self._energy_at: float | None = None
        self._last: tuple[dict[str, Value], list[int]] | None = None
        self._last_at = 0.0

    def where(self) -> str:
        """The device as messages name it."""
        dev_type = self.definition.dev_type
        if self.definition.rtype is RType.MQTT:
            return f"{self.what} {dev_type} via MQTT"
        unit = f" unit {self.unit}" if self.definition.rtype is RType.MODBUS else ""
        return f"{self.what} {dev_type} at {self.address}{unit}"

    async def close(self) -> None:
        """Release connections (a shared adapter when its last user goes)."""
        if self._modbus is not None and self._shared:
            await release_adapter(self._modbus)
            self._modbus = None
            self._shared = False
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None
        if self._topics is not None:
            self._topics.unwatch(self)

    def forget_once(self) -> None:
        """Read `once` variables again (after the device was away: it may be another)."""
        self._once.clear()

    # -- reading --------------------------------------------------------------------------

    async def read(self) -> tuple[dict[str, Value], list[int]]:
        """Every variable's value by name, and the input bits (within `upd_delay`, the
        same objects as the last time; not to be changed)."""
        definition = self.definition
        now = self.clock.monotonic()
        if (
            self._last is not None
            and definition.upd_delay_ms
            and now - self._last_at < definition.upd_delay_ms / 1000
        ):
            return self._last  # the same objects: the caller may keep what it made of them
        refresh_energy = (
            not definition.delay_accumulated
            or self._energy_at is None
            or now - self._energy_at >= ACCUMULATED_INTERVAL_S
        )
        wanted = [
            v
            for v in definition.variables
            if v.is_read
            and v.name not in self._once
            and (refresh_energy or v.name not in ENERGY_VARIABLES)
        ]
        if definition.rtype is RType.MODBUS:
            values, inputs = await self._read_modbus(wanted)
        elif definition.rtype is RType.HTTP:
            values, inputs = await self._read_http(wanted)
        else:
            values, inputs = self._read_mqtt(wanted)
        for var in wanted:
            if var.once:
                self._once[var.name] = values[var.name]
        if definition.delay_accumulated:
            if refresh_energy:
                self._energy = {n: values[n] for n in ENERGY_VARIABLES if n in values}
                self._energy_at = now
            else:
                values.update(self._energy)
        values.update(self._once)
        for var in definition.variables:
            if var.fixed is not None:
                values[var.name] = var.fixed
        self._evaluate_expressions(values)
        self._last, self._last_at = (values, inputs), now
        return self._last

    def _evaluate_expressions(self, values: dict[str, Value]) -> None:
        if not self.definition.expr_order:
            return
        env = DefinitionValues({k: v for k, v in values.items() if isinstance(v, float)})
        for name in self.definition.expr_order:
            var = self.definition.variable(name)
            if var is None or var.expr is None:
                continue
            try:
                result = scale(var.expr.evaluate(env), var.resolution)
            except KeyError as exc:
                raise DeviceError(
                    f"{self.where()}: expression of {name!r} needs {exc.args[0]!r}, "
                    "which has no numeric value"
                ) from None
            if not math.isfinite(result):
                result = 0.0
            if var.mapping is not None:
                values[name] = self._mapped(var, map_key(repr(result) if not result.is_integer()
                                                        else str(int(result))))
                continue
            values[name] = result
            env.set(name, result)

    def _finish_number(self, var: Variable, candidates: tuple[float, ...], value: float) -> Value:
        """A `map` turns the raw value into the variable's; else reserved values and
        non-finite numbers read as 0, and the resolution applies."""
        if var.mapping is not None:
            return self._mapped(var, map_key(repr(value) if not value.is_integer()
                                             else str(int(value))))
        reserved = var.reserved if var.reserved is not None else self.definition.reserved
        if reserved and any(c in reserved for c in candidates):
            return 0.0
        if not math.isfinite(value):
            return 0.0
        return scale(value, var.resolution)

    def _mapped(self, var: Variable, key: str) -> Value:
        assert var.mapping is not None
        found = var.mapping.get(key)
        if found is None:
            raise DeviceError(f"{self.where()}: {var.name} reads {key[:40]!r}, which the "
                              "definition's map does not know")
        return found

    # -- Modbus ---------------------------------------------------------------------------

    def adapter(self) -> ModbusClientAdapter:
        """The Modbus adapter of the device's link (shared with others on that link)."""
        if self._modbus is None:
            assert self.link is not None
            tcp = self.definition.tcp
            self._modbus = shared_adapter(
                self.link, self.timeout,
                connect_timeout=tcp.connect_timeout_ms / 1000 or None,
                delay_after_connect=tcp.delay_after_connect_ms / 1000)
            self._shared = True
        return self._modbus

    async def _read_modbus(self, wanted: list[Variable]) -> tuple[dict[str, Value], list[int]]:
        definition = self.definition
        by_func: dict[int, list[tuple[int, int]]] = {}
        for v in wanted:
            if v.register is not None:
                func = v.func or definition.modbus_read
                count = 1 if func in (1, 2) else v.register_count
                by_func.setdefault(func, []).append((v.register, count))
        for i in definition.inputs:
            if i.register is not None:
                by_func.setdefault(definition.modbus_read, []).append((i.register, 1))
        adapter = self.adapter()
        registers: dict[tuple[int, int], int] = {}
        for func, spans in sorted(by_func.items()):
            limit = 2000 if func in (1, 2) else definition.read_max_registers
            for start, count in plan_register_reads(spans, limit, definition.modbus_allow_gaps):
                words = await self._request(adapter, func, start, count)
                for offset, word in enumerate(words):
                    registers[(func, start + offset)] = word
        values: dict[str, Value] = {}
        for var in wanted:
            if var.register is None:
                continue
            func = var.func or definition.modbus_read
            if func in (1, 2):
                bit = registers[(func, var.register)]
                values[var.name] = self._finish_number(var, (bit,), float(bit))
                continue
            words = [registers[(func, a)]
                     for a in range(var.register, var.register + var.register_count)]
            values[var.name] = self._modbus_value(var, words)
        inputs: list[int] = []
        for item in definition.inputs:
            if item.register is not None:
                inputs.extend(bits(registers[(definition.modbus_read, item.register)],
                                   item.count))
        return values, inputs

    async def _request(self, adapter: ModbusClientAdapter, func: int, start: int,
                       count: int) -> list[int]:
        """One read; a request without an answer is tried again `rtu.retries` times
        (some RS-485 devices miss the first frame after a pause), each bounded by
        `rtu.rcv_timeout` when the definition gives one."""
        rtu = self.definition.rtu
        timeout = rtu.rcv_timeout_ms / 1000 if rtu.rcv_timeout_ms else self.timeout
        for attempt in range(rtu.retries + 1):
            try:
                return await adapter.read(self.unit, start, count, function_code=func,
                                          timeout=timeout)
            except ModbusIOError as exc:
                if exc.exception_code is None and attempt < rtu.retries:
                    continue
                raise ModbusIOError(f"{self.where()}: {exc}", exc.exception_code) from exc
        raise DeviceError(f"{self.where()}: no answer")  # (the loop returns or raises)

    def _modbus_value(self, var: Variable, words: list[int]) -> Value:
        raw, value = decode_registers(words, var.type, var.order)
        if isinstance(value, str):
            return self._mapped(var, value) if var.mapping is not None else value
        if var.length is not None:
            return format_version(raw, var.length)
        return self._finish_number(var, (raw, value), value)

    # -- HTTP -----------------------------------------------------------------------------

    def http_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connect = self.definition.tcp.connect_timeout_ms / 1000 or None
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=connect)
            )
            self._owns_session = True
        return self._session

    def url(self, path: str) -> str:
        return path if re.match(r"(?i)https?://", path) else self.base_url + path

    async def fetch(self, method: str, url: str, body: str | None = None) -> str:
        """One HTTP request; its answer as text, or a DeviceError."""
        session = self.http_session()
        what = f"{self.where()}: {method} {url}"
        try:
            async with (
                asyncio.timeout(self.timeout),
                session.request(method, url, data=body, allow_redirects=False) as response,
            ):
                raw = await response.content.read(MAX_HTTP_BODY + 1)
                status = response.status
                charset = response.charset or "utf-8"
        except TimeoutError:
            raise DeviceError(f"{what}: no answer within {self.timeout:g} s") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise DeviceError(f"{what}: {exc or type(exc).__name__}") from exc
        if status >= 400:
            raise DeviceError(f"{what}: HTTP status {status}")
        if len(raw) > MAX_HTTP_BODY:
            raise DeviceError(f"{what}: answer larger than {MAX_HTTP_BODY} bytes")
        try:
            return raw.decode(charset, errors="replace")
        except LookupError:
            return raw.decode("utf-8", errors="replace")

    async def _read_http(self, wanted: list[Variable]) -> tuple[dict[str, Value], list[int]]:
        requests: dict[tuple[str, str], None] = {}
        for var in wanted:
            if var.http is not None:
                requests[(var.http.method, self.url(var.http.path))] = None
        for item in self.definition.inputs:
            if item.http is not None:
                requests[(item.http.method, self.url(item.http.path))] = None
        answers: dict[tuple[str, str], Answer] = {}
        for method, url in requests:
            text = await self.fetch(method, url)
            answers[(method, url)] = Answer(f"{self.where()}: {method} {url}", text)
        values: dict[str, Value] = {}
        for var in wanted:
            if var.http is not None:
                answer = answers[(var.http.method, self.url(var.http.path))]
                values[var.name] = self._http_value(var, answer)
        inputs: list[int] = []
        for item in self.definition.inputs:
            if item.http is not None:
                answer = answers[(item.http.method, self.url(item.http.path))]
                inputs.extend(self._http_input(item, answer))
        return values, inputs

    def _http_value(self, var: Variable, answer: Answer) -> Value:
        where = f"{answer.where}: variable {var.name!r}"
        selected: Any
        if var.query is not None:
            selected = answer.select(var.query.apply, where)
        else:
            selected = answer.document_or_text()
        if var.regex is not None:
            subject = answer.text if var.query is None else as_text(selected)
            match = var.regex.search(subject)
            if match is None:
                raise DeviceError(f"{where}: regex {var.regex.pattern!r} does not match")
            selected = match.group(1) if var.regex.groups else match.group(0)
        if var.type is ValueType.STRING:
            text = as_text(selected)
            return self._mapped(var, text) if var.mapping is not None else text
        number = as_number(selected, where)
        if var.length is not None:
            return format_version(int(number), var.length)
        return self._finish_number(var, (number,), number)

    def _http_input(self, item: InputDef, answer: Answer) -> list[int]:
        where = f"{answer.where}: input"
        if item.query is not None:
            selected = answer.select(item.query.apply, where)
        else:
            selected = answer.document_or_text()
        number = as_number(selected, where)
        return bits(int(number) if math.isfinite(number) else 0, item.count)

    # -- MQTT -----------------------------------------------------------------------------

    def _read_mqtt(self, wanted: list[Variable]) -> tuple[dict[str, Value], list[int]]:
        """The values from the last message of each topic; a topic without one, or whose
        last one is older than MQTT_STALE_AFTER_S, is a DeviceError."""
        feed = self._topics
        assert feed is not None
        mono = self.clock.monotonic()
        answers: dict[str, Answer] = {}

        def answer(topic: str) -> Answer:
            known = answers.get(topic)
            if known is not None:
                return known
            where = f"{self.where()}: topic {topic}"
            value = feed.latest(topic)
            if value is None:
                problem = feed.problem()
                raise DeviceError(f"{where}: no message yet" + (f" ({problem})" if problem else ""))
            age = mono - value.received
            if age > MQTT_STALE_AFTER_S:
                raise DeviceError(f"{where}: no message for {age:.0f} s")
            made = answers[topic] = Answer(where, value.payload.decode("utf-8", "replace"))
            return made

        values = {var.name: self._http_value(var, answer(var.topic))
                  for var in wanted if var.topic is not None}
        inputs: list[int] = []
        for item in self.definition.inputs:
            if item.topic is not None:
                inputs.extend(self._http_input(item, answer(item.topic)))
        return values, inputs
