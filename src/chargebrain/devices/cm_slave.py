"""The driver of a "Charging Manager Slave" (`evse_cm`): another charging manager seen as
one EVSE.

A master reads the slave's aggregate state with `get_cm_slave` over the slave's HTTP API
(what its EVSEs draw per phase, whether a car is there or charging, its wiring limit and
what its EVSEs want together: its demand) and writes the current all the slave's EVSEs
may take together with `set_cm_slave&cur=…` (admin: the slave's admin password is this
device's `password`). The slave shares that current among its EVSEs and falls back to its
own safe value when the master stops writing (manager/cascade.py, api/cmd_cascade.py).
A slave that shows another limit than the one written last (it restarted, or its limit
expired) is written again with the read.

A slave that takes no master's limit (`cm_master_enabled` off on it) or does not manage
its EVSEs (observe mode) cannot be controlled: its reads fail, so the master counts it at
its worst, as any EVSE that does not answer. This module never decides anything.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp

from chargebrain.core.model import PLAUSIBLE_LIMIT, EvseCommand, EvseReading, EvseState
from chargebrain.core.phases import Phases
from chargebrain.devices.errors import DeviceError

DEFAULT_PORT = 4712
MAX_ANSWER = 64 * 1024
_STATES = {1: EvseState.WAITING, 2: EvseState.EV_PRESENT, 3: EvseState.CHARGING}


def base_url(address: str) -> str:
    """`http://host:port` of the slave's HTTP API from `IP:port`, `host` or a URL."""
    text = address.strip().rstrip("/")
    if not text:
        raise DeviceError("address is required (IP:port of the slave's HTTP API)")
    if re.match(r"(?i)https?://", text):
        return text  # (an IPv6 address is given this way: http://[fd00::5]:4712)
    host, sep, port = text.rpartition(":")
    if not sep:
        return f"http://{text}:{DEFAULT_PORT}"
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise DeviceError(f"{address!r} is not IP:port")
    return f"http://{host}:{port}"


def _number(doc: dict[str, Any], key: str) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            abs(value) <= PLAUSIBLE_LIMIT):  # also NaN
        raise DeviceError(f"the slave's answer has no number {key!r}")
    return float(value)


def _currents(doc: dict[str, Any], key: str) -> Phases:
    value = doc.get(key)
    if (not isinstance(value, list) or len(value) != 3 or not all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= PLAUSIBLE_LIMIT
            for c in value)):
        raise DeviceError(f"the slave's answer has no currents {key!r}")
    return Phases(value[0], value[1], value[2])


@dataclass(frozen=True, slots=True)
class SlaveReading(EvseReading):
    """A slave's state as one EVSE: `currents` what its EVSEs draw or were given,
    whichever is higher, `max_current_ma` its wiring limit (the most its EVSEs can take
    together), `demand_ma` what they would take now on their busiest phase if the master
    gave them all of it."""

    demand_ma: int = 0
    limit_ma: int | None = None  # the master's limit the slave shows in force, if any


def reading_of(doc: Any) -> SlaveReading:
    """The slave's state as one EVSE; DeviceError if it cannot be controlled."""
    if not isinstance(doc, dict):
        raise DeviceError("the slave's answer is not a JSON object")
    if doc.get("enabled") is not True:
        raise DeviceError("the slave takes no limit from a master (set cm_master_enabled "
                          "on it)")
    if doc.get("lb_enabled") is not True:
        raise DeviceError("load management is off on the slave (observe mode)")
    # What its EVSEs draw or were given, whichever is higher: a slave reports a cycle of its
    # own late, so a grid meter may already show a car's new current that the report does
    # not, and that current would count as the rest of the house (held for seconds, and a
    # pause). The slave decides before its cars can draw, so what it gave leads.
    currents = _currents(doc, "current").max(_currents(doc, "allocated"))
    state = _STATES.get(int(_number(doc, "state")), EvseState.ERROR)
    limit = doc.get("limit")
    return SlaveReading(
        state=state,
        currents=currents,
        power_w=_number(doc, "power_w"),
        has_meter=True,
        max_current_ma=max(0, round(_number(doc, "max_current"))),
        model=str(doc.get("model", "Charging Manager"))[:100],
        energy_known=False,
        demand_ma=_currents(doc, "demand").peak(),
        limit_ma=round(_number(doc, "limit")) if doc.get("from_master") is True and (
            limit is not None) else None,
    )


class CmSlaveEvse:
    """Another charging manager at `address`, controlled as one EVSE."""

    def __init__(self, address: str, password: str = "", timeout: float = 2.0) -> None:
        self.base = base_url(address) + "/cnf?cmd="
        token = base64.b64encode(f"admin:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"} if password else {}
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._written: int | None = None  # the limit last written and confirmed (mA)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout), headers=self._headers)
        return self._session

    async def _get(self, query: str) -> Any:
        url = self.base + query
        try:
            async with (asyncio.timeout(self._timeout),
                        self._http().get(url, allow_redirects=False) as response):
                body = await response.content.read(MAX_ANSWER + 1)
                status = response.status
        except TimeoutError:
            raise DeviceError(f"{url}: no answer within {self._timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise DeviceError(f"{url}: {exc or type(exc).__name__}") from None
        if len(body) > MAX_ANSWER:
            raise DeviceError(f"{url}: answer larger than {MAX_ANSWER} bytes")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if status != 200:
            error = doc.get("error") if isinstance(doc, dict) else None
            raise DeviceError(f"{url}: HTTP status {status}" + (f": {error}" if error else ""))
        return doc

    async def read(self) -> EvseReading:
        reading = reading_of(await self._get("get_cm_slave"))
        written = self._written
        if written is not None and reading.limit_ma != written:
            # It lost the limit written last (a restart, or it expired): write it again.
            reading = reading_of(await self._get(f"set_cm_slave&cur={written}"))
        return reading

    async def apply(self, command: EvseCommand) -> None:
        current = max(0, command.current_ma) if command.enabled else 0
        self._written = None  # unknown until the slave has confirmed it
        reading_of(await self._get(f"set_cm_slave&cur={current}"))
        self._written = current

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
