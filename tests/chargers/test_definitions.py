"""Charger definitions that cannot work are refused with the line and the field, as meter
definitions are; a bundled one is an EVSE type."""

from __future__ import annotations

import pytest

from chargebrain.devices.meterdef import MeterDefinitionError, parse_definition
from chargebrain.devices.registry import DeviceTypes, Kind
from tests.chargers.conftest import bundled

GOOD = """{
  rtype: 0, mtype: 8, dev_type: "box",
  state: {address: 5, map: {"1": "A", "2": "B", "3": "C"}},
  set_current: [{address: 10, value: "amps"}],
  disable: [{address: 10, value: 0}],
}"""


@pytest.mark.parametrize(("change", "message"), [
    (('rtype: 0', 'rtype: 2'), "line 2, field 'rtype': a charger definition is read over"),
    (('  state: {address: 5, ', '  status: {address: 5, '), "needs a 'state' variable"),
    (('map: {"1": "A", "2": "B", "3": "C"}', 'type: "uint16"'),
     "line 3, field 'state': 'state' needs a 'map'"),
    (('"3": "C"', '"3": "Z"'), "line 3, field 'state.map.3': must be one of A, B, C"),
    (('  disable: [{address: 10, value: 0}],', ''), "field 'disable': a charger definition"),
    (('value: "amps"', 'value: "amps", type: "float", func: 6'),
     "line 4, field 'set_current[0].func': function 6 writes one register"),
    (('value: "amps"', 'value: "amps", type: "string"'),
     "line 4, field 'set_current[0].type': a write cannot be a string"),
    (('value: "amps"', 'value: "amps", size: 2'),
     "line 4, field 'set_current[0].size': unknown write property 'size'"),
    (('value: "amps"', 'value: "amps +"'), "line 4, field 'set_current[0].value': expression"),
    (('value: "amps"', 'value: "soc * 2"'), "'soc' is neither a variable"),
])
def test_bad_definitions_name_line_and_field(change: tuple[str, str], message: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(MeterDefinitionError, match=message.replace("[", r"\[").replace(
            "]", r"\]").replace("(", r"\(").replace("+", r"\+").replace("*", r"\*")):
        parse_definition(text)


def test_a_good_one_and_the_registry() -> None:
    definition = parse_definition(GOOD)
    assert definition.dev_type == "evse_box" and definition.is_charger
    types = DeviceTypes({definition.dev_type: definition,
                         "evse_heidelberg": bundled("evse_heidelberg")})
    box = types.get("evse_box")
    assert box is not None and box.kind is Kind.EVSE
    assert types.names()["evse_heidelberg"] == "Heidelberg Energy Control"
