"""A meter driver that reads whatever a meter definition describes (Modbus TCP, HTTP/JSON
or MQTT/JSON).

`DefinedMeter` takes a parsed `MeterDefinition` and a device address, reads every variable
with as few requests as it can (contiguous Modbus registers are fetched together; each HTTP
path is fetched once per reading; an MQTT meter takes the last message of each topic from
the broker connection, `TopicFeed`), applies types, word order, resolution and reserved values,
evaluates `fixed` and `expr` variables, and returns a `MeterReading` in chargebrain units
(W, mA, V, Wh). Every failure is a `DeviceError` naming the meter and what went wrong.

Sign rule: many meters report current magnitudes only. When a phase's current is positive and
the same phase's active power (`power_w_lN`) is negative, the current is negated, so currents
follow the power's direction (negative = export). Missing `power_w` is the sum of the
per-phase powers, else `power_va` (and the reading is flagged as VA).

This module must never import pymodbus (Modbus goes through `ModbusTcpClientAdapter`), never
write to the device, and never decide anything about charging.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import struct
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiohttp

from chargebrain.clock import Clock, RealClock
from chargebrain.core.model import MeterReading
from chargebrain.core.phases import Phases
from chargebrain.devices.errors import DeviceError, ModbusIOError
from chargebrain.devices.meterdef import (
    DefinitionValues,
    InputDef,
    MeterDefinition,
    QueryMiss,
    RType,
    ValueType,
    Variable,
    WordOrder,
)
from chargebrain.devices.modbus_client import DEFAULT_PORT, ModbusTcpClientAdapter
from chargebrain.devices.topics import TopicFeed, feed_for, topics_of

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DefinedMeter",
    "decode_registers",
    "parse_http_base",
    "parse_modbus_address",
    "plan_register_reads",
    "scale",
]

DEFAULT_TIMEOUT_S = 2.0
#: An MQTT meter's value older than this is a communication error (as a pushed meter's).
MQTT_STALE_AFTER_S = 30.0
# With `delay_accumulated`, energy counters are fetched at most this often.
ACCUMULATED_INTERVAL_S = 3.0
MAX_HTTP_BODY = 1024 * 1024
ENERGY_VARIABLES = frozenset({"import_wh", "export_wh"})
_MAPPED_VARIABLES = frozenset(
    {
        "power_w",
        "current_l1",
        "current_l2",
        "current_l3",
        "voltage_l1",
        "voltage_l2",
        "voltage_l3",
        "import_wh",
        "export_wh",
        "soc",
    }
)
_SERIAL_RE = re.compile(r"(?i)^(?:com\d+(?:$|[,:\s])|/dev/|tty[a-z]*\d+$|rtu:|serial:)|,")

Value = float | str


# ---------------------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------------------


def parse_modbus_address(address: str) -> tuple[str, int]:
    """`"192.168.1.5:502"`, `"meter.local"`, `"[fe80::1]:1502"` → (host, port)."""
    text = address.strip()
    if not text:
        raise DeviceError("Modbus meter address is empty; expected host or host:port")
    if _SERIAL_RE.search(text):
        raise DeviceError(
            f"Modbus address {address!r} names a serial line, but serial ports are not "
            "available; connect the meter through a Modbus TCP gateway and give host:port"
        )
    if text.lower().startswith("tcp://"):
        text = text[6:]
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise DeviceError(f"Modbus address {address!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise DeviceError(f"Modbus address {address!r}: ':port' expected after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or any(ch.isspace() or ch in "/?#@" for ch in host):
        raise DeviceError(f"Modbus address {address!r}: bad host; expected host or host:port")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise DeviceError(f"Modbus address {address!r}: port must be 1..65535")
        port = int(port_text)
    return host, port


def parse_http_base(address: str) -> str:
    """`"http://host:port"`, `"host:port"` or `"host"` → base URL without trailing slash."""
    text = address.strip()
    if not text:
        raise DeviceError("HTTP meter address is empty; expected http://host:port or host:port")
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise DeviceError(
            f"HTTP meter address {address!r} is not usable; expected http://host:port or host:port"
        )
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


# ---------------------------------------------------------------------------------------
# Registers
# ---------------------------------------------------------------------------------------


def plan_register_reads(
    spans: Iterable[tuple[int, int]], max_registers: int, allow_gaps: bool
) -> list[tuple[int, int]]:
    """Group (start, count) spans into as few (start, count) reads as the limits allow.

    Without `allow_gaps` only touching or overlapping spans share a read, so registers
    nobody asked for are never requested.
    """
    ordered = sorted({(s, s + c) for s, c in spans if c > 0}, key=lambda se: (se[0], -se[1]))
    blocks: list[list[int]] = []
    for start, end in ordered:
        if blocks:
            block = blocks[-1]
            if end <= block[1]:
                continue
            joinable = allow_gaps or start <= block[1]
            if joinable and end - block[0] <= max_registers:
                block[1] = end
                continue
        blocks.append([start, end])
    return [(s, e - s) for s, e in blocks]


def decode_registers(
    words: Sequence[int], vtype: ValueType, order: WordOrder
) -> tuple[int, float | str]:
    """Raw unsigned bits and decoded value of a register run (strings: raw is 0)."""
    if vtype is ValueType.STRING:
        data = b"".join(int(w & 0xFFFF).to_bytes(2, "big") for w in words)
        return 0, data.decode("latin-1").replace("\x00", " ").strip()
    ordered = list(words) if order is WordOrder.HIGH_FIRST else list(reversed(words))
    raw = 0
    for word in ordered:
        raw = (raw << 16) | (word & 0xFFFF)
    bits = 16 * len(ordered)
    if vtype is ValueType.FLOAT:
        return raw, float(struct.unpack(">f", raw.to_bytes(4, "big"))[0])
    value = raw
    if vtype.signed and raw >= 1 << (bits - 1):
        value = raw - (1 << bits)
    return raw, float(value)


def scale(value: float, resolution: float) -> float:
    """`value * resolution`, dividing for decimal fractions so 2305 * 0.1 gives 230.5."""
    if 0 < abs(resolution) < 1:
        divisor = round(1 / resolution)
        if divisor and abs(1 / divisor - resolution) <= 1e-12 * abs(resolution):
            return value / divisor
    return value * resolution


def _format_version(raw: int, parts: int) -> str:
    return ".".join(str((raw >> (8 * i)) & 0xFF) for i in reversed(range(parts)))


# ---------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------


class DefinedMeter:
    """Reads one meter through its definition.

    `address`: Modbus "host[:port]" (port 502 by default); HTTP "http://host:port",
    "host:port" or "host" (variable paths are appended). `unit_id` is the Modbus unit.
    `timeout` bounds every request (seconds). A `modbus` adapter or an aiohttp `session`
    may be shared between meters; the meter closes only what it created itself. An MQTT
    meter (address "mqtt": the configured broker) reads from `topics`.
    """

    def __init__(
        self,
        definition: MeterDefinition,
        address: str,
        unit_id: int = 1,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        clock: Clock | None = None,
        modbus: ModbusTcpClientAdapter | None = None,
        session: aiohttp.ClientSession | None = None,
        topics: TopicFeed | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._definition = definition
        self._address = address
        self._unit = unit_id
        self._timeout = timeout
        self._clock: Clock = clock or RealClock()
        self._modbus = modbus
        self._owns_modbus = modbus is None
        self._session = session
        self._owns_session = session is None
        self._host, self._port = "", 0
        self._base_url = ""
        self._topics: TopicFeed | None = None
        if definition.rtype is RType.MODBUS:
            if not 0 <= unit_id <= 255:
                raise DeviceError(f"Modbus unit id {unit_id} out of range 0..255")
            self._host, self._port = parse_modbus_address(address)
        elif definition.rtype is RType.HTTP:
            self._base_url = parse_http_base(address)
        else:
            self._topics = feed_for(definition, address, topics)
            self._topics.watch(self, topics_of(definition))
        self._once: dict[str, Value] = {}
        self._energy: dict[str, Value] = {}
        self._energy_at: float | None = None
        self._last: MeterReading | None = None
        self._last_at = 0.0
        self._texts: dict[str, str] = {}
        self._lock = asyncio.Lock()

    @property
    def definition(self) -> MeterDefinition:
        return self._definition

    @property
    def address(self) -> str:
        return self._address

    @property
    def texts(self) -> dict[str, str]:
        """Text variables of the last reading (type_designation, serial, versions, ...)."""
        return dict(self._texts)

    def __repr__(self) -> str:
        return f"DefinedMeter({self._definition.dev_type} at {self._address})"

    async def __aenter__(self) -> DefinedMeter:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release connections this meter opened (shared ones stay open)."""
        if self._modbus is not None and self._owns_modbus:
            await self._modbus.close()
            self._modbus = None
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None
        if self._topics is not None:
            self._topics.unwatch(self)

    async def read(self) -> MeterReading:
        """Read all variables; raises DeviceError when the meter cannot be read."""
        async with self._lock:
            return await self._read()

    # -- reading --------------------------------------------------------------------------

    async def _read(self) -> MeterReading:
        definition = self._definition
        now = self._clock.monotonic()
        if (
            self._last is not None
            and definition.upd_delay_ms
            and now - self._last_at < definition.upd_delay_ms / 1000
        ):
            return self._last
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
        reading = self._assemble(values, inputs)
        self._last, self._last_at = reading, now
        return reading

    def _evaluate_expressions(self, values: dict[str, Value]) -> None:
        if not self._definition.expr_order:
            return
        env = DefinitionValues({k: v for k, v in values.items() if isinstance(v, float)})
        for name in self._definition.expr_order:
            var = self._definition.variable(name)
            if var is None or var.expr is None:
                continue
            try:
                result = scale(var.expr.evaluate(env), var.resolution)
            except KeyError as exc:
                raise DeviceError(
                    f"{self._where()}: expression of {name!r} needs {exc.args[0]!r}, "
                    "which has no numeric value"
                ) from None
            if not math.isfinite(result):
                result = 0.0
            values[name] = result
            env.set(name, result)

    def _assemble(self, values: dict[str, Value], inputs: list[int]) -> MeterReading:
        num = {k: v for k, v in values.items() if isinstance(v, float)}
        self._texts = {k: v for k, v in values.items() if isinstance(v, str)}
        power = num.get("power_w")
        is_va = False
        if power is None:
            phase_powers = [num[f"power_w_l{i}"] for i in (1, 2, 3) if f"power_w_l{i}" in num]
            if phase_powers:
                power = sum(phase_powers)
            elif "power_va" in num:
                power, is_va = num["power_va"], True
            else:
                power = 0.0
        currents: list[int] = []
        for i in (1, 2, 3):
            current = num.get(f"current_l{i}", 0.0)
            phase_power = num.get(f"power_w_l{i}")
            if phase_power is not None and phase_power < 0 < current:
                current = -current
            currents.append(round(current))
        default_voltages = MeterReading().voltages
        voltages = (
            num.get("voltage_l1", default_voltages[0]),
            num.get("voltage_l2", default_voltages[1]),
            num.get("voltage_l3", default_voltages[2]),
        )
        extra = {k: v for k, v in num.items() if k not in _MAPPED_VARIABLES}
        for i, bit in enumerate(inputs, start=1):
            extra[f"input{i}"] = float(bit)
        return MeterReading(
            power_w=power,
            currents=Phases.of(currents),
            voltages=voltages,
            import_wh=num.get("import_wh", 0.0),
            export_wh=num.get("export_wh", 0.0),
            model=self._texts.get("type_designation") or self._definition.name,
            is_va=is_va,
            soc=num.get("soc"),
            extra=extra,
        )

    def _where(self) -> str:
        if self._definition.rtype is RType.MQTT:
            return f"meter {self._definition.dev_type} via MQTT"
        unit = f" unit {self._unit}" if self._definition.rtype is RType.MODBUS else ""
        return f"meter {self._definition.dev_type} at {self._address}{unit}"

    def _finish_number(self, var: Variable, candidates: Iterable[float], value: float) -> float:
        """Reserved values and non-finite numbers read as 0; then the resolution applies."""
        reserved = var.reserved if var.reserved is not None else self._definition.reserved
        if reserved and any(c in reserved for c in candidates):
            return 0.0
        if not math.isfinite(value):
            return 0.0
        return scale(value, var.resolution)

    # -- Modbus ---------------------------------------------------------------------------

    def _adapter(self) -> ModbusTcpClientAdapter:
        if self._modbus is None:
            tcp = self._definition.tcp
            self._modbus = ModbusTcpClientAdapter(
                self._host,
                self._port,
                self._timeout,
                connect_timeout=tcp.connect_timeout_ms / 1000 or None,
                delay_after_connect=tcp.delay_after_connect_ms / 1000,
            )
            self._owns_modbus = True
        return self._modbus

    async def _read_modbus(self, wanted: list[Variable]) -> tuple[dict[str, Value], list[int]]:
        definition = self._definition
        spans = [(v.register, v.register_count) for v in wanted if v.register is not None]
        spans += [(i.register, 1) for i in definition.inputs if i.register is not None]
        blocks = plan_register_reads(
            spans, definition.read_max_registers, definition.modbus_allow_gaps
        )
        adapter = self._adapter()
        registers: dict[int, int] = {}
        for start, count in blocks:
            try:
                words = await adapter.read(
                    self._unit,
                    start,
                    count,
                    function_code=definition.modbus_read,
                    timeout=self._timeout,
                )
            except ModbusIOError as exc:
                raise ModbusIOError(f"{self._where()}: {exc}", exc.exception_code) from exc
            registers.update(zip(range(start, start + count), words, strict=True))
        values: dict[str, Value] = {}
        for var in wanted:
            if var.register is None:
                continue
            words = [registers[a] for a in range(var.register, var.register + var.register_count)]
            values[var.name] = self._modbus_value(var, words)
        inputs: list[int] = []
        for item in definition.inputs:
            if item.register is not None:
                inputs.extend(_bits(registers[item.register], item.count))
        return values, inputs

    def _modbus_value(self, var: Variable, words: list[int]) -> Value:
        raw, value = decode_registers(words, var.type, var.order)
        if isinstance(value, str):
            return value
        if var.length is not None:
            return _format_version(raw, var.length)
        return self._finish_number(var, (raw, value), value)

    # -- HTTP -----------------------------------------------------------------------------

    def _http_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connect = self._definition.tcp.connect_timeout_ms / 1000 or None
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout, sock_connect=connect)
            )
            self._owns_session = True
        return self._session

    def _url(self, path: str) -> str:
        return path if re.match(r"(?i)https?://", path) else self._base_url + path

    async def _fetch(self, method: str, url: str) -> str:
        session = self._http_session()
        what = f"{self._where()}: {method} {url}"
        try:
            async with (
                asyncio.timeout(self._timeout),
                session.request(method, url, allow_redirects=False) as response,
            ):
                body = await response.content.read(MAX_HTTP_BODY + 1)
                status = response.status
                charset = response.charset or "utf-8"
        except TimeoutError:
            raise DeviceError(f"{what}: no answer within {self._timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise DeviceError(f"{what}: {exc or type(exc).__name__}") from exc
        if status >= 400:
            raise DeviceError(f"{what}: HTTP status {status}")
        if len(body) > MAX_HTTP_BODY:
            raise DeviceError(f"{what}: answer larger than {MAX_HTTP_BODY} bytes")
        try:
            return body.decode(charset, errors="replace")
        except LookupError:
            return body.decode("utf-8", errors="replace")

    async def _read_http(self, wanted: list[Variable]) -> tuple[dict[str, Value], list[int]]:
        requests: dict[tuple[str, str], None] = {}
        for var in wanted:
            if var.http is not None:
                requests[(var.http.method, self._url(var.http.path))] = None
        for item in self._definition.inputs:
            if item.http is not None:
                requests[(item.http.method, self._url(item.http.path))] = None
        answers: dict[tuple[str, str], _Answer] = {}
        for method, url in requests:
            text = await self._fetch(method, url)
            answers[(method, url)] = _Answer(f"{self._where()}: {method} {url}", text)
        values: dict[str, Value] = {}
        for var in wanted:
            if var.http is not None:
                answer = answers[(var.http.method, self._url(var.http.path))]
                values[var.name] = self._http_value(var, answer)
        inputs: list[int] = []
        for item in self._definition.inputs:
            if item.http is not None:
                answer = answers[(item.http.method, self._url(item.http.path))]
                inputs.extend(self._http_input(item, answer))
        return values, inputs

    def _http_value(self, var: Variable, answer: _Answer) -> Value:
        where = f"{answer.where}: variable {var.name!r}"
        selected: Any
        if var.query is not None:
            selected = answer.select(var.query.apply, where)
        else:
            selected = answer.document_or_text()
        if var.regex is not None:
            subject = answer.text if var.query is None else _as_text(selected)
            match = var.regex.search(subject)
            if match is None:
                raise DeviceError(f"{where}: regex {var.regex.pattern!r} does not match")
            selected = match.group(1) if var.regex.groups else match.group(0)
        if var.type is ValueType.STRING:
            return _as_text(selected)
        number = _as_number(selected, where)
        if var.length is not None:
            return _format_version(int(number), var.length)
        return self._finish_number(var, (number,), number)

    def _http_input(self, item: InputDef, answer: _Answer) -> list[int]:
        where = f"{answer.where}: input"
        if item.query is not None:
            selected = answer.select(item.query.apply, where)
        else:
            selected = answer.document_or_text()
        number = _as_number(selected, where)
        return _bits(int(number) if math.isfinite(number) else 0, item.count)


    # -- MQTT -----------------------------------------------------------------------------

    def _read_mqtt(self, wanted: list[Variable]) -> tuple[dict[str, Value], list[int]]:
        """The values from the last message of each topic; a topic without one, or whose
        last one is older than MQTT_STALE_AFTER_S, is a DeviceError."""
        feed = self._topics
        assert feed is not None
        mono = self._clock.monotonic()
        answers: dict[str, _Answer] = {}

        def answer(topic: str) -> _Answer:
            known = answers.get(topic)
            if known is not None:
                return known
            where = f"{self._where()}: topic {topic}"
            value = feed.latest(topic)
            if value is None:
                problem = feed.problem()
                raise DeviceError(f"{where}: no message yet" + (f" ({problem})" if problem else ""))
            age = mono - value.received
            if age > MQTT_STALE_AFTER_S:
                raise DeviceError(f"{where}: no message for {age:.0f} s")
            made = answers[topic] = _Answer(where, value.payload.decode("utf-8", "replace"))
            return made

        values = {var.name: self._http_value(var, answer(var.topic))
                  for var in wanted if var.topic is not None}
        inputs: list[int] = []
        for item in self._definition.inputs:
            if item.topic is not None:
                inputs.extend(self._http_input(item, answer(item.topic)))
        return values, inputs


class _Answer:
    """One HTTP answer, parsed as JSON only when a query needs it."""

    def __init__(self, where: str, text: str) -> None:
        self.where = where
        self.text = text
        self._doc: Any = None
        self._parsed = False
        self._json_error = ""

    def _parse(self) -> None:
        if not self._parsed:
            self._parsed = True
            try:
                self._doc = json.loads(self.text)
            except ValueError as exc:
                self._json_error = str(exc)

    def document(self) -> Any:
        self._parse()
        if self._json_error:
            raise DeviceError(f"{self.where}: answer is not JSON ({self._json_error})")
        return self._doc

    def document_or_text(self) -> Any:
        self._parse()
        return self.text.strip() if self._json_error else self._doc

    def select(self, apply: Callable[[Any], Any], where: str) -> Any:
        try:
            return apply(self.document())
        except QueryMiss as exc:
            raise DeviceError(f"{where}: {exc}") from None


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _as_number(value: Any, where: str) -> float:
    if value is None:
        return 0.0  # JSON null: the device has no value right now
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise DeviceError(f"{where}: {value[:40]!r} is not a number") from None
    raise DeviceError(f"{where}: selects {type(value).__name__}, not a number")


def _bits(value: int, count: int) -> list[int]:
    return [(value >> i) & 1 for i in range(count)]
