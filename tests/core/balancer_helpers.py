"""Shorthands shared by the balancer's tests: amperes, an EVSE input, the currents set."""

from __future__ import annotations

from chargebrain.core.balancer import Allocation, EvseInput
from chargebrain.core.model import EvseState

A = 1000  # mA


def ev(id: str, **kw: object) -> EvseInput:
    """An EVSE input, charging unless told otherwise."""
    kw.setdefault("state", EvseState.CHARGING)
    return EvseInput(id, **kw)  # type: ignore[arg-type]


def currents(a: Allocation) -> dict[str, int]:
    """EVSE id → the current the allocation sets."""
    return {d.id: d.current_ma for d in a.evses}
