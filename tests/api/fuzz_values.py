"""Hostile values for the HTTP fuzzer: query texts, raw query bytes, JSON values.

Values are what a careless or malicious client sends: numbers as text in every spelling
(`NaN`, `1e999`, `0x` and 400 hex digits, `6000.0`, Arabic digits), texts with NUL, lone
surrogates and thousands of characters, formulas that do not compile, raw query bytes
that are no UTF-8 (`%ED%A0%80`, an overlong `%C0%AF`) or no escape at all (`%zz`), and
JSON with NaN, numbers of 400 digits and deep nesting. Ids of devices, users, cards,
variables and meter types that the fuzzer's setup creates are mixed in, so requests also
reach the code behind "no such device".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from chargebrain.api.known_keys import device_keys
from chargebrain.api.shapes.site import SiteBody
from chargebrain.api.shapes.users import CARD_KEYS, USER_KEYS


@dataclass(frozen=True)
class RawPart:
    """Bytes put into a query as they are (no percent-encoding)."""

    data: bytes


QueryValue = str | RawPart


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A value of one of the strategies, chosen by weight (`st.one_of` flattens nested
    choices into one flat list and weighs every branch alike)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)

# What the fuzzer's setup creates (tests/api/fuzz_target.py), and neighbours that do not
# exist.
EXISTING_DEVICES = ("E1", "E2", "E3", "E5", "M1", "M2", "M3", "M4", "M5")
DEVICE_IDS = (*EXISTING_DEVICES * 3, "E9", "M9", "e2", " E2 ", "E0", "E99999999999")
USER_IDS = ("1000000001", "1000000002", "fuzz_user", "9999999999", "0", "-", "a" * 64,
            "a" * 65, "x y")
RFIDS = ("4711", "CARD2", "card2", " 4711 ", "0815", "x" * 64, "x" * 65, "a b")
CM_NAMES = ("a", "b", "Pv", "_flag3", "_price", "_set_price", "my_var", "1abc", "a.b", "")
DEV_TYPES = ("evse_ajax", "meter_ajax", "evse_group", "evse_powerbrain", "meter_powerbrain",
             "meter_expression", "meter_virtual_surplus", "meter_fuzzdef", "fuzzdef",
             "meter_nothing", "meter_sdm630")
METER_DEF_TYPES = ("fuzzdef", "fuzz2", "meter_fuzz3", "sdm630")
ADDRESSES = ("", "127.0.0.1:9", "127.0.0.1", "[::1]:9", "evse:", "meter1:", "meter2:",
             "evse", "127.0.0.1:99999", ":")
FORMULAS = ("CM.a + 1", "M1.power_w / 2", "max(1, 2", "E2.power_w > 100", "1/0", "E1.",
            "(" * 70 + "1" + ")" * 70, "-" * 70 + "1", "1e308 * 1e308", "_flag1", "if(1,2,3)",
            "CM.nothing", "x" * 5000, "1 +", "\u00e4", "M9.power_w", "abs(-5)")
SPECIAL_NUMBERS = ("NaN", "nan", "-nan", "inf", "-inf", "Infinity", "-Infinity", "1e999",
                   "-1e999", "1e-999", "1e308", "-1e308", "0x7fffffff", "-0x10",
                   "0x" + "f" * 400, "9" * 400, "9" * 5000, "6000.0", " 6000 ", '"6000"',
                   '6000"', "1_000", "\u0661\u0662", "0b101", "-0", "+5", ".5", "5.", "0",
                   "-1", "1", "2", "16000", "1e3", "4294967296", "18446744073709551616", "",
                   "12abc", "0x", "--1")
HOSTILE_TEXTS = ("\x00", "a\x00b", "\ud800", "a\udc80b", "\udbff", "\ufeff", "\u202e",
                 "'; DROP TABLE users; --", "<script>", "%s%n", "../../etc/passwd", " ",
                 "\t\r\n", "a" * 300, "x" * 5000, "\u00e9" * 2000, "\U0001f697",
                 "null", "[]", "{}", "true")
RAW_FRAGMENTS = (b"%00", b"%ff", b"%FF%FE", b"%ED%A0%80", b"%C0%AF", b"%E0%80%80",
                 b"%F4%90%80%80", b"%", b"%zz", b"%2", b"&", b"=", b"==", b"&&", b"+",
                 b"%20", b"%26", b"%3D", b"%3d", b"#", b"?", b"\xc3\xa4", b"\xff", b"\x00",
                 b"[", b"]", b"\\", b'"', b"%25", b";")

numbers = st.one_of(
    st.sampled_from(SPECIAL_NUMBERS),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
)
texts = st.one_of(st.text(max_size=24), st.sampled_from(HOSTILE_TEXTS))
bools = st.sampled_from(["1", "0", "true", "false", "yes", "no", "on", "off", "maybe", "2",
                         "-1", "", "TRUE", " 1 "])
lists = st.one_of(
    st.lists(numbers, max_size=5).map(",".join),
    st.lists(numbers, max_size=5).map(lambda v: "[" + ",".join(v) + " ]"),
    st.sampled_from(["[", "]", "[[1]]", ",,,", "1,2", "230,231,229", "[7,230,230,230 ]",
                     "1," * 2000]),
)
registers = st.one_of(
    st.sampled_from(["8000", "8000d", "8000q", "8000s", "all", "ALL", "0x1F40", "65535",
                     "65536", "-1", "8094", "8092", "8093", "8087", "8044", "8050", "8058",
                     "8096s", "8062d", "8000x", "d", "", "80 00"]),
    st.integers(-10, 70_000).map(str),
)
flags = st.one_of(st.sampled_from(["C", "c", "E", "e", "U", "u", "Cu", "CcEeUu", "X", "",
                                   "C" * 1000]),
                  st.text(alphabet="CcEeUuXx ", max_size=8))
passwords = st.sampled_from(["", "fuzz admin pw", "wrong", "x" * 257, "a\x01b", "\u00e9\u00e9"])
query_any: st.SearchStrategy[QueryValue] = st.one_of(
    numbers, texts, st.sampled_from(FORMULAS),
    st.lists(st.sampled_from(RAW_FRAGMENTS), min_size=1, max_size=4).map(
        lambda parts: RawPart(b"".join(parts))),
)

_QUERY_VALUES: dict[str, st.SearchStrategy[QueryValue]] = {
    "dev_id": st.sampled_from(DEVICE_IDS), "device": st.sampled_from(
        ["evse", "meter1", "meter2", "EVSE", " evse", "meter3"]),
    "read": registers, "write": registers, "count": numbers, "value": numbers,
    "values": lists, "flags": flags, "mamps": numbers, "rfid": st.sampled_from(RFIDS),
    "val": st.one_of(numbers, st.sampled_from(FORMULAS)), "expr": st.sampled_from(FORMULAS),
    "name": st.sampled_from(CM_NAMES), "id": st.sampled_from(USER_IDS),
    "user_id": st.sampled_from(USER_IDS), "acc": bools, "allow_usage_stats": bools,
    "enable": bools, "clear": bools, "tmp": bools, "is_va": bools,
    "new_pwd": passwords, "old_pwd": passwords, "dev_type": st.sampled_from(DEV_TYPES),
    "current": lists, "voltage": lists, "state": numbers, "model": texts,
    # modbus_get / modbus_set: devices that fail fast (nothing listens there)
    "addr": st.sampled_from(["127.0.0.1:1", "rtu://127.0.0.1:1", "[::1]:1", "/dev/null,9600",
                             "COM3,9600,8,N,1", "127.0.0.1:0", "rtu:127.0.0.1:1", ""]),
    "func": st.sampled_from(["3", "4", "6", "16", "5", "x"]), "reg": registers,
    "type": st.sampled_from(["w", "d", "f", "q", "s", "z"]), "cnt": numbers,
    "order": st.sampled_from(["hl", "lh", "x"]), "timeout": st.sampled_from(["0.2", "9", "x"]),
}


#: Where one command wants devices of one kind: the HTTP-input ones for pushes, EVSEs for
#: sessions.
_EVSES = st.sampled_from(["E1", "E2", "E3", "E5", "M3"])
_COMMAND_VALUES: dict[tuple[str, str], st.SearchStrategy[QueryValue]] = {
    ("set_ajax_meter", "dev_id"): st.sampled_from(["M3", "M3", "M3", "M4", "E2"]),
    ("set_ajax_evse", "dev_id"): st.sampled_from(["E2", "E2", "E3", "E3", "E1", "M3"]),
    ("enter_rfid", "dev_id"): _EVSES, ("override_device", "dev_id"): _EVSES,
    ("soft_meter", "dev_id"): _EVSES,
}


def query_value(name: str, cmd: str = "") -> st.SearchStrategy[QueryValue]:
    """A value for the query parameter `name` of `cmd`: mostly one that fits, or anything."""
    fitting = _COMMAND_VALUES.get((cmd, name), _QUERY_VALUES.get(name))
    return query_any if fitting is None else weighted((3, fitting), (1, query_any))


# --- JSON ---------------------------------------------------------------------------------

json_numbers = st.one_of(
    st.integers(-(10**20), 10**20), st.floats(),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64, 0, 1, -1, 6000, 16000, 1e308]),
)
json_leaves = st.one_of(
    st.none(), st.booleans(), json_numbers, texts, st.sampled_from(DEVICE_IDS),
    st.sampled_from(FORMULAS), st.sampled_from(SPECIAL_NUMBERS),
)
json_any = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=10,
)


class Pairs(list[tuple[str, Any]]):
    """A JSON object as its key-value pairs, in order: a key may come twice."""


def _pairs(keys: frozenset[str], value_for: Any) -> st.SearchStrategy[Pairs]:
    """Key-value pairs of an object: known keys with values that fit them or not, and
    unknown keys."""
    key = weighted((4, st.sampled_from(sorted(keys))), (1, st.text(max_size=10)))
    return st.lists(key.flatmap(lambda k: st.tuples(st.just(k), value_for(k))),
                    max_size=6).map(Pairs)


def _pairs_dict(keys: frozenset[str], value_for: Any) -> st.SearchStrategy[dict[str, Any]]:
    return _pairs(keys, value_for).map(dict)


RULE_KEYS = frozenset({"days", "mode", "udur", "time", "dur", "price_level", "current", "solar",
                       "enabled", "expr", "input", "comment"})
PROGRAM_RULE_KEYS = frozenset({"days", "ctype", "atype", "time", "dur", "udur", "flags", "id",
                               "ena", "cmt", "cexpr", "aexpr"})


def _rule_value(key: str) -> st.SearchStrategy[Any]:
    if key in ("expr", "cexpr", "aexpr", "input"):
        return weighted((3, st.sampled_from(FORMULAS)),
                        (1, st.sampled_from(["PB.input1 1", "M1.x 0"])), (1, json_leaves))
    return weighted((3, json_numbers), (1, json_leaves))


rules = st.one_of(st.lists(_pairs_dict(RULE_KEYS, _rule_value), max_size=3), json_any)
crule_sets = st.one_of(
    st.fixed_dictionaries(
        {"rule_set": st.dictionaries(st.sampled_from(["1", "2", "x"]),
                                     st.lists(_pairs_dict(PROGRAM_RULE_KEYS, _rule_value),
                                              max_size=3), max_size=2)},
        optional={"selected_id": json_leaves}),
    json_any,
)
FORMULA_KEYS = frozenset({"max_total_current", "max_total_evse_current", "max_charging_cur",
                          "surplus_expr", "expr"})
BOOL_KEYS = frozenset({"lb_enabled", "imbalance_add", "reduce_on_com_err", "device_enabled",
                       "enable_snooze", "enable_wakeup", "invert", "is_va", "display",
                       "ac_auth", "ac_ovch", "phase_switch_plugged"})


def _card_value(key: str) -> st.SearchStrategy[Any]:
    if key == "id":
        return weighted((3, st.sampled_from(RFIDS)), (1, json_leaves))
    return weighted((2, st.booleans()), (1, json_numbers), (1, json_leaves))


cards = _pairs_dict(CARD_KEYS, _card_value)


def device_doc() -> st.SearchStrategy[dict[str, Any]]:
    keys = device_keys("evse") | device_keys("meter") | device_keys("group")
    return _pairs_dict(keys, field_value)


def field_value(key: str) -> st.SearchStrategy[Any]:
    """A JSON value for a field of a settings object: usually one that fits, or anything."""
    fitting: st.SearchStrategy[Any]
    if key in ("dev_id", "attach"):
        fitting = st.sampled_from(DEVICE_IDS)
    elif key == "dev_type":
        fitting = st.sampled_from(DEV_TYPES)
    elif key == "address":
        fitting = st.sampled_from(ADDRESSES)
    elif key in FORMULA_KEYS:
        fitting = st.one_of(st.sampled_from(FORMULAS), json_numbers)
    elif key in BOOL_KEYS:
        fitting = st.one_of(st.booleans(), st.sampled_from([0, 1, "1", "yes", 2]))
    elif key == "charging_rules":
        fitting = rules
    elif key == "crule_set":
        fitting = crule_sets
    elif key in ("users", "dev_ids"):
        fitting = st.lists(st.sampled_from(USER_IDS + DEVICE_IDS), max_size=4)
    elif key == "rfids":
        fitting = st.lists(cards, max_size=3)
    elif key == "devices":
        fitting = st.lists(device_doc(), max_size=2)
    elif key == "id":
        fitting = st.one_of(st.sampled_from(USER_IDS), st.integers(-1, 300))
    elif key == "vars":
        fitting = st.lists(_pairs_dict(frozenset({"name", "expr", "val"}), field_value),
                           max_size=3)
    elif key == "name":
        fitting = st.one_of(st.sampled_from(CM_NAMES), texts)
    elif key in ("current", "voltage"):
        fitting = st.one_of(st.lists(json_numbers, max_size=4), lists)
    else:
        fitting = st.one_of(json_numbers, st.sampled_from(SPECIAL_NUMBERS))
    return weighted((6, fitting), (1, json_leaves), (1, json_any))


SITE_KEYS = frozenset(SiteBody.model_fields) | {"devices", "version", "time", "vsn"}
AJAX_METER_KEYS = frozenset({"current", "voltage", "is_va", "power_w", "power_va", "import_wh",
                             "import_vah", "export_wh", "soc", "model"})
AJAX_EVSE_KEYS = frozenset({"state", "current", "max_charging_current", "total_energy",
                            "power_w", "rfid", "model"})
#: The JSON object each command reads, as key-value pairs (so a key may come twice).
BODY_OBJECTS: dict[str, st.SearchStrategy[Pairs]] = {
    "set_params": _pairs(SITE_KEYS, field_value),
    "set_device": st.one_of(
        _pairs(device_keys("evse") | device_keys("meter") | device_keys("group"), field_value),
        st.lists(device_doc(), max_size=2).map(lambda docs: Pairs([("devices", docs)]))),
    "set_user": _pairs(USER_KEYS, field_value),
    "set_cm_vars": _pairs(frozenset({"vars"}), field_value),
    "set_ajax_meter": _pairs(AJAX_METER_KEYS, field_value),
    "set_ajax_evse": _pairs(AJAX_EVSE_KEYS, field_value),
}

# --- meter definitions --------------------------------------------------------------------

_VARIABLE_KEYS = frozenset({"fixed", "expr", "type", "resolution", "once", "address", "query",
                            "order", "length", "regex", "reserved"})


def _variable_value(key: str) -> st.SearchStrategy[Any]:
    fitting: st.SearchStrategy[Any] = {
        "fixed": json_numbers,
        "expr": st.sampled_from(["a + 1", "power_w * 2", "(1", "x(", "1e999", "a / 0",
                                 "(" * 70 + "1" + ")" * 70, "-" * 300 + "1",
                                 "+".join(["1"] * 300)]),
        "type": st.sampled_from(["int16", "uint32", "float", "string", "int8", "INT64"]),
        "address": st.one_of(st.integers(-1, 70_000), st.sampled_from(
            ["/x", "GET /status", "POST /a", "http://127.0.0.1:9/x", "ftp://x", ""])),
        "query": st.sampled_from(["a.b", "a[0]", 'a[{"id":1}].v', "a[", "[" * 100, "."]),
        "regex": st.sampled_from(["(\\d+)", "(", "(" * 3000 + ")" * 3000, "a{99999999999}",
                                  "(?P<x>", "[z-a]"]),
    }.get(key, json_numbers)
    return weighted((4, fitting), (1, json_leaves))


_DEFINITION_KEYS = frozenset({"rtype", "mtype", "name", "manufacturer", "dev_type", "reserved",
                              "modbus_read_max_registers", "power_w", "current_l1", "import_wh",
                              "voltage_l1", "a", "inputs", "outputs"})


def _definition_value(key: str) -> st.SearchStrategy[Any]:
    if key == "rtype":
        return weighted((4, st.sampled_from([0, 1, 2])), (1, json_leaves))
    if key == "dev_type":
        return weighted((4, st.sampled_from(METER_DEF_TYPES)), (1, texts))
    if key in ("power_w", "current_l1", "import_wh", "voltage_l1", "a"):
        return weighted((4, _pairs_dict(_VARIABLE_KEYS, _variable_value)), (1, json_leaves))
    return st.one_of(json_leaves, json_any)


meter_definitions = st.fixed_dictionaries(
    {"rtype": st.sampled_from([0, 1, 2]), "dev_type": st.sampled_from(METER_DEF_TYPES)}
).flatmap(lambda base: _pairs(_DEFINITION_KEYS, _definition_value).map(
    lambda pairs: Pairs([*base.items(), *pairs])))
