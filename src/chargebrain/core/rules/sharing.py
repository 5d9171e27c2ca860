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

Groups (sub-distributions with a fuse of their own, perhaps their own PV and meter) are
honoured like current: a claim names the nodes above it, `caps` says how much current per
building phase may still reach the claims under a node (its limit less what else it
carries), so no claim is given surplus its group cannot let through, and what it cannot
take passes to the others. `local_w` is the surplus measured behind a group's own meter:
it goes first to the claims in that group (deepest groups first), within the pool; the
rest of the pool is then shared among all claims as above.

This module must never read meters, clocks or devices: watts and currents come in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    nodes: tuple[int, ...] = ()  # the nodes above it, its own group first (0 = the site)
    mask: int = 0  # building phases it loads (0 = unknown: all three count against caps)


def share_pool(claims: Sequence[PoolClaim], pool_w: float,
               voltage: float = NOMINAL_VOLTAGE,
               start_margin_ma: int = START_MARGIN_MA,
               caps: Mapping[int, Sequence[float]] | None = None,
               local_w: Mapping[int, float] | None = None) -> dict[str, float]:
    """Per claim the watts of `pool_w` it may use (the sum never exceeds the pool).

    `caps`: per node, the current (mA per building phase L1..L3) that may still reach
    the claims under it; `local_w`: per group, the surplus measured behind its own meter.
    With one claim, or no positive pool, everyone sees the whole pool (unchanged)."""
    if len(claims) < 2 or not pool_w > 0:
        return {c.dev_id: pool_w for c in claims}
    order = sorted(range(len(claims)),
                   key=lambda i: (not claims[i].charging, -claims[i].priority, i))
    fill = _Fill(claims, voltage, start_margin_ma, caps or {})
    left = pool_w
    depth: dict[int, int] = {}
    for c in claims:
        for k, n in enumerate(c.nodes):
            depth[n] = max(depth.get(n, 0), len(c.nodes) - k)
    locals_ = [n for n, w in (local_w or {}).items() if n and w > 0 and n in depth]
    for node in sorted(locals_, key=lambda n: (-depth[n], n)):
        scope = [i for i in order if node in claims[i].nodes]
        given = sum(fill.shares[claims[i].dev_id] for i in scope)
        assert local_w is not None
        left -= fill.run(scope, min(left, max(0.0, local_w[node] - given)))
    fill.run(order, left)
    return fill.shares


class _Fill:
    """Admission and water filling over passes that share one state (shares, caps)."""

    def __init__(self, claims: Sequence[PoolClaim], voltage: float, margin_ma: int,
                 caps: Mapping[int, Sequence[float]]) -> None:
        self.claims = claims
        self.v = voltage / 1000.0
        self.margin = margin_ma
        self.room = {n: [float(x) for x in v[:3]] for n, v in caps.items()}
        self.admitted: set[int] = set()
        self.level = [0.0] * len(claims)  # mA per phase above its minimum
        self.shares = dict.fromkeys((c.dev_id for c in claims), 0.0)

    def _uses(self, i: int) -> list[tuple[list[float], int]]:
        """(room of a node, phase index) for every capped node and phase claim i loads."""
        c = self.claims[i]
        mask = c.mask & 7 or 7
        return [(self.room[n], p) for n in c.nodes if n in self.room
                for p in range(3) if mask >> p & 1]

    def _own(self, i: int) -> float:
        c = self.claims[i]
        return float("inf") if c.max_ma <= 0 else c.max_ma - c.min_ma - self.level[i]

    def _open(self, i: int) -> bool:
        return self._own(i) > 1e-9 and all(r[p] > 1e-9 for r, p in self._uses(i))

    def run(self, scope: Sequence[int], budget: float) -> float:
        """Admit and fill the claims of `scope` from `budget` watts; the watts given."""
        left = budget
        cars: list[int] = []
        for i in scope:
            c = self.claims[i]
            if i not in self.admitted:
                need_ma = max(c.min_ma, 0) + (0 if c.charging else self.margin)
                uses = self._uses(i)
                if need_ma * _ph(c) * self.v > left or any(r[p] < need_ma for r, p in uses):
                    continue
                self.admitted.add(i)
                base = max(c.min_ma, 0)
                self.shares[c.dev_id] += base * _ph(c) * self.v
                left -= base * _ph(c) * self.v
                for r, p in uses:
                    r[p] -= base
            cars.append(i)
        # Water-fill: the same current per phase for all, within maximums and caps.
        open_ = [i for i in cars if self._open(i)]
        while left > 1e-9 and open_:
            per_ma = left / (self.v * sum(_ph(self.claims[i]) for i in open_))
            step = min([per_ma] + [self._own(i) for i in open_])
            users: dict[tuple[int, int], int] = {}
            rooms: dict[tuple[int, int], list[float]] = {}
            for i in open_:
                for r, p in self._uses(i):
                    users[(id(r), p)] = users.get((id(r), p), 0) + 1
                    rooms[(id(r), p)] = r
            for key, n in users.items():
                step = min(step, rooms[key][key[1]] / n)
            step = max(step, 0.0)
            for i in open_:
                c = self.claims[i]
                self.level[i] += step
                add = step * _ph(c) * self.v
                self.shares[c.dev_id] += add
                left -= add
                for r, p in self._uses(i):
                    r[p] -= step
            if step >= per_ma:
                break
            open_ = [i for i in open_ if self._open(i)]
        return budget - left


def _ph(c: PoolClaim) -> int:
    return min(max(c.phases, 1), 3)
