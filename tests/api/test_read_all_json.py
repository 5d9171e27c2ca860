"""`read=all` encoded in one pass gives exactly the bytes of the dict view encoded by json."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from chargebrain.api.cmd_modbus import read_all, read_all_json
from chargebrain.powerbrain.bank import RegisterBank
from chargebrain.powerbrain.registers import FIRST_ADDRESS, LAST_ADDRESS, Dev

SIZE = LAST_ADDRESS - FIRST_ADDRESS


def reference(bank: RegisterBank) -> bytes:
    return json.dumps(read_all(bank), separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=200, deadline=None)
@given(dev=st.sampled_from(list(Dev)),
       words=st.lists(st.integers(0, 0xFFFF), min_size=SIZE, max_size=SIZE))
def test_same_bytes_as_the_dict_view(dev: Dev, words: list[int]) -> None:
    bank = RegisterBank(dev)
    bank._put(FIRST_ADDRESS, words)
    assert read_all_json(bank) == reference(bank)


def test_strings_with_quotes_and_high_bytes_are_escaped_like_json() -> None:
    bank = RegisterBank(Dev.EVSE)
    bank.set_str("name", 'a"b\\\xe9')
    out = json.loads(read_all_json(bank))
    assert out == read_all(bank)
    assert 'a"b\\\xe9' in out.values()
