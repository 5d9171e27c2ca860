"""The charging manager's SunSpec Modbus server: its two units and their writes.

`SunSpecServer.respond` answers a Modbus request for the unit id (the site chain),
unit id + 1 (the devices) and the TCP conventions 0 and 255 (as the unit id); any other
unit gets exception 0B. Requests are served by `modbus_pdu.serve` (function codes 3, 6
and 16, as the controller) from a chain built per control cycle; the TCP side is
servers/modbus_tcp.py.

Writes go to the writable points of models 60000–60002 only (elsewhere: exception 02).
A write is checked whole before anything changes (a value out of range, not a number,
or not 0/1 where a flag is meant: exception 03, nothing changed), then applied as the
HTTP API would: the limits through the site settings (persisted, except the share of
the total current), the flags and variables as CM variables set until restart
(`set_cm_vars&tmp=1`). A point written with the value it reads changes nothing, so a
client may write a whole model back (a formula limit stays a formula).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from chargebrain.manager.cm_vars import CmVarError, CmVars, define
from chargebrain.manager.config import ConfigError
from chargebrain.manager.runtime import ChargingManager
from chargebrain.powerbrain.bank import ExceptionCode, RegisterError
from chargebrain.servers.modbus_pdu import GATEWAY_TARGET_FAILED, exception_pdu, serve
from chargebrain.servers.sunspec.chain import Chain, Writable, device_chain, site_chain
from chargebrain.servers.sunspec.layout import BASE_ADDRESS, FLAGS, LIMITS, decode_point

log = logging.getLogger("chargebrain.sunspec")

#: Model 60000's points and the site parameters they stand for.
SITE_POINTS = {
    "MaxTotCur": "max_total_current",
    "ResCur": "reserve_current",
    "MaxEvseCur": "max_total_evse_current",
    "MaxImb": "max_imbalance_cur",
    "LbEna": "lb_enabled",
    "ImbAdd": "imbalance_add",
    "TotCurPct": "max_total_cur_prc",
}
_BOOLEAN = ("LbEna", "ImbAdd")


def _refuse(what: str) -> RegisterError:
    return RegisterError(ExceptionCode.ILLEGAL_VALUE, what)


class _Unit:
    """One unit's chain as holding registers, rebuilt when the manager moved on."""

    def __init__(self, server: SunSpecServer, build: Callable[[], Chain]) -> None:
        self.server = server
        self.build = build
        self._key: tuple[int, int, int] | None = None
        self._chain = Chain()

    def chain(self) -> Chain:
        key = self.server.version()
        if key != self._key:
            self._chain = self.build()
            self._key = key
            if self._chain.left_out:
                self.server.note_left_out(self._chain.left_out)
        return self._chain

    def read_words(self, address: int, count: int) -> list[int]:
        chain = self.chain()
        start = address - BASE_ADDRESS
        if start < 0 or address + count > chain.end:
            raise RegisterError(ExceptionCode.ILLEGAL_ADDRESS,
                                f"no SunSpec register at {address}..{address + count - 1}")
        return chain.words[start:start + count]

    def write_words(self, address: int, words: Sequence[int]) -> None:
        chain = self.build()  # what a write is checked against is never old
        end = address + len(words)
        if address < BASE_ADDRESS or end > chain.end:
            raise RegisterError(ExceptionCode.ILLEGAL_ADDRESS,
                                f"no SunSpec register at {address}..{end - 1}")
        touched: list[Writable] = []
        for a in range(address, end):
            w = chain.writable.get(a)
            if w is None:
                raise RegisterError(ExceptionCode.ILLEGAL_ADDRESS,
                                    f"SunSpec register {a} is read-only")
            if not touched or touched[-1] is not w:
                touched.append(w)
        image = list(chain.words)
        for i, word in enumerate(words):
            image[address - BASE_ADDRESS + i] = word & 0xFFFF
        changes: list[tuple[Writable, float]] = []
        for w in touched:
            start = w.address - BASE_ADDRESS
            old = decode_point(w.point, chain.words[start:start + w.point.size])
            new = decode_point(w.point, image[start:start + w.point.size])
            if new == old:
                continue
            _check(w, new)
            changes.append((w, new))
        if changes:
            self.server.apply(changes)


def _check(w: Writable, value: float) -> None:
    """Refuse (exception 03) a value the point cannot take."""
    p = w.point
    if not math.isfinite(value):
        raise _refuse(f"{p.name}: {value} is not a number")
    flag = (w.model == LIMITS.id and p.name in _BOOLEAN) or w.model == FLAGS.id
    if flag and value not in (0.0, 1.0):
        raise _refuse(f"{p.name}: {value:g} is neither 0 nor 1")
    if (p.minimum is not None and value < p.minimum) or (
            p.maximum is not None and value > p.maximum):
        raise _refuse(f"{p.name}: {value:g} out of range {p.minimum:g}..{p.maximum:g}")
    if abs(value) > 1e15:
        raise _refuse(f"{p.name}: {value:g} out of range")


class SunSpecServer:
    """Answers the SunSpec units of the charging manager `mgr` (with its CM variables).
    `unit_id` gives the unit id in force (the site parameter `sunspec_id`)."""

    def __init__(self, mgr: ChargingManager, cm_vars: CmVars,
                 unit_id: Callable[[], int]) -> None:
        self.mgr = mgr
        self.cm_vars = cm_vars
        self.unit_id = unit_id
        self._writes = 0
        self._left_out_logged = 0
        self.site = _Unit(self, lambda: site_chain(mgr, cm_vars, self.unit_id()))
        self.devices = _Unit(self, lambda: device_chain(mgr, self.unit_id() + 1))

    def version(self) -> tuple[int, int, int]:
        """Changes whenever the chains may read differently: each cycle, each change of
        the site parameters, each write of ours."""
        return self.mgr.decider.cycles, id(self.mgr.site), self._writes

    def respond(self, unit: int, pdu: bytes) -> bytes:
        """The answer PDU to `pdu` addressed to `unit`."""
        site_unit = self.unit_id()
        if unit == site_unit or unit in (0, 255):
            return serve(self.site, pdu)
        if unit == site_unit + 1:
            return serve(self.devices, pdu)
        return exception_pdu(pdu[0], GATEWAY_TARGET_FAILED)

    def note_left_out(self, count: int) -> None:
        if count != self._left_out_logged:
            self._left_out_logged = count
            log.warning("SunSpec: %d published device(s) do not fit below register 65536 "
                        "and are left out", count)

    def apply(self, changes: Sequence[tuple[Writable, float]]) -> None:
        """Apply checked changes: site parameters, an overdraft reset, CM variables."""
        mgr = self.mgr
        site: dict[str, Any] = {}
        persist = False
        reset = False
        variables = []
        for w, value in changes:
            name = w.point.name
            if w.model == LIMITS.id and name == "Overdraft":
                if value != 0:
                    raise _refuse(f"Overdraft: only 0 may be written, not {value:g}")
                reset = True
            elif w.model == LIMITS.id:
                key = SITE_POINTS[name]
                site[key] = bool(value) if name in _BOOLEAN else round(value)
                persist = persist or w.point.persisted
            elif w.model == FLAGS.id:
                variables.append(define(f"_flag{name[4:]}", int(value)))
            else:
                try:
                    variables.append(define(w.key, value))
                except CmVarError as exc:
                    raise _refuse(str(exc)) from None
        try:
            if site:
                mgr.settings.set(mgr.site.with_changes(**site), persist=persist)
                log.info("SunSpec write: %s", ", ".join(f"{k} {v}" for k, v in site.items()))
            if variables:
                self.cm_vars.apply(variables, tmp=True)
                log.info("SunSpec write: %s", ", ".join(f"{v.name} {v.text}" for v in variables))
        except (ConfigError, CmVarError) as exc:
            raise _refuse(str(exc)) from None
        if reset:
            mgr.decider.reset_overdraft()
            log.info("SunSpec write: overdraft reset")
        self._writes += 1
