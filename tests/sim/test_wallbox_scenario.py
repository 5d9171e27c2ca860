"""A scenario's maker's wallbox: named with interface "wallbox", and one the simulator
has (the runs themselves: tests/sim/test_scenarios_real.py)."""

from __future__ import annotations

import pytest

from chargebrain.shapes import ShapeError
from chargebrain.sim.scenario import scenario_from_dict


def test_a_wallbox_must_be_named_and_known() -> None:
    base = {"name": "x", "start": "08:00", "duration": "1h",
            "site": {"max_current_ma": 32000}, "cars": []}
    with pytest.raises((ShapeError, ValueError), match="wallbox"):
        scenario_from_dict({**base, "evses": [{"id": "E1", "interface": "wallbox"}]})
    with pytest.raises((ShapeError, ValueError), match="unknown wallbox"):
        scenario_from_dict({**base, "evses": [{"id": "E1", "interface": "wallbox",
                                              "wallbox": "evse_nope"}]})
