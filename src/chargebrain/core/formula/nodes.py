"""The building blocks a compiled formula is made of: closures over an evaluation context.

A `Node` is a closure and, when it folds to one, its constant value. The arithmetic here never
raises (division or modulo by zero give 0, integer operators saturate to 64 bits, powers that
overflow give an infinity the caller clamps); `binary`, `chain`, `logical`, `min_max` and
`price_fn` combine nodes and fold constants at compile time, `var_node` reads a name.
`ARITY` is every function's number of arguments. The compiler (compiler.py) walks the parse
tree and calls these; nothing here parses text.
This module must never use Python eval/exec, attribute access on user-named objects,
loops driven by formula values, or any I/O.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import NamedTuple

from chargebrain.core.formula.context import EvalContext, VarRef

# Operator chains up to this many operands become nested closures (fastest); longer chains
# run as one loop so that the call depth of evaluation stays bounded by the nesting depth.
_NEST_CHAIN = 4
_I64_MAX = 2**63 - 1
_I64_MIN = -(2**63)

Fn = Callable[[EvalContext], float]


class Node(NamedTuple):
    fn: Fn
    const: float | None


def constant(value: float) -> Node:
    def f(_c: EvalContext) -> float:
        return value

    return Node(f, value)


# -- arithmetic that never raises ----------------------------------------------------------


def i64(x: float) -> int:
    if x != x or x in (math.inf, -math.inf):
        return 0
    i = int(x)
    return _I64_MAX if i > _I64_MAX else _I64_MIN if i < _I64_MIN else i


def _div(x: float, y: float) -> float:
    return x / y if y else 0.0


def _mod(x: float, y: float) -> float:
    if not y:
        return 0.0
    try:
        return math.fmod(x, y)
    except ValueError:
        return 0.0


def _pow(x: float, y: float) -> float:
    try:
        return math.pow(x, y)
    except OverflowError:
        odd = x < 0 and float(y).is_integer() and int(y) % 2 == 1
        return -math.inf if odd else math.inf
    except ValueError:
        return 0.0


def _round(x: float) -> float:
    if not math.isfinite(x):
        return x
    return math.copysign(math.floor(abs(x) + 0.5), x)


def _sqrt(x: float) -> float:
    return math.sqrt(x) if x >= 0 else 0.0


def clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


_GENERIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _div,
    "%": _mod,
    "^": _pow,
    "&": lambda x, y: float(i64(x) & i64(y)),
    "|": lambda x, y: float(i64(x) | i64(y)),
    "==": lambda x, y: 1.0 if x == y else 0.0,
    "!=": lambda x, y: 1.0 if x != y else 0.0,
    "<": lambda x, y: 1.0 if x < y else 0.0,
    "<=": lambda x, y: 1.0 if x <= y else 0.0,
    ">": lambda x, y: 1.0 if x > y else 0.0,
    ">=": lambda x, y: 1.0 if x >= y else 0.0,
}

# Specialised closures for the common operators: variable/variable, variable/constant and
# constant/variable operands (saves one call per evaluation).
_VV: dict[str, Callable[[Fn, Fn], Fn]] = {
    "+": lambda a, b: lambda c: a(c) + b(c),
    "-": lambda a, b: lambda c: a(c) - b(c),
    "*": lambda a, b: lambda c: a(c) * b(c),
    "<": lambda a, b: lambda c: 1.0 if a(c) < b(c) else 0.0,
    "<=": lambda a, b: lambda c: 1.0 if a(c) <= b(c) else 0.0,
    ">": lambda a, b: lambda c: 1.0 if a(c) > b(c) else 0.0,
    ">=": lambda a, b: lambda c: 1.0 if a(c) >= b(c) else 0.0,
    "==": lambda a, b: lambda c: 1.0 if a(c) == b(c) else 0.0,
    "!=": lambda a, b: lambda c: 1.0 if a(c) != b(c) else 0.0,
}
_VK: dict[str, Callable[[Fn, float], Fn]] = {
    "+": lambda a, k: lambda c: a(c) + k,
    "-": lambda a, k: lambda c: a(c) - k,
    "*": lambda a, k: lambda c: a(c) * k,
    "<": lambda a, k: lambda c: 1.0 if a(c) < k else 0.0,
    "<=": lambda a, k: lambda c: 1.0 if a(c) <= k else 0.0,
    ">": lambda a, k: lambda c: 1.0 if a(c) > k else 0.0,
    ">=": lambda a, k: lambda c: 1.0 if a(c) >= k else 0.0,
    "==": lambda a, k: lambda c: 1.0 if a(c) == k else 0.0,
    "!=": lambda a, k: lambda c: 1.0 if a(c) != k else 0.0,
}
_KV: dict[str, Callable[[float, Fn], Fn]] = {
    "+": lambda k, b: lambda c: k + b(c),
    "-": lambda k, b: lambda c: k - b(c),
    "*": lambda k, b: lambda c: k * b(c),
}


def binary(op: str, left: Node, right: Node) -> Node:
    g = _GENERIC[op]
    if left.const is not None and right.const is not None:
        return constant(g(left.const, right.const))
    a, b = left.fn, right.fn
    if right.const is not None and op in _VK:
        return Node(_VK[op](a, right.const), None)
    if left.const is not None and op in _KV:
        return Node(_KV[op](left.const, b), None)
    if op in _VV:
        return Node(_VV[op](a, b), None)
    return Node(lambda c: g(a(c), b(c)), None)


def chain(first: Node, rest: list[tuple[str, Node]]) -> Node:
    all_constant = first.const is not None and all(n.const is not None for _, n in rest)
    if len(rest) < _NEST_CHAIN or all_constant:
        acc = first
        for op, node in rest:
            acc = binary(op, acc, node)
        return acc
    head = first.fn
    steps = tuple((_GENERIC[op], node.fn) for op, node in rest)

    def f(c: EvalContext) -> float:
        acc = head(c)
        for g, fn in steps:
            acc = g(acc, fn(c))
        return acc

    return Node(f, None)


def logical(op: str, nodes: list[Node]) -> Node:
    want_all = op == "&&"
    consts = [n.const for n in nodes]
    if all(k is not None for k in consts):
        truths = [bool(k) for k in consts]
        return constant(1.0 if (all(truths) if want_all else any(truths)) else 0.0)
    fns = tuple(n.fn for n in nodes)
    if len(fns) == 2:
        a, b = fns
        if want_all:
            return Node(lambda c: 1.0 if a(c) and b(c) else 0.0, None)
        return Node(lambda c: 1.0 if a(c) or b(c) else 0.0, None)
    if want_all:
        return Node(lambda c: 1.0 if all(f(c) for f in fns) else 0.0, None)
    return Node(lambda c: 1.0 if any(f(c) for f in fns) else 0.0, None)


def var_node(ref: VarRef) -> Node:
    ns, name, field = ref

    def f(c: EvalContext) -> float:
        v = c.resolve(ns, name, field)
        return 0.0 if v is None else v

    return Node(f, None)


# -- functions -----------------------------------------------------------------------------

# name -> (min args, max args or -1 for any)
ARITY: dict[str, tuple[int, int]] = {
    "min": (1, -1),
    "max": (1, -1),
    "abs": (1, 1),
    "clamp": (3, 3),
    "round": (1, 1),
    "sqrt": (1, 1),
    "exists": (1, 1),
    "param": (1, 1),
    "min_price": (1, 1),
    "max_price": (1, 1),
    "min_price_secs": (1, 1),
    "max_price_secs": (1, 1),
}
FUNCTIONS = frozenset(ARITY)

PURE1: dict[str, Callable[[float], float]] = {"abs": abs, "round": _round, "sqrt": _sqrt}


def min_max(is_min: bool, args: list[Node]) -> Node:
    pick: Callable[..., float] = min if is_min else max
    consts = [n.const for n in args if n.const is not None]
    rest = [n.fn for n in args if n.const is None]
    if not rest:
        return constant(pick(consts))
    if len(rest) == 1 and len(consts) <= 1:
        a = rest[0]
        if not consts:
            return Node(a, None)
        k = consts[0]
        if is_min:
            return Node(lambda c: k if k < (x := a(c)) else x, None)
        return Node(lambda c: k if k > (x := a(c)) else x, None)
    if len(rest) == 2 and not consts:
        a, b = rest
        if is_min:
            return Node(lambda c: x if (x := a(c)) <= (y := b(c)) else y, None)
        return Node(lambda c: x if (x := a(c)) >= (y := b(c)) else y, None)
    base = (pick(consts),) if consts else ()
    fns = tuple(rest)
    return Node(lambda c: pick(*base, *[f(c) for f in fns]), None)


def price_fn(name: str, arg: Node) -> Node:
    cheapest = name.startswith("min")
    want_secs = name.endswith("_secs")
    a = arg.fn

    def f(c: EvalContext) -> float:
        found = c.price_extreme(a(c), cheapest)
        if found is None:
            return -1.0 if want_secs else 0.0
        return found[1] if want_secs else found[0]

    return Node(f, None)
