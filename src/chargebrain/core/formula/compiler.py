"""Compile formula text once into a tree of Python closures and evaluate it quickly.

`compile_uncached(text)` parses with the shared LALR parser, checks limits (length, nesting),
resolves every name and function at compile time, folds constant sub-expressions and
returns a `Formula` whose `evaluate(ctx)` only calls closures. Evaluation never raises for
arithmetic reasons: division or modulo by zero give 0, unknown variables read as 0, NaN
results become 0 and infinite results are clamped to +/-RESULT_LIMIT. (Callers use
`compile_formula`, which keeps compiled texts: cache.py.)
This module must never use Python eval/exec, attribute access on user-named objects,
loops driven by formula values, or any I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from chargebrain.core.formula.context import (
    DATE_FIELDS,
    NS_CM,
    NS_DATE,
    NS_DEVICE,
    NS_GM,
    NS_PB,
    NS_SELF,
    EvalContext,
    VarRef,
)
from chargebrain.core.formula.errors import FormulaError
from chargebrain.core.formula.grammar import parser
from chargebrain.core.formula.nodes import (
    ARITY,
    PURE1,
    Node,
    binary,
    chain,
    clamp,
    constant,
    i64,
    logical,
    min_max,
    price_fn,
    var_node,
)

MAX_LENGTH = 4096
# The most formula text one request may carry, and all CM variables together.
MAX_TOTAL_LENGTH = 64 * 1024
MAX_DEPTH = 64
RESULT_LIMIT = 1e15
_DEVICE_ID = re.compile(r"[A-Za-z][0-9]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_NUMERIC = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")


# -- names ---------------------------------------------------------------------------------


def parse_name(text: str, column: int = 0) -> VarRef:
    """Map a (possibly dotted) name to a VarRef; raises FormulaError for unknown forms."""
    parts = text.split(".")
    if len(parts) == 1:
        return VarRef(NS_SELF, "", parts[0].lower())
    head = parts[0].lower()
    if len(parts) == 2:
        field = parts[1].lower()
        if head == "date":
            if field not in DATE_FIELDS:
                raise FormulaError(f"unknown date field '{parts[1]}'", column)
            return VarRef(NS_DATE, "", field)
        if head == "cm":
            return VarRef(NS_CM, "", field)
        if head == "pb":
            return VarRef(NS_PB, "", field)
        if head == "gm":
            return VarRef(NS_GM, "", field)
        if _DEVICE_ID.fullmatch(parts[0]):
            return VarRef(NS_DEVICE, parts[0].upper(), field)
    if len(parts) == 3 and head == "gm":
        return VarRef(NS_GM, parts[1].lower(), parts[2].lower())
    raise FormulaError(f"unknown name '{text}'", column)


# -- tree walking (compile time only) -----------------------------------------------------


def _first_token(tree: Tree[Token] | Token) -> Token | None:
    stack: list[Tree[Token] | Token] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, Token):
            return item
        stack.extend(reversed(item.children))
    return None


def _column(tree: Tree[Token] | Token) -> int:
    tok = _first_token(tree)
    col = getattr(tok, "column", None) if tok is not None else None
    return col if isinstance(col, int) else 0


def _check_shape(tree: Tree[Token]) -> int:
    """Depth of operator nesting (function-argument lists do not count) and node count."""
    size = 0
    stack: list[tuple[Tree[Token] | Token, int]] = [(tree, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Token):
            continue
        size += 1
        if depth > MAX_DEPTH:
            raise FormulaError(
                f"formula nested too deeply (more than {MAX_DEPTH} levels)", _column(item)
            )
        step = 0 if item.data == "args" else 1
        stack.extend((child, depth + step) for child in item.children)
    return size


def _unescape(raw: str) -> str:
    body = raw[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            i += 1
            ch = body[i]
        out.append(ch)
        i += 1
    return "".join(out)


class _Compiler:
    def __init__(self) -> None:
        self.refs: set[VarRef] = set()

    def node(self, tree: Tree[Token] | Token) -> Node:
        if isinstance(tree, Token):
            raise FormulaError(f"unexpected '{tree}'", _column(tree))
        kind = tree.data
        ch = tree.children
        if kind == "number":
            return constant(self._number(ch[0]))
        if kind == "string":
            text = _unescape(str(ch[0]))
            return constant(float(text) if _NUMERIC.fullmatch(text) else 0.0)
        if kind == "var":
            ref = parse_name(str(ch[0]), _column(ch[0]))
            self.refs.add(ref)
            return var_node(ref)
        if kind == "group":
            return self.node(ch[1])
        if kind == "neg":
            return self._unary(str(ch[0]), self.node(ch[1]))
        if kind == "pow":
            return binary("^", self.node(ch[0]), self.node(ch[2]))
        if kind == "cond":
            return self._cond(self.node(ch[0]), self.node(ch[2]), self.node(ch[4]))
        if kind == "call":
            return self._call(ch)
        if kind in ("lor", "land"):
            return logical(str(ch[1]), [self.node(x) for x in ch[0::2]])
        first = self.node(ch[0])
        rest = [(str(ch[i]), self.node(ch[i + 1])) for i in range(1, len(ch), 2)]
        return chain(first, rest)

    @staticmethod
    def _number(tok: Tree[Token] | Token) -> float:
        text = str(tok)
        try:
            value = float(int(text, 16)) if text[:2] in ("0x", "0X") else float(text)
        except (OverflowError, ValueError):
            value = math.inf
        if not math.isfinite(value):
            raise FormulaError(f"number '{text[:20]}' is too large", _column(tok))
        return value

    @staticmethod
    def _unary(op: str, inner: Node) -> Node:
        if op == "+":
            return inner
        a = inner.fn
        if op == "-":
            if inner.const is not None:
                return constant(-inner.const)
            return Node(lambda c: -a(c), None)
        if inner.const is not None:
            return constant(0.0 if inner.const else 1.0)
        return Node(lambda c: 0.0 if a(c) else 1.0, None)

    @staticmethod
    def _cond(test: Node, yes: Node, no: Node) -> Node:
        if test.const is not None:
            return yes if test.const else no
        t, a, b = test.fn, yes.fn, no.fn
        return Node(lambda c: a(c) if t(c) else b(c), None)

    def _call(self, ch: list[Tree[Token] | Token]) -> Node:
        name_tok = ch[0]
        name = str(name_tok).lower()
        column = _column(name_tok)
        arg_trees: list[Tree[Token] | Token] = []
        if len(ch) == 4 and isinstance(ch[2], Tree):
            arg_trees = list(ch[2].children[0::2])
        if name not in ARITY:
            raise FormulaError(f"unknown function '{name_tok}'", column)
        lo, hi = ARITY[name]
        n = len(arg_trees)
        if n < lo or (hi >= 0 and n > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}"
            raise FormulaError(f"{name}() takes {want} argument(s), got {n}", column)
        if name == "exists":
            return self._exists(arg_trees[0])
        args = [self.node(t) for t in arg_trees]
        if name in ("min", "max"):
            return min_max(name == "min", args)
        if name in PURE1:
            f1 = PURE1[name]
            (x,) = args
            if x.const is not None:
                return constant(f1(x.const))
            a = x.fn
            return Node(lambda c: f1(a(c)), None)
        if name == "clamp":
            x, lo_n, hi_n = args
            if x.const is not None and lo_n.const is not None and hi_n.const is not None:
                return constant(clamp(x.const, lo_n.const, hi_n.const))
            a, b, d = x.fn, lo_n.fn, hi_n.fn
            return Node(lambda c: clamp(a(c), b(c), d(c)), None)
        if name == "param":
            p = args[0].fn

            def param(c: EvalContext) -> float:
                v = c.param(i64(p(c)))
                return 0.0 if v is None else v

            return Node(param, None)
        return price_fn(name, args[0])

    def _exists(self, arg: Tree[Token] | Token) -> Node:
        column = _column(arg)
        if isinstance(arg, Tree) and arg.data == "var":
            ref = parse_name(str(arg.children[0]), column)
        elif isinstance(arg, Tree) and arg.data == "string":
            text = _unescape(str(arg.children[0])).strip()
            if not _NAME.fullmatch(text):
                raise FormulaError(f'exists() needs a variable name, got "{text[:40]}"', column)
            ref = parse_name(text, column)
        else:
            raise FormulaError("exists() needs a variable name", column)
        self.refs.add(ref)
        ns, name, field = ref

        def f(c: EvalContext) -> float:
            return 0.0 if c.resolve(ns, name, field) is None else 1.0

        return Node(f, None)


# -- public --------------------------------------------------------------------------------


class Formula:
    """A compiled formula. Immutable; safe to evaluate from many places."""

    __slots__ = ("_fn", "constant", "device_ids", "refs", "size", "text", "variables")

    def __init__(self, text: str, node: Node, refs: frozenset[VarRef], size: int) -> None:
        self.text = text
        self._fn = node.fn
        self.constant = node.const
        self.refs = refs
        self.variables = frozenset(r.text for r in refs)
        self.device_ids = frozenset(r.name for r in refs if r.namespace == NS_DEVICE)
        self.size = size

    def evaluate(self, ctx: EvalContext) -> float:
        """Value of the formula; NaN gives 0, +/-inf gives +/-RESULT_LIMIT."""
        try:
            r = self._fn(ctx)
        except (ArithmeticError, ValueError):
            return 0.0
        if r != r:
            return 0.0
        if r > RESULT_LIMIT:
            return RESULT_LIMIT
        if r < -RESULT_LIMIT:
            return -RESULT_LIMIT
        return r

    def __repr__(self) -> str:
        return f"Formula({self.text!r})"


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return index - text.rfind("\n", 0, index), line


def _prescan(text: str) -> None:
    """Reject deep parenthesis nesting and long runs of unary operators before parsing
    (cheap, and saves the parser from building huge trees that would be refused anyway)."""
    depth = 0
    run = 0
    in_string = False
    escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch in "-+!":
            run += 1
            if run > MAX_DEPTH + 1:
                column, line = _position(text, i)
                raise FormulaError(
                    f"formula nested too deeply (more than {MAX_DEPTH} levels)", column, line
                )
            continue
        if not ch.isspace():
            run = 0
        if ch == '"':
            in_string = True
        elif ch == "(":
            depth += 1
            if depth > MAX_DEPTH:
                column, line = _position(text, i)
                raise FormulaError(
                    f"formula nested too deeply (more than {MAX_DEPTH} levels)", column, line
                )
        elif ch == ")":
            depth -= 1


def _syntax_error(exc: LarkError, text: str) -> FormulaError:
    if isinstance(exc, UnexpectedEOF):
        return FormulaError("unexpected end of formula", len(text) + 1 if "\n" not in text else 0)
    if isinstance(exc, UnexpectedInput):
        column = exc.column if isinstance(exc.column, int) and exc.column > 0 else 0
        line = exc.line if isinstance(exc.line, int) and exc.line > 0 else 1
        if isinstance(exc, UnexpectedCharacters):
            return FormulaError(f"unexpected character {exc.char!r}", column, line)
        tok = getattr(exc, "token", None)
        if tok is not None and getattr(tok, "type", "") == "$END":
            return FormulaError("unexpected end of formula", len(text) + 1)
        shown = str(tok)[:20] if tok is not None else "?"
        return FormulaError(f"unexpected '{shown}'", column, line)
    return FormulaError("invalid formula")


def compile_uncached(text: str) -> Formula:
    """Compile `text` now; raises FormulaError (with the column) if it is not a valid
    formula. `compile_formula` (cache.py) is the same with compiled texts kept."""
    if not isinstance(text, str):
        raise FormulaError("formula must be a string")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula too long ({len(text)} > {MAX_LENGTH} characters)")
    if not text.strip():
        raise FormulaError("empty formula")
    _prescan(text)
    try:
        tree = parser().parse(text)
    except LarkError as exc:
        raise _syntax_error(exc, text) from None
    size = _check_shape(tree)
    comp = _Compiler()
    node = comp.node(tree)
    return Formula(text, node, frozenset(comp.refs), size)


def unknown_devices(formula: Formula, known_ids: Iterable[str]) -> set[str]:
    """Device ids the formula references that are not among `known_ids` (case-insensitive)."""
    known = {k.upper() for k in known_ids}
    return {d for d in formula.device_ids if d not in known}
