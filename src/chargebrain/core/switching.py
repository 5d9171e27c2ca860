"""Automatic 1/3-phase switching for surplus charging: when to ask for which contactor.

A wallbox that can switch between one and three phases with a car plugged in (a Power
Brain whose hardware configuration permits it) lets a car charge from a surplus too
small for three phases: six amperes on three phases take 4.1 kW, on one phase 1.4 kW.
`decide` says, cycle by cycle, which the EVSE should use:

* on three phases while the surplus is below what three phases need at the minimum
  current, for `down_after_s` in a row: one phase;
* on one phase while the surplus is enough for three phases at the minimum plus
  `up_margin_ma` (the hysteresis), for `up_after_s` in a row: three phases;
* not charging from surplus (no surplus rule in force): three phases, the full power;
* never sooner than `delay_s` (the site's `phase_switch_delay`) after the last switch
  this asked for, so the contactor never flaps.

The surplus is the power (W) the rules see for the EVSEs (its own draw included). Pure:
no I/O, no clock reads; the memory is immutable and returned unchanged when nothing
changed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SwitchTuning:
    """When to switch (see the module's text)."""

    up_margin_ma: int = 1000  # three phases need their minimum plus this per phase
    down_after_s: float = 60.0  # too little for three phases this long: one phase
    up_after_s: float = 120.0  # enough for three phases this long: three phases


@dataclass(frozen=True, slots=True)
class SwitchMemory:
    """What one EVSE's switching remembers between cycles."""

    since: float | None = None  # the surplus has called for the other phases since then
    last_switch: float | None = None  # when a switch was last asked for


NO_SWITCH = SwitchMemory()


def decide(
    phases: int, surplus_mode: bool, surplus_w: float, min_ma: int, voltage: float,
    now: float, delay_s: float, mem: SwitchMemory, tun: SwitchTuning = SwitchTuning(),
) -> tuple[int, SwitchMemory]:
    """The phases (1 or 3) to ask for now, and the memory to keep.

    `phases`: what the EVSE uses now (1 or 3); `surplus_mode`: a surplus rule decides its
    current; `surplus_w`: the surplus; `min_ma`: its minimum current per phase.
    """
    wanted = phases
    if not surplus_mode:
        wanted = 3
    elif phases == 3:
        if surplus_w < 3 * min_ma / 1000.0 * voltage:
            wanted = 1
    elif surplus_w >= 3 * (min_ma + tun.up_margin_ma) / 1000.0 * voltage:
        wanted = 3
    if wanted == phases:
        if mem.since is None:
            return phases, mem
        return phases, SwitchMemory(None, mem.last_switch)
    since = mem.since if mem.since is not None else now
    hold = 0.0 if not surplus_mode else (
        tun.down_after_s if wanted == 1 else tun.up_after_s)
    waited = mem.last_switch is None or now - mem.last_switch >= delay_s
    if now - since >= hold and waited:
        return wanted, SwitchMemory(None, now)
    if since == mem.since:
        return phases, mem
    return phases, SwitchMemory(since, mem.last_switch)
