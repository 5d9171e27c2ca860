"""Applying a control cycle's decisions: writing the EVSE commands that changed.

A command is written when it differs from the last one written or when that one is
`REFRESH_WRITE_S` old (keeps the EVSEs' fail-safes fed). HTTP-input EVSEs get theirs at
once (their feeder collects it with the next answer); the others are written
concurrently. A car that should draw and does not is woken by a control-pilot
interruption where the EVSE allows it. A disabled EVSE under the "cancel limit" policy
is released where it can be (an OCPP charge point's profile is cleared).

The overload guard (manager.guard) lowers single EVSEs at once through `Writer.lower`,
outside the cycle's own writes; a limit it wrote while a cycle was reading stays the
EVSE's ceiling in that cycle's writes (that decision did not see the overload), and the
next cycle's decision is written as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import replace

from chargebrain.clock import Clock
from chargebrain.core.balancer import Allocation, EvseDecision, Limit
from chargebrain.core.model import EvseCommand
from chargebrain.devices.ajax import AjaxEvse
from chargebrain.devices.base import EvseReleasable
from chargebrain.devices.errors import DeviceError
from chargebrain.manager.reading import READ_TIMEOUT_S, com_error
from chargebrain.manager.state import DeviceRuntime
from chargebrain.manager.wakeup import DRAWING_MA

REFRESH_WRITE_S = 30.0  # rewrite an unchanged command this often (keeps fail-safes fed)
_COMMANDS: dict[tuple[bool, int], EvseCommand] = {}


def _command(enabled: bool, current_ma: int) -> EvseCommand:
    """The command (one shared object per value, so that comparing is cheap)."""
    key = (enabled, current_ma)
    cmd = _COMMANDS.get(key)
    if cmd is None:
        if len(_COMMANDS) > 4096:
            _COMMANDS.clear()
        cmd = _COMMANDS[key] = EvseCommand(enabled=enabled, current_ma=current_ma)
    return cmd


class Writer:
    """Writes each cycle's decisions to the EVSEs (the inventory's devices)."""

    def __init__(self, clock: Clock, devices: Mapping[str, DeviceRuntime]) -> None:
        self.clock = clock
        self.devices = devices  # the same mapping, kept current by the inventory
        # EVSE -> (limit the guard lowered it to, the first cycle whose decision saw why)
        self.caps: dict[str, tuple[int, int]] = {}
        self._lowering: set[asyncio.Future[None]] = set()  # the guard's writes under way
        self._writing: dict[str, EvseCommand] = {}  # the cycle's writes under way, by EVSE

    async def apply(self, alloc: Allocation, cycle: int = 0) -> None:
        """Write the commands of `alloc` (the decision of cycle number `cycle`) that
        changed or are due for a refresh, each within a ceiling the guard set for a later
        cycle; the ceilings meant for this one or an earlier one end here."""
        if self._lowering:
            # What the EVSEs the guard lowered hold is known again.
            await asyncio.gather(*self._lowering, return_exceptions=True)
        caps = self.caps
        if caps:
            for dev_id, (_, until) in list(caps.items()):
                if until <= cycle:
                    del caps[dev_id]
        writing = self._writing
        try:
            await _apply(alloc, self.devices, self.clock, caps, writing)
        finally:
            writing.clear()

    async def lowering(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the guard's writes under way (those that take
        longer go on)."""
        if self._lowering:
            await asyncio.wait(set(self._lowering), timeout=timeout)

    def holding_ma(self, rt: DeviceRuntime) -> int | None:
        """The charging limit an EVSE holds, is being written by the cycle, or is being
        given by the guard (None: none known, or charging is off)."""
        ev = rt.evse
        cmd = self._writing.get(rt.dev_id) or (ev.last_command if ev is not None else None)
        if cmd is None or not cmd.enabled:
            return None
        cap = self.caps.get(rt.dev_id)
        return cmd.current_ma if cap is None else min(cap[0], cmd.current_ma)

    def lower(self, rt: DeviceRuntime, current_ma: int, until: int) -> None:
        """Write at once a lower charging limit to one EVSE (the overload guard), the
        ceiling of every cycle's writes before cycle number `until`."""
        ev = rt.evse
        driver = rt.driver
        assert ev is not None and driver is not None
        held = self.caps.get(rt.dev_id)
        if held is not None:
            self.caps[rt.dev_id] = (min(held[0], current_ma), max(held[1], until))
            if held[0] <= current_ma:
                return  # that much or less is being written already
        else:
            self.caps[rt.dev_id] = (current_ma, until)
        cmd = _command(True, current_ma)
        if ev.phase_request:
            cmd = replace(cmd, phases=ev.phase_request)  # as `_apply` writes it
        mono = self.clock.monotonic()
        if isinstance(driver, AjaxEvse):
            _write_now(rt, driver, cmd, mono)
            return
        task = asyncio.ensure_future(_write(rt, cmd, mono, self.clock))
        self._lowering.add(task)
        task.add_done_callback(self._lowering.discard)


async def _apply(alloc: Allocation, devices: Mapping[str, DeviceRuntime], clock: Clock,
                 caps: Mapping[str, tuple[int, int]], writing: dict[str, EvseCommand]) -> None:
    mono = clock.monotonic()
    writes: list[Awaitable[None]] = []
    commands = _COMMANDS
    for d in alloc.evses:
        rt = devices.get(d.id)
        if rt is None or rt.evse is None or rt.driver is None:
            continue
        ev = rt.evse
        if not d.write or not d.controlled:
            if d.write and d.lreason is Limit.DISABLED and isinstance(rt.driver, EvseReleasable):
                rt.driver.release()  # "cancel limit": no limit of ours until enabled again
                ev.last_command = None  # then the first decision is written at once
            continue
        enabled = d.charging_enabled
        current = d.current_ma if enabled else 0
        if caps and d.id in caps and current > caps[d.id][0]:
            current = caps[d.id][0]  # the guard's lower limit, for an older decision
        cmd = commands.get((current > 0, current)) or _command(current > 0, current)
        if ev.phase_request:
            cmd = replace(cmd, phases=ev.phase_request)  # (manager/phase_auto.py)
        if rt.config.enable_wakeup:
            if not ev.plugged:
                ev.wakeup.reset()  # what `_wake_due` comes to without a car
            elif _wake_due(rt, d, mono):
                cmd = replace(cmd, wake=True)
        due = ev.last_write is None or mono - ev.last_write >= REFRESH_WRITE_S
        if (cmd is not ev.last_command and cmd != ev.last_command) or due:
            if isinstance(rt.driver, AjaxEvse):
                _write_now(rt, rt.driver, cmd, mono)
            else:
                writes.append(_write(rt, cmd, mono, clock))
                writing[d.id] = cmd  # (what the guard must not raise while it goes out)
    if writes:
        await asyncio.gather(*writes)


def _wake_due(rt: DeviceRuntime, d: EvseDecision, mono: float) -> bool:
    """Whether this EVSE's car should get a control-pilot interruption now."""
    ev = rt.evse
    assert ev is not None
    r = ev.reading
    drawing = r is not None and (r.currents.peak() >= DRAWING_MA if r.has_meter
                                 else r.state.charging)
    offer = d.current_ma if d.charging_enabled else 0
    offered = offer > 0 and offer >= rt.config.min_charging_cur
    return ev.wakeup.update(mono, plugged=ev.plugged, offered=offered, drawing=drawing,
                            offer_ma=offer)


def _write_now(rt: DeviceRuntime, driver: AjaxEvse, cmd: EvseCommand, mono: float) -> None:
    """Hand a command to an HTTP-input EVSE (its feeder gets it with the next answer)."""
    ev = rt.evse
    assert ev is not None
    driver.set_command(cmd)
    ev.last_command = replace(cmd, wake=False) if cmd.wake else cmd
    ev.last_write = mono
    ev.last_set_ma = cmd.current_ma


async def _write(rt: DeviceRuntime, cmd: EvseCommand, mono: float, clock: Clock) -> None:
    """Write a command to an EVSE over I/O (`mono`: when the cycle decided to)."""
    ev = rt.evse
    driver = rt.driver
    assert ev is not None and driver is not None
    try:
        await asyncio.wait_for(driver.apply(cmd), timeout=READ_TIMEOUT_S)  # type: ignore[union-attr]
    except (DeviceError, TimeoutError, OSError) as exc:
        com_error(rt, f"write failed: {exc}", clock.monotonic())
        return
    ev.last_command = replace(cmd, wake=False) if cmd.wake else cmd
    ev.last_write = mono
    ev.last_set_ma = cmd.current_ma
