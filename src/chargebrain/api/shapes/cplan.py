"""The set_cplan body, declared once: `{"cplan": [{"dc", "st", "dr", "lm"}, …]}`.

An external energy manager's charging schedule (the vendor's "charging plan"): each entry
a limit `lm` (mA per phase for an EVSE, a group or the site's `$G`; the vendor's watts
are for storage, which chargebrain does not control) from minute `st` of the day for `dr`
minutes. `dc` marks a discharge limit, which only a storage has: it is refused here.
Numbers may be sent as text (`"480"`), as everywhere in the API. Keys that are none of
these are refused, naming them; of several problems the first entry's first is
reported. An empty list removes the schedule.

This module only reads the body; it never changes a schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, model_validator

from chargebrain.api.errors import ApiError
from chargebrain.api.lenient import Body, check, message, named
from chargebrain.api.params import Refused
from chargebrain.api.shapes.devices import MAX_MA
from chargebrain.api.shapes.fields import flag, int_range
from chargebrain.manager.schedules import DAY_MIN, Entry

MAX_ENTRIES = 1440


def _refuse_unknown(data: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise named(f"unknown key{plural} {', '.join(map(repr, unknown))} {where}")


class CplanEntryShape(Body):
    """One limit of a charging schedule."""

    not_object: ClassVar[str] = 'an object {"st": ..., "dr": ..., "lm": ...} is required'

    dc: Annotated[bool, flag()] = False
    """The limit is a discharge limit (of a storage); chargebrain controls no storage."""
    st: Annotated[int, int_range(0, DAY_MIN - 1)]
    """Start of the limit, minute of the day (0..1439), on the controller's clock."""
    dr: Annotated[int, int_range(1, DAY_MIN)]
    """Duration in minutes; past midnight the limit goes on into the next day."""
    lm: Annotated[int, int_range(0, MAX_MA)]
    """The limit: mA per phase. `0` lets nothing charge."""

    @model_validator(mode="before")
    @classmethod
    def _known_keys_and_required(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise message(cls.not_object)
        _refuse_unknown(data, cls._known_keys, "in ")
        for key in ("st", "dr", "lm"):
            if key not in data:
                raise named("", f".{key} is required")
        return data

    @model_validator(mode="after")
    def _charging_only(self) -> CplanEntryShape:
        if self.dc:
            raise named("", ".dc: discharge limits are for storage, which chargebrain does "
                            "not control")
        return self

    def entry(self) -> Entry:
        return Entry(st=self.st, dr=self.dr, lm=self.lm, dc=self.dc)


def _entries(value: Any) -> Any:
    if not isinstance(value, list):
        raise Refused("a list of {\"st\", \"dr\", \"lm\"} objects is required")
    if len(value) > MAX_ENTRIES:
        raise Refused(f"no more than {MAX_ENTRIES} entries")
    return value


class CplanBody(Body):
    """A set_cplan body."""

    not_object: ClassVar[str] = 'a JSON object {"cplan": [...]} is required in the request body'

    cplan: Annotated[tuple[CplanEntryShape, ...], BeforeValidator(_entries)]
    """The schedule's limits; an empty list removes the schedule."""

    @model_validator(mode="before")
    @classmethod
    def _known_keys_and_required(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise message(cls.not_object)
        _refuse_unknown(data, cls._known_keys, "in set_cplan")
        if "cplan" not in data:
            raise message('cplan is required: a list of {"st", "dr", "lm"} objects')
        return data


def schedule_entries(body: Any) -> list[Entry]:
    """The entries of a set_cplan body, or ApiError 400 naming the problem."""
    if body is None:
        raise ApiError(400, 'a JSON body {"cplan": [...]} is required')
    return [e.entry() for e in check(CplanBody, body).cplan]
