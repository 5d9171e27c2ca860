"""`compile_formula`: compiled formulas kept by their text, in a bounded cache and for one
piece of work compiled in advance.

Compiling is the costly part of a formula (a few µs per character, most of it the LALR
parse; a 4 KiB formula takes 10–30 ms); evaluating is cheap. `compile_formula(text)` looks
the text up before it compiles:

- `prepared(results)`: while the `with` block runs (in this thread or asyncio task: it is
  a context variable), the results of `prepare_formulas`, compiled in advance, e.g. in a
  worker thread while the event loop went on serving. They are found however much else
  was compiled meanwhile.
- `CACHE`: the formulas compiled last, the least recently used dropped first, bounded in
  entries and in weight (text length plus a fixed share per formula: a compiled formula
  takes about 45 bytes per character and 1.3 KB at least, so the bound is about 12 MB).
  It holds nothing a caller needs: whatever it drops is compiled again when asked for.

A text that does not compile is kept too (its error is raised afresh each time), so a bad
formula is not parsed twice either. Every text really compiled is passed to the
`compile_observers`, in the thread that compiles it (tests use them to see where
compiling happens). This module never parses anything itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeAlias

from chargebrain.core.formula.compiler import MAX_LENGTH, Formula, compile_uncached, unknown_devices
from chargebrain.core.formula.errors import FormulaError

#: Weight of one cached formula beyond its text (its fixed memory, in characters' worth).
ENTRY_WEIGHT = 32
MAX_ENTRIES = 8192
MAX_WEIGHT = 256 * 1024


@dataclass(frozen=True)
class Failure:
    """Why a text does not compile; `error()` is a fresh FormulaError saying so."""

    message: str
    column: int
    line: int

    def error(self) -> FormulaError:
        return FormulaError(self.message, self.column, self.line)


Result: TypeAlias = Formula | Failure
Prepared: TypeAlias = Mapping[str, Result]

#: Called with every text that is really compiled, in the compiling thread.
compile_observers: list[Callable[[str], None]] = []

_PREPARED: ContextVar[Prepared | None] = ContextVar("chargebrain_prepared_formulas", default=None)


class FormulaCache:
    """A thread-safe least-recently-used map of text -> compiled formula or failure."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_weight: int = MAX_WEIGHT) -> None:
        self.max_entries = max_entries
        self.max_weight = max_weight
        self._items: OrderedDict[str, Result] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    @property
    def weight(self) -> int:
        return self._weight

    def __len__(self) -> int:
        return len(self._items)

    def get(self, text: str) -> Result | None:
        with self._lock:
            found = self._items.get(text)
            if found is not None:
                self._items.move_to_end(text)
            return found

    def put(self, text: str, result: Result) -> None:
        weight = len(text) + ENTRY_WEIGHT
        with self._lock:
            if text in self._items:
                self._items.move_to_end(text)
                return
            self._items[text] = result
            self._weight += weight
            while self._weight > self.max_weight or len(self._items) > self.max_entries:
                old, _ = self._items.popitem(last=False)
                self._weight -= len(old) + ENTRY_WEIGHT

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._weight = 0


CACHE = FormulaCache()


def _result(text: str) -> Result:
    """The prepared or cached result for `text`, compiled now if there is none."""
    prepared_now = _PREPARED.get()
    found = prepared_now.get(text) if prepared_now is not None else None
    if found is None:
        found = CACHE.get(text)
    if found is None:
        for observer in compile_observers:
            observer(text)
        try:
            found = compile_uncached(text)
        except FormulaError as exc:
            found = Failure(exc.message, exc.column, exc.line)
        CACHE.put(text, found)
    return found


def compile_formula(text: str) -> Formula:
    """Compile `text` (or find it compiled); raises FormulaError (with the column) if it
    is not a valid formula."""
    if not isinstance(text, str):
        raise FormulaError("formula must be a string")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula too long ({len(text)} > {MAX_LENGTH} characters)")
    found = _result(text)
    if isinstance(found, Failure):
        raise found.error()
    return found


def prepare_formulas(texts: Iterable[str]) -> dict[str, Result]:
    """Compile `texts` (those not compiled yet) for `prepared`: text -> formula or failure.
    Texts that are no formula at all (empty, too long) are left out."""
    out: dict[str, Result] = {}
    for text in texts:
        if text not in out and text.strip() and len(text) <= MAX_LENGTH:
            out[text] = _result(text)
    return out


@contextmanager
def prepared(results: Prepared) -> Iterator[None]:
    """`compile_formula` finds `results` first while the block runs."""
    outer = _PREPARED.get()
    token = _PREPARED.set(results if outer is None else {**outer, **results})
    try:
        yield
    finally:
        _PREPARED.reset(token)


def validate_formula(text: object, known_devices: Iterable[str] | None = None) -> list[str]:
    """Problems with a formula as readable strings (empty list = fine)."""
    if not isinstance(text, str):
        return ["formula must be a string"]
    try:
        formula = compile_formula(text)
    except FormulaError as exc:
        return [str(exc)]
    if known_devices is None:
        return []
    return [f"unknown device '{d}'" for d in sorted(unknown_devices(formula, known_devices))]
