"""The site's surplus (or solar power) shared among the EVSEs that charge from it.

The rules of every EVSE see the site's surplus. Left alone, each surplus rule would ask
for all of it, so two cars in surplus mode would together ask for twice the surplus and
draw the rest from the grid. `share_pool` shares it the way the balancer shares current:
minimums first, in a stable order (cars charging from the surplus now keep their place,
then higher priority, then the order given), and a car not charging yet needs its
minimum plus a margin to start (the hysteresis that keeps a car at the edge from
starting and stopping). What is left after the minimums is spread so that every admitted
car gets the same current per phase, up to its maximum. A car that does not fit is given
nothing: its rule sees no surplus (its undercut time still holds it for a while, which
is what an undercut is for).

This module must never read meters, clocks or devices: watts and currents come in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chargebrain.core.rules.energy import NOMINAL_VOLTAGE

#: A car not charging from the surplus starts only when its minimum plus this much per
#: phase is there (the balancer's start margin for waiting cars).
START_MARGIN_MA = 500


@dataclass(frozen=True, slots=True)
class PoolClaim:
    """One EVSE whose rules charge from the surplus (or solar power)."""

    dev_id: str
    phases: int  # the phases it is predicted to charge on (1..3)
    min_ma: int
    max_ma: int  # its own maximum now (0 = no maximum known: the pool is its only limit)
    charging: bool  # it is given current now
    priority: int = 1  # higher first


def share_pool(claims: Sequence[PoolClaim], pool_w: float,
               voltage: float = NOMINAL_VOLTAGE,
               start_margin_ma: int = START_MARGIN_MA) -> dict[str, float]:
    """Per claim the watts of `pool_w` it may use (the sum never exceeds the pool).

    With one claim, or no positive pool, everyone sees the whole pool (unchanged)."""
    if len(claims) < 2 or not pool_w > 0:
        return {c.dev_id: pool_w for c in claims}
    order = sorted(range(len(claims)),
                   key=lambda i: (not claims[i].charging, -claims[i].priority, i))
    left = pool_w
    admitted: list[PoolClaim] = []
    for i in order:
        c = claims[i]
        need_ma = max(c.min_ma, 0) + (0 if c.charging else start_margin_ma)
        need_w = need_ma * _ph(c) * voltage / 1000.0
        if need_w <= left:
            admitted.append(c)
            left -= c.min_ma * _ph(c) * voltage / 1000.0
    shares = dict.fromkeys((c.dev_id for c in claims), 0.0)
    level = dict.fromkeys((c.dev_id for c in admitted), 0.0)  # mA per phase above minimum
    for c in admitted:
        shares[c.dev_id] = c.min_ma * _ph(c) * voltage / 1000.0
    # Water-fill what is left: the same current per phase for all, each up to its maximum.
    open_ = [c for c in admitted if c.max_ma <= 0 or c.max_ma > c.min_ma]
    while left > 1e-9 and open_:
        per_ma = left * 1000.0 / (voltage * sum(_ph(c) for c in open_))
        step = per_ma
        for c in open_:
            if c.max_ma > 0:
                step = min(step, c.max_ma - c.min_ma - level[c.dev_id])
        for c in open_:
            level[c.dev_id] += step
            add = step * _ph(c) * voltage / 1000.0
            shares[c.dev_id] += add
            left -= add
        open_ = [c for c in open_
                 if c.max_ma <= 0 or level[c.dev_id] < c.max_ma - c.min_ma - 1e-9]
        if step >= per_ma:
            break
    return shares


def _ph(c: PoolClaim) -> int:
    return min(max(c.phases, 1), 3)
