"""Validating a scenario document: its shape, then the rules that tie its objects together.

`validate_scenario(data)` validates the parsed document against `ScenarioShape` and then
checks what no single object can: unique ids, references (groups, EVSEs, cars, the PV
meter), group cycles, at most one controller EVSE, times relative to the start and the
end of the run, cars or faults that overlap. Every problem is reported at once: when
some objects are malformed, the others are still checked against each other (ids count
as written), so one pass over the file shows everything to fix. Problems are paths into
the document with a message (`shapes.Problem`), raised together as a `ShapeError`.

This module must never read text or files, and never build the simulator's values.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from chargebrain.shapes import Path, Problem, ShapeError, problems
from chargebrain.sim.scenario.faults import FAULT_SHAPES, EvseOfflineFault, FaultBase
from chargebrain.sim.scenario.model import CarShape, EvseShape, ScenarioShape
from chargebrain.sim.scenario.spec import Interface
from chargebrain.sim.scenario.times import parse_duration, parse_time_of_day

__all__ = ["validate_scenario"]

T = TypeVar("T")


# The string fields that name objects: (list, key). A fault's target key is its type's.
_NAMES = (("groups", "id"), ("groups", "parent"), ("evses", "id"), ("evses", "group"),
          ("cars", "id"), ("cars", "evse"))
_TARGETS = tuple(("faults", key) for key in ("meter", "evse", "car"))


@dataclass
class _Parts:
    """What of a document the rules across objects look at.

    `written` holds the ids and the references as written, for every object that has them
    as text, also where the object is malformed otherwise: its id still exists and its
    references are still checked. The item lists hold the objects that validated, with
    their index in the file, for the rules that need more (times, interfaces, currents).
    """

    start_tod: int | None
    duration_s: int | None
    cycle_s: int | None
    written: dict[tuple[str, str], dict[int, str]]
    evses: list[tuple[int, EvseShape]] = field(default_factory=list)
    cars: list[tuple[int, CarShape]] = field(default_factory=list)
    faults: list[tuple[int, FaultBase]] = field(default_factory=list)

    def names(self, key: str, name: str = "id") -> set[str]:
        return set(self.written[(key, name)].values())


def _objects(raw: Any) -> list[tuple[int, Mapping[str, Any]]]:
    return [(i, o) for i, o in enumerate(raw if isinstance(raw, list) else ())
            if isinstance(o, Mapping)]


def _written(data: Mapping[str, Any]) -> dict[tuple[str, str], dict[int, str]]:
    written: dict[tuple[str, str], dict[int, str]] = {k: {} for k in _NAMES + _TARGETS}
    for key, name in _NAMES:
        for i, item in _objects(data.get(key)):
            value = item.get(name)
            if isinstance(value, str) and value:
                written[(key, name)][i] = value
    for i, item in _objects(data.get("faults")):
        kind = item.get("type")
        shape = FAULT_SHAPES.get(kind) if isinstance(kind, str) else None
        value = item.get(shape.target_key) if shape else None
        if shape and isinstance(value, str) and value:
            written[("faults", shape.target_key)][i] = value
    return written


def _of_model(shape: ScenarioShape, data: Mapping[str, Any]) -> _Parts:
    parts = _Parts(shape.start, shape.duration, shape.cycle_s, _written(data))
    parts.evses = list(enumerate(shape.evses))
    parts.cars = list(enumerate(shape.cars))
    parts.faults = list(enumerate(shape.faults))
    return parts


def _or_none(parse: Callable[[Any], T], value: Any, default: T) -> T | None:
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError:
        return None


def _fault(item: Any) -> FaultBase | None:
    kind = item.get("type") if isinstance(item, Mapping) else None
    shape = FAULT_SHAPES.get(kind) if isinstance(kind, str) else None
    return None if shape is None else shape.model_validate(item)


def _valid(validate: Callable[[Any], T | None], raw: Any) -> list[tuple[int, T]]:
    out: list[tuple[int, T]] = []
    for i, item in enumerate(raw if isinstance(raw, list) else ()):
        with contextlib.suppress(ValidationError):  # (reported by the whole document)
            valid = validate(item)
            if valid is not None:
                out.append((i, valid))
    return out


def _of_document(data: Mapping[str, Any]) -> _Parts:
    """The parts of a document that did not validate as a whole."""
    duration = _or_none(parse_duration, data.get("duration"), None)
    parts = _Parts(
        start_tod=_or_none(parse_time_of_day, data.get("start"), 0),
        duration_s=duration if duration is not None and duration > 0 else None,
        cycle_s=_or_none(parse_duration, data.get("cycle_s"), 3),
        written=_written(data),
    )
    parts.evses = _valid(EvseShape.model_validate, data.get("evses"))
    parts.cars = _valid(CarShape.model_validate, data.get("cars"))
    parts.faults = _valid(_fault, data.get("faults"))
    return parts


# -- the rules across objects ------------------------------------------------------------------


def _ids(parts: _Parts) -> list[Problem]:
    out: list[Problem] = []
    for key in ("groups", "evses", "cars"):
        first: dict[str, int] = {}
        for i, ident in parts.written[(key, "id")].items():
            if ident in first:
                out.append(Problem((key, i, "id"), f"duplicate id {ident!r} "
                                                   f"(first at {key}[{first[ident]}])"))
            else:
                first[ident] = i
    evse_ids = parts.names("evses")
    for i, ident in parts.written[("groups", "id")].items():
        if ident in evse_ids:
            out.append(Problem(("groups", i, "id"), f"id {ident!r} is also an EVSE id"))
    return out


def _groups(parts: _Parts) -> list[Problem]:
    out: list[Problem] = []
    ids, parents = parts.written[("groups", "id")], parts.written[("groups", "parent")]
    group_ids = set(ids.values())
    parent_of = {ids[i]: parent for i, parent in parents.items() if i in ids}
    for i, parent in parents.items():
        if parent not in group_ids:
            out.append(Problem(("groups", i, "parent"), f"unknown group {parent!r}"))
        if i not in ids:
            continue
        seen = {ids[i]}
        p: str | None = parent
        while p is not None and p in parent_of:
            if p in seen:
                out.append(Problem(("groups", i, "parent"),
                                   f"groups form a cycle through {ids[i]!r}"))
                break
            seen.add(p)
            p = parent_of.get(p)
    return out


def _evses(parts: _Parts) -> list[Problem]:
    out: list[Problem] = []
    group_ids = parts.names("groups")
    for i, group in parts.written[("evses", "group")].items():
        if group not in group_ids:
            out.append(Problem(("evses", i, "group"), f"unknown group {group!r}"))
    builtin: str | None = None
    for i, e in parts.evses:
        if e.interface is Interface.POWERBRAIN:
            if builtin is not None:
                out.append(Problem(("evses", i, "interface"), "the controller has one EVSE of "
                                   f"its own (already {builtin!r})"))
            builtin = builtin or e.id
    return out


def _cars(parts: _Parts) -> list[Problem]:
    out: list[Problem] = []
    evse_ids = parts.names("evses")
    for i, evse in parts.written[("cars", "evse")].items():
        if evse not in evse_ids:
            out.append(Problem(("cars", i, "evse"), f"unknown EVSE {evse!r}"))
    if parts.start_tod is None:
        return out
    stays: dict[str, list[tuple[int, int, int, str]]] = {}
    for i, c in parts.cars:
        arrive, leave = c.stay(parts.start_tod)
        if arrive < 0:
            out.append(Problem(("cars", i, "arrive"), "must not be before the start"))
        if parts.duration_s is not None and arrive >= parts.duration_s:
            out.append(Problem(("cars", i, "arrive"),
                               f"after the end of the run ({parts.duration_s} s)"))
        if leave <= arrive:
            out.append(Problem(("cars", i, "leave"), "must be after arrive"))
        announced = c.announced(parts.start_tod)
        if announced is not None and announced[0] >= leave:
            out.append(Problem(("cars", i, "plan", "after"), "must be before it leaves"))
        stays.setdefault(c.evse, []).append((arrive, leave, i, c.id))
    for evse_id, same in stays.items():
        same.sort()
        for a, b in itertools.pairwise(same):
            if b[0] < a[1]:
                out.append(Problem(("cars", b[2], "arrive"),
                                   f"{a[3]!r} and {b[3]!r} overlap on EVSE {evse_id!r}"))
    return out


def _fault_targets(parts: _Parts, has_pv: bool) -> list[Problem]:
    out: list[Problem] = []
    for i, meter in parts.written[("faults", "meter")].items():
        if meter == "pv" and not has_pv:
            out.append(Problem(("faults", i, "meter"), "the site has no PV meter"))
    evse_ids, car_ids = parts.names("evses"), parts.names("cars")
    for i, evse_id in parts.written[("faults", "evse")].items():
        if evse_id not in evse_ids:
            out.append(Problem(("faults", i, "evse"), f"unknown EVSE {evse_id!r}"))
    for i, car_id in parts.written[("faults", "car")].items():
        if car_id not in car_ids:
            out.append(Problem(("faults", i, "car"), f"unknown car {car_id!r}"))
    evses = {e.id: e for _, e in parts.evses}
    for i, f in parts.faults:
        evse = evses.get(f.target) if isinstance(f, EvseOfflineFault) else None
        if evse is None or not isinstance(f, EvseOfflineFault):
            continue
        if evse.interface is Interface.POWERBRAIN:
            out.append(Problem(("faults", i, "evse"), "the controller's own EVSE cannot stop "
                                                      "answering the controller"))
        elif f.fail_safe_ma and f.fail_safe_ma < evse.min_ma:
            out.append(Problem(("faults", i, "fail_safe_ma"),
                               "must be 0 or at least the EVSE's min_ma"))
    return out


def _fault_times(parts: _Parts) -> list[Problem]:
    if parts.start_tod is None:
        return []
    out: list[Problem] = []
    spells: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for i, f in parts.faults:
        start, end = f.window(parts.start_tod, parts.duration_s or 0)
        if end <= start:
            out.append(Problem(("faults", i, "to"), "must be after from"))
        spells.setdefault((f.type, f.target), []).append((start, end, i))
    for (kind, target), same in spells.items():
        same.sort()
        for a, b in itertools.pairwise(same):
            if b[0] < a[1]:
                out.append(Problem(("faults", b[2], "from"),
                                   f"two {kind} faults of {target!r} overlap"))
    return out


def _run(parts: _Parts) -> list[Problem]:
    cycle, duration = parts.cycle_s, parts.duration_s
    if cycle is not None and duration is not None and cycle > duration:
        return [Problem(("cycle_s",), "must be at least 1 s and at most the duration")]
    return []


def _across(parts: _Parts, data: Mapping[str, Any]) -> list[Problem]:
    return [
        *_run(parts), *_ids(parts), *_groups(parts), *_evses(parts), *_cars(parts),
        *_fault_targets(parts, data.get("pv") is not None), *_fault_times(parts),
    ]


# -- the whole document ----------------------------------------------------------------------


def _document_path(path: Path) -> Path:
    """A location pydantic reports → the same place in the file (a fault's location
    carries its kind after the index)."""
    if len(path) > 2 and path[0] == "faults" and path[2] in FAULT_SHAPES:
        return path[:2] + path[3:]
    return path


def _of_error(exc: ValidationError) -> list[Problem]:
    out = []
    for error, problem in zip(exc.errors(include_url=False), problems(exc), strict=True):
        message = "required" if error["type"] == "missing" else problem.message
        out.append(Problem(_document_path(problem.path), message))
    return out


def validate_scenario(data: Any) -> ScenarioShape:
    """The document as a validated `ScenarioShape`; raises ShapeError with every problem."""
    try:
        shape = ScenarioShape.model_validate(data)
    except ValidationError as exc:
        found = _of_error(exc)
        if isinstance(data, Mapping):
            found += _across(_of_document(data), data)
        raise ShapeError(found) from None
    found = _across(_of_model(shape, data), data)
    if found:
        raise ShapeError(found)
    return shape
