"""Stage 1 of the allocation: ranking the competing cars and admitting their minimums.

`admit` reserves minimum currents in ranking order (each car's key is set when the
candidates are sorted out, allocate.sort_out) under every limit and the phase imbalance,
and says why each car it leaves out is paused. Pure: works on the cycle's Work.
"""

from __future__ import annotations

import math
from operator import attrgetter, itemgetter

from chargebrain.core.balancer.data import Limit, PauseReason
from chargebrain.core.balancer.plans import SLACK
from chargebrain.core.balancer.work import (
    BY_FROZEN,
    BY_IMBALANCE,
    BY_TIMER,
    FITS,
    Slot,
    Work,
)

#: Sort keys: the ranking key then the id (which orders every tie), and the tier.
RANK = attrgetter("rank")
TIER = attrgetter("tier")
_SECOND = itemgetter(1)


def measure_first(s: Slot) -> None:
    """A car whose phases are not known yet, kept from starting by the imbalance it would
    cause if it were single-phase: it starts at its minimum, counted as balanced, so that
    its meter shows which phases it uses (else it would never be measured)."""
    s.hmask = s.lmask = 0
    s.want = s.max_want = s.min
    s.cap_kind = s.max_kind = Limit.IMBALANCE


def admit(w: Work, cands: list[Slot], blocked: dict[int, tuple[float, ...]],
          refused: list[Slot], ranked: list[str] | None = None,
          once_more: bool = False) -> list[Slot]:
    """Stage 1: reserve minimum currents in ranking order; returns the admitted slots.

    Every car's ranking key (`Slot.rank`) is set already (allocate.sort_out). `blocked`: phases
    (as the imbalance check counts them) of cars refused for the imbalance, with the tier
    of the first: a lower priority on the same phases waits behind them (kept across
    tiers). `refused`: gets every car refused for the imbalance (to be tried once more
    at the end). `ranked`: gets the cars' ids in ranking order (the next cycle's hint).
    `once_more`: the cars were refused for the imbalance before and are tried once more,
    their pause undone if they fit now (they may be of several tiers)."""
    cands.sort(key=RANK)
    if once_more:
        cands.sort(key=TIER)  # stable: by (tier, order, id)
    elif ranked is not None:
        ranked.extend(map(_SECOND, map(RANK, cands)))
    now, margin = w.now, w.tun.restart_margin_ma
    imb_margin = w.tun.imbalance_margin_ma
    admitted: list[Slot] = []
    rotated_tiers: set[tuple[float, ...]] = set()
    retry: list[Slot] = []

    cap, load = w.cap, w.load
    imbalance_ok = w.imbalance_ok

    soft = w.soft
    cap_only = [0] * len(soft)
    # What a charging car may keep its minimum within, per constraint (the capacities do
    # not move while a tier is admitted; only the loads do).
    cap_soft = [c + k for c, k in zip(cap, soft, strict=True)]

    def check(s: Slot) -> int:
        if s.incumbent:
            need = s.min
            # A car that is charging may keep its minimum within the house's part of the
            # overdraft penalty (overdraft.py).
            kept = soft if s.mem.last_set > 0 else cap_only
            for c in s.cons:  # FITS or the first constraint it breaks
                if load[c] + need > cap[c] + kept[c]:
                    return c
        else:
            need = s.min + margin
            for c in s.cons:
                if load[c] + need > cap[c]:
                    return c
            if (s.hmask or s.lmask) and not imbalance_ok(s, s.min + imb_margin):
                if not s.unsure_phases:
                    return BY_IMBALANCE
                measure_first(s)
        if (s.hmask or s.lmask) and not imbalance_ok(s, need):
            if not s.unsure_phases:
                return BY_IMBALANCE
            measure_first(s)
        if s.frozen >= 0 and not (s.incumbent and s.mem.last_set >= s.min):
            return BY_FROZEN
        return FITS

    count = w.count

    def take(s: Slot) -> None:
        s.admitted = True  # (its `fail` is no longer read)
        amount = s.min
        for c in s.cons:  # w.reserve(s, amount)
            load[c] += amount
        if s.hmask or s.lmask:
            count(s, amount, True)
        admitted.append(s)
        if not s.incumbent and not s.probing:
            rotated_tiers.add(s.tier)

    def waits(s: Slot) -> bool:
        """A higher priority on the same phases was refused for the imbalance."""
        first = blocked.get(s.hmask)
        return first is not None and first < s.tier

    def pause(s: Slot) -> None:
        """Why a car left out is paused (its `fail` is set)."""
        s.paused = True
        fail = s.fail
        if fail == BY_TIMER:
            s.pause_reason = s.mem.pause_reason or PauseReason.SHORTAGE
            s.reason = _timer(math.ceil(s.mem.pause_until - now))
        elif fail == BY_FROZEN:
            s.pause_reason = s.mem.pause_reason or PauseReason.SHORTAGE
            s.data_pause = s.mem.data_pause  # still waiting for the readings it stopped for
            s.reason = f"waiting for a fresh meter reading ({w.tree.labels[s.frozen]})"
        elif fail == BY_IMBALANCE:
            s.pause_reason = PauseReason.IMBALANCE
            s.reason = "phase imbalance"
        elif s.incumbent and s.rank[0][0] == 1.0 and s.tier in rotated_tiers:
            s.pause_reason = PauseReason.ROTATION
            s.reason = "round robin"
        elif s.plan == SLACK and fail >= 0 and not s.data_pause:
            s.pause_reason = PauseReason.ROTATION if s.incumbent else PauseReason.SHORTAGE
            s.reason = f"departure plan leaves time ({w.label_of(fail)})"
        else:
            s.pause_reason = PauseReason.SHORTAGE
            held = bool(s.data_pause or (not s.incumbent and s.mem.data_pause))
            s.reason = _shortage(w.label_of(fail), held)

    if once_more:
        progress = True
        while progress:  # one admitted may balance the next
            progress = False
            still: dict[int, tuple[float, ...]] = {}  # as `blocked`, for this sweep
            for s in cands:
                if s.admitted:
                    continue
                first = still.get(s.hmask)
                if ((first is None or first >= s.tier)
                        and (s.incumbent or now >= s.mem.pause_until) and check(s) == FITS):
                    s.paused, s.pause_reason, s.reason = False, PauseReason.NONE, ""
                    take(s)
                    progress = True
                else:
                    still.setdefault(s.hmask, s.tier)
        # A car still left out keeps the pause its tier gave it (for the imbalance).
        return admitted
    # Cars whose pause reason depends on whether this tier rotated (known at the end).
    rotating: list[Slot] = []
    shortages: dict[int, str] = {}  # 2 * constraint + held -> the reason (see pause)
    # The loop spells out check and pause's most common case: it runs for every
    # competing car.
    for s in cands:
        incumbent, mem = s.incumbent, s.mem
        c = FITS
        if blocked:
            first = blocked.get(s.hmask)
            if first is not None and first < s.tier:
                c = BY_IMBALANCE
        if c == FITS:
            need = s.min
            if incumbent:
                kept = cap_soft if mem.last_set > 0 else cap
                for x in s.cons:
                    if load[x] + need > kept[x]:
                        c = x
                        break
            else:
                need += margin
                for x in s.cons:
                    if load[x] + need > cap[x]:
                        c = x
                        break
                if c == FITS and (s.hmask or s.lmask) and not imbalance_ok(
                        s, s.min + imb_margin):
                    if s.unsure_phases:
                        measure_first(s)
                    else:
                        c = BY_IMBALANCE
            if c == FITS:
                if (s.hmask or s.lmask) and not imbalance_ok(s, need):
                    if s.unsure_phases:
                        measure_first(s)
                    else:
                        c = BY_IMBALANCE
                if c == FITS and s.frozen >= 0 and not (incumbent and mem.last_set >= s.min):
                    c = BY_FROZEN
        if not incumbent and now < mem.pause_until:
            # Final: only cars refused for the imbalance are tried again below.
            if c == FITS:
                s.fail = BY_TIMER
            else:
                s.fail = c
                if c == BY_IMBALANCE:
                    refused.append(s)
            pause(s)
        elif c == FITS:
            take(s)
        else:
            s.fail = c
            if c == BY_IMBALANCE:
                retry.append(s)
                refused.append(s)
                blocked.setdefault(s.hmask, s.tier)
                continue
            if c >= 0 and incumbent:
                # Only loads assumed for missing readings leave it no room: it stops, and
                # starts again as a charging car when the readings are back.
                s.data_pause = w.assumed_only(s.cons, s.min)
            if c == BY_FROZEN or s.plan == SLACK:
                pause(s)
            elif incumbent and s.rank[0][0] == 1.0:
                rotating.append(s)
            else:  # pause(s), short of a limit
                s.paused = True
                s.pause_reason = PauseReason.SHORTAGE
                key = 2 * c + bool(s.data_pause or (not incumbent and mem.data_pause))
                got = shortages.get(key)
                if got is None:
                    got = shortages[key] = _shortage(w.label_of(c), key & 1 == 1)
                s.reason = got
    if retry:
        # Imbalance is not monotone: a car refused for it may fit once others balance it.
        progress = True
        while progress:
            progress = False
            for r in retry:
                if not r.admitted and not waits(r) and check(r) == FITS:
                    take(r)
                    progress = True
        for r in retry:
            if not r.admitted:
                pause(r)
    for s in rotating:
        pause(s)
    return admitted


_shortages: dict[tuple[str, bool], str] = {}


def _shortage(label: str, held: bool) -> str:
    """The reason of a car refused on the limit `label` (`held`: only loads assumed for
    missing readings refuse it), one string object between cycles: most refusals repeat,
    and finish's decision memo then hashes it once."""
    key = (label, held)
    got = _shortages.get(key)
    if got is None:
        if len(_shortages) >= 1024:
            _shortages.clear()
        missing = ", readings missing" if held else ""
        got = _shortages[key] = f"minimum current not available ({label}{missing})"
    return got


_timers: dict[int, str] = {}


def _timer(left: int) -> str:
    """The reason of a car whose pause timer has `left` seconds to run, one string object
    between cycles (as _shortage)."""
    got = _timers.get(left)
    if got is None:
        if len(_timers) >= 1024:
            _timers.clear()
        got = _timers[left] = f"pause timer, {left} s left"
    return got
