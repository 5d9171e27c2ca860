"""The site's structure as the allocation sees it: the group tree and the EVSE order.

Both depend only on the configuration, which rarely changes between cycles, so they are
memoised: keyed on the immutable `groups` tuple and on the tuple of EVSE ids. The memos
are bounded and hold only values computed from those keys (a pure function's results),
so a call with the same configuration gets the same answer as a fresh computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from chargebrain.core.balancer.data import EvseInput, GroupConfig

_MEMO_SIZE = 16  # configurations remembered (a site has one; tests have many)


@dataclass(frozen=True, slots=True)
class Tree:
    """Nodes: 0 = site, then the groups by id. Paths run from the site down to the node."""

    configs: tuple[GroupConfig | None, ...]  # node index -> group (None for the site)
    group_ids: tuple[int, ...]  # node index -> group id (0 for the site)
    labels: tuple[str, ...]
    parent: tuple[int, ...]  # parent node index (-1 for the site)
    path: tuple[tuple[int, ...], ...]  # node indexes from the site to the node, inclusive
    prio: tuple[tuple[int, ...], ...]  # group priorities along the path (site excluded)
    index: dict[int, int]  # group id -> node index
    depth: int  # longest prio path
    bottom_up: tuple[int, ...]  # node indexes, children before parents


def build_tree(groups: tuple[GroupConfig, ...]) -> Tree:
    """Index the groups; unknown parents and cycles attach to the site (deterministically)."""
    gs = sorted((g for g in groups if g.id != 0), key=lambda g: g.id)
    index = {0: 0}
    for g in gs:
        if g.id in index:
            raise ValueError(f"duplicate group id {g.id}")
        index[g.id] = len(index)
    by_node: list[GroupConfig | None] = [None, *gs]
    n = len(index)
    parent = [-1] * n
    for i, g in enumerate(gs, start=1):
        parent[i] = index.get(g.parent, 0)
    # Break cycles: walking up from a node must reach the site; if it does not, that node
    # hangs on the site instead (nodes are repaired in id order, so this is deterministic).
    for i in range(1, n):
        steps, j = 0, i
        while j > 0 and steps <= n:
            j, steps = parent[j], steps + 1
        if j != 0:
            parent[i] = 0
    paths: list[tuple[int, ...]] = [()] * n
    prios: list[tuple[int, ...]] = [()] * n
    paths[0] = (0,)
    for i in range(1, n):
        chain, j = [], i
        while not paths[j]:
            chain.append(j)
            j = parent[j]
        for k in reversed(chain):
            gk = by_node[k]
            assert gk is not None
            paths[k] = (*paths[parent[k]], k)
            prios[k] = (*prios[parent[k]], gk.priority)
    order = sorted(range(n), key=lambda i: -len(paths[i]))
    labels = ["site"] + [g.label if g else "" for g in by_node[1:]]
    ids = [0] + [g.id if g else 0 for g in by_node[1:]]
    return Tree(
        configs=tuple(by_node),
        group_ids=tuple(ids),
        labels=tuple(labels),
        parent=tuple(parent),
        path=tuple(paths),
        prio=tuple(prios),
        index=index,
        depth=max((len(p) for p in prios), default=0),
        bottom_up=tuple(order),
    )



_trees: dict[tuple[GroupConfig, ...], Tree] = {}
_last_tree: list[tuple[tuple[GroupConfig, ...], Tree]] = []


def tree_of(groups: tuple[GroupConfig, ...]) -> Tree:
    """`build_tree(groups)`, memoised. The same tuple object as last time is found without
    hashing; the memo keeps its keys alive, so an identity cannot be reused stale."""
    if _last_tree and _last_tree[0][0] is groups:
        return _last_tree[0][1]
    tree = _trees.get(groups)
    if tree is None:
        tree = build_tree(groups)
        if len(_trees) >= _MEMO_SIZE:
            _trees.clear()
        _trees[groups] = tree
    _last_tree[:] = [(groups, tree)]
    return tree


_orders: dict[tuple[str, ...], tuple[int, ...]] = {}


def id_order(evses: tuple[EvseInput, ...]) -> tuple[int, ...]:
    """Input positions of the EVSEs sorted by id (memoised on the ids); raises ValueError
    on a duplicate id."""
    ids = tuple([e.id for e in evses])
    order = _orders.get(ids)
    if order is None:
        order = tuple(sorted(range(len(ids)), key=ids.__getitem__))
        if len(set(ids)) != len(ids):
            dup = next(a for a, b in pairwise(ids[i] for i in order) if a == b)
            raise ValueError(f"duplicate EVSE id {dup!r}")
        if len(_orders) >= _MEMO_SIZE:
            _orders.clear()
        _orders[ids] = order
    return order
