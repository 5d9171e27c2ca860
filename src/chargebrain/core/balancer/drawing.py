"""What a car shows by drawing current or not: idle cars, probes and learnt start currents.

Per EVSE and cycle, `observe` turns the previous `DrawMemory`, what the car draws now and
what it was offered into the new `DrawMemory`; the policy (allocate.py) acts on it:

* A car offered current that draws nothing for `idle_after_s` is *idle* (done, asleep, or
  it needs more than it is offered to start). Idle cars are served after the cars that
  draw or wait, from what those leave.
* An idle car is *probed*: offered a higher minimum (`start_step_ma` above the one it
  ignored) for `probe_s`, at once when it turns idle, then after `probe_every_s`, doubling
  after each failure up to `probe_max_every_s`; every failed probe offers one step more,
  up to what the car may take.
* A car that starts during a probe has shown the current it needs: that becomes its
  minimum (`start_min`) until it is unplugged.

Pure: no I/O, no clock reads; the memory is immutable and returned unchanged (the same
object) when nothing changed.
"""

from __future__ import annotations

from dataclasses import replace

from chargebrain.core.balancer.data import NO_DRAW, DrawMemory, Tuning


def observe(
    d: DrawMemory, draw: int, offered: int, minimum: int, top: int, now: float, tun: Tuning
) -> DrawMemory:
    """The draw memory after this cycle's reading.

    `draw`: what the car draws now (highest phase, mA); `offered`: the current decided for
    it last cycle (0 = none); `minimum`: its configured minimum; `top`: the most it may be
    offered now (EVSE maximum, rule or override wish).
    """
    if draw >= tun.idle_threshold_ma:
        return _drawing(d)
    quiet_since = None
    if offered > 0:
        quiet_since = d.quiet_since if d.quiet_since is not None else now
    idle, probe_ma, probe_at, probe_until, gap, failed = (
        d.idle,
        d.probe_ma,
        d.probe_at,
        d.probe_until,
        d.probe_gap,
        d.failed,
    )
    if not idle and quiet_since is not None and now - quiet_since >= tun.idle_after_s:
        # Nothing drawn at its minimum: done, asleep, or it needs more to start. The first
        # probe, one step higher, follows at once.
        floor = max(minimum, d.start_min)
        idle, probe_at, gap, failed = True, now, tun.probe_every_s, 0
        probe_ma = min(max(probe_ma, floor + tun.start_step_ma), max(top, minimum))
    elif idle and probe_until is not None and now >= probe_until:
        # Still nothing: the next probe offers one step more, and comes later.
        probe_until = None
        probe_ma = min(probe_ma + tun.start_step_ma, max(top, minimum))
        probe_at = now + gap
        gap = min(2 * gap, tun.probe_max_every_s)
        failed += 1
    if (
        quiet_since == d.quiet_since
        and idle == d.idle
        and probe_ma == d.probe_ma
        and probe_at == d.probe_at
        and probe_until == d.probe_until
        and gap == d.probe_gap
        and failed == d.failed
    ):
        return d
    return DrawMemory(
        quiet_since, idle, d.start_min, probe_ma, probe_at, probe_until, gap, failed
    )


def _drawing(d: DrawMemory) -> DrawMemory:
    """The car draws: it is not idle; if it started during a probe, the probe's current
    is its minimum from now on."""
    start_min = d.start_min
    if d.probe_until is not None:
        start_min = max(start_min, d.probe_ma)
    if start_min == 0:
        return NO_DRAW
    if d == DrawMemory(start_min=start_min):
        return d
    return DrawMemory(start_min=start_min)


def probing(d: DrawMemory, now: float) -> bool:
    """An idle car whose probe runs, or is due (it then competes like a waiting car)."""
    return d.idle and (d.probe_until is not None or now >= d.probe_at)


def floor_of(d: DrawMemory, minimum: int, maximum: int) -> int:
    """The car's minimum: the configured one, or the start current it has shown (never
    above the EVSE's maximum)."""
    if d.start_min <= minimum:
        return minimum
    return max(minimum, min(d.start_min, maximum))


def not_offered(d: DrawMemory) -> DrawMemory:
    """The memory of a car that is offered nothing this cycle for other reasons (rule,
    override, disabled): no quiet spell, no running probe; the rest is kept."""
    if d.quiet_since is None and d.probe_until is None:
        return d
    return replace(d, quiet_since=None, probe_until=None)
