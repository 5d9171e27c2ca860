"""Lending what a car does not take, and finding out whether it would take more.

A car that draws clearly less than it is offered (below its offer minus
`lend_threshold_ma`, for `lend_after_cycles` cycles) is capped at its draw plus
`lend_margin_ma`; the rest goes to the others. A capped car that follows its cap gets
`lend_margin_ma` more per cycle: lent current is taken back step by step.

That is right for a car whose draw does not depend on its offer (its own charger or
battery limits it). A car that draws a share of its offer, or a fixed amount below it,
draws less whenever it is capped, and a cap at its draw plus a margin then follows it
down to the minimum. So a car that is lent from is offered its share again now and then
(an upward probe: `lend_probe_after_s` after lending began, then after `probe_every_s`,
doubling up to `probe_max_every_s` after each probe that showed nothing; each lasts
`probe_s`). If its draw rose by at least half of what its offer rose, it follows its
offer: it is not lent from while it draws what the probe showed (less what its offer is
lower by), and is lent from again once it draws clearly less than that.

Pure: works on the cycle's Slot; no I/O, no clock reads.
"""

from __future__ import annotations

from dataclasses import replace

from chargebrain.core.balancer.data import NO_LEND, LendMemory, Limit
from chargebrain.core.balancer.work import Slot, Work

_CAR_DRAW = Limit.CAR_DRAW


def lend(w: Work, s: Slot, draw: int) -> None:
    """Cap a car that draws clearly less than offered at its draw plus a margin, unless
    it has shown that it draws more when offered more; probe it upward now and then.
    Sets `s.want`/`s.cap_kind` (the cap), `s.lend_cycles` and `s.lm` (the memory)."""
    mem, tun, now = s.mem, w.tun, w.now
    offered = mem.last_set
    lm = mem.lend
    threshold = tun.lend_threshold_ma
    following = draw >= offered - threshold
    if lm.ref_draw:
        # It follows its offer: lent from only once it draws clearly less than the probe
        # saw (less what its offer is lower by), for lend_after_cycles.
        expected = lm.ref_draw - max(0, lm.ref_offer - offered)
        if draw >= expected - threshold:
            s.lend_cycles = 0
            s.lm = lm
            return
        cycles = mem.lend_cycles if mem.raised else mem.lend_cycles + 1
        s.lend_cycles = cycles
        if cycles < tun.lend_after_cycles:
            s.lm = lm
            return
        lm = NO_LEND  # it fell on its own (done, tapering): lend from it again
    elif lm.probe_until is not None:
        if now < lm.probe_until:  # probing: offered its share
            s.lend_cycles = 0
            s.lm = lm
            return
        rise = offered - lm.offered
        if rise >= threshold and 2 * (draw - lm.before) >= rise:
            s.lend_cycles = 0
            s.lm = LendMemory(ref_offer=offered, ref_draw=draw)
            return
        if rise >= threshold:  # offered more, drew no more: try again later, less often
            gap = lm.probe_gap or tun.probe_every_s
            lm = replace(lm, probe_until=None, probe_at=now + gap,
                         probe_gap=min(2 * gap, tun.probe_max_every_s))
        else:  # the others left it no more than it had: nothing learnt
            lm = replace(lm, probe_until=None, probe_at=now + tun.probe_every_s)
        s.lm = lm
        s.lend_cycles = tun.lend_after_cycles
        _cap(s, max(s.min, draw + tun.lend_margin_ma))
        return
    if following:
        cycles = 0
    elif mem.raised:
        cycles = mem.lend_cycles  # the offer just went up: give the car a cycle to follow
    else:
        cycles = mem.lend_cycles + 1
    s.lend_cycles = cycles
    if cycles >= tun.lend_after_cycles:
        if not lm.probe_at:  # lending begins
            lm = replace(lm, probe_at=now + tun.lend_probe_after_s,
                         probe_gap=tun.probe_every_s)
        elif now >= lm.probe_at:  # an upward probe: its share, uncapped, for probe_s
            s.lm = replace(lm, probe_until=now + tun.probe_s, before=draw, offered=offered)
            return
        s.lm = lm
        _cap(s, max(s.min, draw + tun.lend_margin_ma))
        return
    s.lm = lm if mem.capped else NO_LEND
    if mem.capped:
        # Taking lent current back: one margin step per cycle, and only while it follows.
        _cap(s, max(s.min, offered + tun.lend_margin_ma if following else offered))


def _cap(s: Slot, cap: int) -> None:
    if cap < s.want:
        s.want, s.cap_kind = cap, _CAR_DRAW
