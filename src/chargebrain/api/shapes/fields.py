"""Field readers the API's shapes share: ranges, choices, flags, texts, formulas, limits,
rule lists, pushed numbers.

Each function gives an `api.lenient.Lenient` marker for `Annotated` fields: it reads a
value as the API always has (api/params.py: `"6000.0"` is 6000, `"yes"` is true), raises
the reason alone (the problem adds `field: `) and shows the web UI its JSON Schema (type,
range, length, whether a formula may stand for the value). Formulas are compiled here,
which is a look-up while a request's formulas are prepared (api/offload.py).

This module must never know which shape uses which field.
"""

from __future__ import annotations

from typing import Any

from chargebrain.api.lenient import Lenient
from chargebrain.api.params import Refused, boolean, clean, integer, items, number
from chargebrain.core.formula import compile_formula
from chargebrain.core.model import PLAUSIBLE_LIMIT
from chargebrain.core.rules import validate_rules
from chargebrain.servers.mqtt.url import BrokerUrlError, parse_broker_url

FORMULA_LIMIT = 4096  # characters of one formula field


def int_range(lo: int, hi: int) -> Lenient:
    """An integer in lo..hi (`"6000.0"` counts)."""

    def parse(value: Any) -> int:
        v = integer(value)
        if not lo <= v <= hi:
            raise Refused(f"{v} out of range {lo}..{hi}")
        return v

    return Lenient(parse, type="integer", minimum=lo, maximum=hi)


def choice(*allowed: int) -> Lenient:
    """One of a few integers."""

    def parse(value: Any) -> int:
        v = integer(value)
        if v not in allowed:
            raise Refused(f"{v} is not one of {', '.join(map(str, allowed))}")
        return v

    return Lenient(parse, type="integer", enum=list(allowed))


def flag() -> Lenient:
    """A boolean: true/false, 1/0, "yes"/"no", "on"/"off"."""
    return Lenient(boolean, type="boolean")


def any_number() -> Lenient:
    """Any finite number."""
    return Lenient(number, type="number")


def number_range(lo: float, hi: float) -> Lenient:
    """A finite number in lo..hi."""

    def parse(value: Any) -> float:
        v = number(value)
        if not lo <= v <= hi:
            raise Refused(f"{v:g} out of range {lo:g}..{hi:g}")
        return v

    return Lenient(parse, type="number", minimum=lo, maximum=hi)


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise Refused("a string is required")
    s = str(value)
    if len(s) > limit:
        raise Refused(f"longer than {limit} characters")
    return s


def text(limit: int) -> Lenient:
    """Text of at most `limit` characters; a number is taken as its text."""
    return Lenient(lambda value: _text(value, limit), type="string", maxLength=limit)


def word(*allowed: str) -> Lenient:
    """One of a few words, in any case (kept in lower case)."""

    def parse(value: Any) -> str:
        s = _text(value, 20).strip().lower()
        if s not in allowed:
            raise Refused(f"{s!r} is not one of {', '.join(allowed)}")
        return s

    return Lenient(parse, type="string", enum=list(allowed))


def _password(value: Any) -> str:
    s = _text(value, 64)
    if any(ord(c) < 32 for c in s):
        raise Refused("no control characters")
    return s


def password() -> Lenient:
    """A password of at most 64 characters without control characters (never shown)."""
    return Lenient(_password, type="string", maxLength=64, writeOnly=True)


def _broker_url(value: Any) -> str:
    s = _text(value, 500).strip()
    if s:
        try:
            parse_broker_url(s)
        except BrokerUrlError as exc:
            raise Refused(str(exc)) from None
    return s


def broker_url() -> Lenient:
    """An MQTT broker URL (servers/mqtt/url.py), or "" for none."""
    return Lenient(_broker_url, type="string", maxLength=500)


def _gateway_url(value: Any) -> str:
    s = _text(value, 300).strip()
    if not s:
        return ""
    scheme, sep, rest = s.partition("://")
    host = rest.split("/", 1)[0].rpartition("@")[2]
    if (not sep or scheme.lower() not in ("ws", "wss") or not host
            or any(ord(c) <= 32 or ord(c) == 127 for c in s)):
        raise Refused("a ws:// or wss:// URL with a host is required")
    return s


def gateway_url() -> Lenient:
    """An OCPP backend's WebSocket URL (ws:// or wss://, with a host), or "" for none."""
    return Lenient(_gateway_url, type="string", maxLength=300)


def _formula_text(value: Any) -> str:
    s = _text(value, FORMULA_LIMIT)
    if s.strip():
        compile_formula(s)
    return s


def formula() -> Lenient:
    """A formula (core/formula), kept as written; empty: none."""
    return Lenient(_formula_text, type="string", maxLength=FORMULA_LIMIT, formula=True)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def limit(lo: int, hi: int) -> Lenient:
    """A current in mA in lo..hi, or a formula that gives one (kept stripped)."""
    in_range = int_range(lo, hi).parse

    def parse(value: Any) -> int | str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(in_range(value))
        s = _text(value, FORMULA_LIMIT).strip()
        if _is_number(s):  # a number written as text (range and wholeness as numbers)
            return int(in_range(float(s)))
        compile_formula(s)
        return s

    return Lenient(parse, type=["integer", "string"], minimum=lo, maximum=hi,
                   maxLength=FORMULA_LIMIT, formula=True)


def _rule_list(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise Refused("a list of rule objects is required")
    found = validate_rules(value)
    if found:
        raise Refused("; ".join(found))
    return tuple(dict(r) for r in value)


def rule_list() -> Lenient:
    """Charging rules in the classic form: a list of rule objects (docs/rules.md)."""
    return Lenient(_rule_list, type="array", items={"type": "object"})


def _rule_set(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Refused("an object is required")
    found = validate_rules(value)
    if found:
        raise Refused("; ".join(found))
    return dict(value)


def rule_set() -> Lenient:
    """A rule set object (docs/rules.md), or null."""
    return Lenient(_rule_set, type=["object", "null"])


def _user_ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Refused("a list of user ids is required")
    out = []
    for v in value:
        if not isinstance(v, str | int) or isinstance(v, bool) or not str(v).strip():
            raise Refused(f"{v!r} is not a user id")
        out.append(str(v))
    return tuple(out)


def user_ids() -> Lenient:
    """A list of user ids."""
    return Lenient(_user_ids, type="array", items={"type": "string"})


def _meter_id(value: Any) -> str:
    s = _text(value, 16).strip()
    if s and not (s[0] in "Mm" and s[1:].isdigit()):
        raise Refused(f"{s!r} is not a meter id")
    return s.upper()


def meter_id() -> Lenient:
    """A meter's id (`M3`, any case), or "" for none."""
    return Lenient(_meter_id, type="string", maxLength=16)


def pushed(value: Any) -> float:
    """A pushed number: no meter shows more than PLAUSIBLE_LIMIT of anything."""
    v = number(value)
    if not -PLAUSIBLE_LIMIT <= v <= PLAUSIBLE_LIMIT:
        raise Refused(f"{v:g} out of range {-PLAUSIBLE_LIMIT:g}..{PLAUSIBLE_LIMIT:g}")
    return v


def triple(value: Any) -> tuple[float, float, float]:
    """Three pushed numbers: a JSON list, `230,231,229` or `[230, 231, 229]`."""
    values = [pushed(v) for v in items(value)]
    if len(values) != 3:
        raise Refused("three values are required")
    return values[0], values[1], values[2]


def cleaned(value: Any) -> str:
    """Any value as text, without surrounding quotes and spaces."""
    return clean(str(value))
