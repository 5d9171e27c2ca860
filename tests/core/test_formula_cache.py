"""Compiled formulas kept by their text: the bounded cache and formulas prepared ahead."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from chargebrain.core.formula import (
    MAX_LENGTH,
    FormulaError,
    compile_formula,
    compile_uncached,
    prepare_formulas,
    prepared,
)
from chargebrain.core.formula.cache import (
    CACHE,
    ENTRY_WEIGHT,
    MAX_ENTRIES,
    MAX_WEIGHT,
    Failure,
    FormulaCache,
    compile_observers,
)

_serial = itertools.count(1)


def fresh(length: int = 40) -> str:
    head = f"{next(_serial)} + 0.5 * "
    return head + "M1.current" + " + E2.power_w" * ((length - len(head) - 10) // 13)


@pytest.fixture
def compiled() -> Iterator[list[str]]:
    seen: list[str] = []
    compile_observers.append(seen.append)
    try:
        yield seen
    finally:
        compile_observers.remove(seen.append)


def test_a_text_is_compiled_once(compiled: list[str]) -> None:
    text = fresh()
    first = compile_formula(text)
    assert compile_formula(text) is first
    assert compiled == [text]
    assert first.text == text and first.device_ids == {"M1", "E2"}


def test_a_failure_is_kept_and_raised_afresh(compiled: list[str]) -> None:
    text = fresh() + " * (1"
    errors = []
    for _ in range(2):
        with pytest.raises(FormulaError) as exc:
            compile_formula(text)
        errors.append(exc.value)
    assert errors[0] is not errors[1]
    assert (errors[0].message, errors[0].column, str(errors[0])) == (
        errors[1].message, errors[1].column, str(errors[1]))
    assert compiled == [text]
    with pytest.raises(FormulaError, match="too long"):
        compile_formula("1" * (MAX_LENGTH + 1))
    assert compiled == [text]  # refused without compiling


def test_the_cache_drops_the_least_recently_used() -> None:
    cache = FormulaCache(max_entries=3, max_weight=10_000)
    formulas = {t: compile_uncached(t) for t in ("1", "2", "3", "4")}
    for t in ("1", "2", "3"):
        cache.put(t, formulas[t])
    assert cache.get("1") is formulas["1"]  # now the most recently used
    cache.put("4", formulas["4"])
    assert cache.get("2") is None
    assert [cache.get(t) is not None for t in ("1", "3", "4")] == [True] * 3
    assert len(cache) == 3 and cache.weight == 3 * (1 + ENTRY_WEIGHT)


def test_the_cache_is_bounded_in_weight() -> None:
    cache = FormulaCache(max_entries=100, max_weight=3 * (1000 + ENTRY_WEIGHT))
    texts = [fresh(1000) for _ in range(5)]
    for t in texts:
        cache.put(t, Failure("x", 0, 1))
    assert len(cache) == 3 and cache.weight <= cache.max_weight
    assert cache.get(texts[0]) is None and cache.get(texts[-1]) is not None
    cache.clear()
    assert len(cache) == 0 and cache.weight == 0


def test_the_shared_cache_stays_within_its_bounds() -> None:
    for _ in range(80):
        compile_formula(fresh(4000))
    assert CACHE.weight <= MAX_WEIGHT and len(CACHE) <= MAX_ENTRIES


def test_prepared_formulas_are_found_whatever_the_cache_dropped(compiled: list[str]) -> None:
    good, bad = fresh(), fresh() + " +"
    results = prepare_formulas([good, bad, good, "", "   ", "1" * (MAX_LENGTH + 1)])
    assert set(results) == {good, bad}
    assert isinstance(results[bad], Failure)
    assert compiled == [good, bad]
    CACHE.clear()
    with prepared(results):
        assert compile_formula(good) is results[good]
        with pytest.raises(FormulaError, match="unexpected end"):
            compile_formula(bad)
        inner = prepare_formulas([fresh()])
        with prepared(inner):  # nested: both are found
            assert compile_formula(good) is results[good]
            assert compile_formula(next(iter(inner))) is next(iter(inner.values()))
    assert compiled == [good, bad, *inner]
    compile_formula(good)  # outside the block: compiled again
    assert compiled == [good, bad, *inner, good]
