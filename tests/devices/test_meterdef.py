"""Meter definition parsing, validation, loading and storing."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargebrain.devices.meterdef import (
    MeterDefinitionError,
    MType,
    RType,
    ValueType,
    WordOrder,
    builtin_definitions_dir,
    delete_user_definition,
    json_schema,
    load_definitions,
    parse_definition,
    parse_json5,
    save_user_definition,
)
from chargebrain.devices.meterdef.charger import charger_json_schema

EA777 = """{"rtype":0,"mtype":1,"name":"EARU EA777","manufacturer":"EARU","dev_type":"EA777",
"rtu":{"silence_period":50,"silence_same_slave":false,"retries":4,"rcv_timeout":120},
"modbus_read":3,"modbus_read_max_registers":140,"modbus_write":16,
"modbus_write_max_registers":64,
"type_designation":{"address":0,"type":"string","fixed":"EA777"},
"voltage_l1":{"address":0x00,"type":"int16","resolution":0.1},
"current_l1":{"address":0x03,"type":"int16","resolution":10.0},
"power_w":{"address":0x07,"type":"int16","resolution":1.0}}"""


def error_of(text: str) -> MeterDefinitionError:
    with pytest.raises(MeterDefinitionError) as caught:
        parse_definition(text)
    return caught.value


# -- JSON5-ish syntax ---------------------------------------------------------------------


def test_json5_comments_hex_trailing_commas_and_unquoted_keys() -> None:
    text = """
    // line comment
    {
      /* block
         comment */ "a": 0x1F,   // hex
      b: -0x10,
      'c': 'single "quoted"',
      "d": [1, 2.5, -3e2, .5, +4,],   /* trailing comma in an array */
      "e": {"x": null, "y": true, "z": false,},
      "f": "esc \\" \\n \\u00e9 http://x/y",
    }
    """
    assert parse_json5(text) == {
        "a": 31,
        "b": -16,
        "c": 'single "quoted"',
        "d": [1, 2.5, -300.0, 0.5, 4],
        "e": {"x": None, "y": True, "z": False},
        "f": 'esc " \n \u00e9 http://x/y',
    }


def test_comment_markers_inside_strings_are_text() -> None:
    assert parse_json5('{"url": "http://host//x /* y */"}') == {"url": "http://host//x /* y */"}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('{\n "a": 1\n "b": 2\n}', 3, "',' or '}' expected"),
        ('{\n "a": 1,\n /* never closed\n}', 3, "never closed"),
        ('{\n "a": 1,\n "a": 2\n}', 3, "duplicate key 'a'"),
        ('{"a": 1}\n{"b": 2}', 2, "unexpected text after"),
        ('{\n "a": "bad \\q"\n}', 2, "unknown escape"),
        ('{\n "a": 0x\n}', 2, "malformed number"),
        ('{\n "a": [1, 2\n', 2, "never closed"),
        ('{\n "a": tru\n}', 2, "unexpected character"),
    ],
)
def test_syntax_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(MeterDefinitionError) as caught:
        parse_json5(text)
    assert caught.value.line == line
    assert message in str(caught.value)
    assert f"line {line}" in str(caught.value)


# -- the definition model -------------------------------------------------------------------


def test_ea777_example_parses() -> None:
    d = parse_definition(EA777)
    assert d.dev_type == "meter_EA777"
    assert d.name == "EARU EA777"
    assert d.manufacturer == "EARU"
    assert d.rtype is RType.MODBUS and d.mtype is MType.METER
    assert d.rtu.silence_period_ms == 50 and d.rtu.retries == 4 and d.rtu.rcv_timeout_ms == 120
    assert d.modbus_read == 3 and d.modbus_write == 16 and d.modbus_write_max_registers == 64
    assert d.modbus_read_max_registers == 140
    assert d.read_max_registers == 125  # the protocol limit
    assert d.variable_names == ("type_designation", "voltage_l1", "current_l1", "power_w")
    td = d.variable("type_designation")
    assert td is not None and td.fixed == "EA777" and not td.is_read and td.is_text
    v = d.variable("voltage_l1")
    assert v is not None and v.register == 0 and v.type is ValueType.INT16
    assert v.resolution == 0.1 and v.order is WordOrder.HIGH_FIRST and v.is_read
    assert v.line == 6


def test_dev_type_prefix_is_added_once() -> None:
    assert parse_definition('{"rtype": 0, "dev_type": "meter_x"}').dev_type == "meter_x"
    assert parse_definition('{"rtype": 0, "dev_type": "x"}').dev_type == "meter_x"
    assert parse_definition('{"rtype": 0, "dev_type": "x"}').name == "x"


def test_defaults_and_variable_kinds() -> None:
    d = parse_definition(
        """{
        rtype: 1, dev_type: "web", upd_delay: 500, delay_accumulated: true,
        reserved: [0xFFFF], ui_addr: "http://x/ui", future_option: 3,
        "p": {"address": "POST /api/x", "query": "a.b", "once": 1},
        "q": {"address": "/status", "regex": "P=(\\\\d+)", "type": "string"},
        "r": {"address": "http://other:81/v"},
        "s": {"expr": "p * 2 + r", "resolution": -1},
        "t": {"fixed": 230},
        "CM.var1": {"address": "/status", "query": "v"},
        "*shown": {"address": "/status", "query": "w"},
        inputs: [{"address": "/io", "query": "in", "count": 4}],
        outputs: [{"address": "/set?v=${power_w}"}, {"address": "POST /x", "body": "{}"}],
        resets: [{"address": "/set?v=0"}],
    }"""
    )
    assert d.rtype is RType.HTTP
    assert d.upd_delay_ms == 500 and d.delay_accumulated and d.reserved == (0xFFFF,)
    assert d.ui_addr == "http://x/ui"
    assert d.ignored_properties == ("future_option",)
    p = d.variable("p")
    assert p is not None and p.http is not None
    assert (p.http.method, p.http.path) == ("POST", "/api/x")
    assert p.type is ValueType.FLOAT and p.once and p.query is not None
    q = d.variable("q")
    assert q is not None and q.regex is not None and q.regex.pattern == "P=(\\d+)"
    assert q.http is not None and q.http.method == "GET"
    r = d.variable("r")
    assert r is not None and r.http is not None and r.http.path == "http://other:81/v"
    s = d.variable("s")
    assert s is not None and s.expr is not None and s.expr.names == {"p", "r"}
    assert s.resolution == -1
    t = d.variable("t")
    assert t is not None and t.fixed == 230.0 and not t.is_text
    cm, shown = d.variable("CM.var1"), d.variable("*shown")
    assert cm is not None and cm.is_cm_variable and shown is not None and shown.shown_in_tile
    assert d.input_count == 4 and d.inputs[0].http is not None
    assert [o.address for o in d.outputs] == ["/set?v=${power_w}", "POST /x"]
    assert d.outputs[1].body == "{}" and len(d.resets) == 1


def test_expression_order_puts_dependencies_first() -> None:
    d = parse_definition(
        """{"rtype": 0, "dev_type": "x",
        "c": {"expr": "b + a"}, "b": {"expr": "a * 2"}, "a": {"address": 1}}"""
    )
    assert d.expr_order == ("b", "c")


@pytest.mark.parametrize(
    ("text", "field", "line", "message"),
    [
        ('{"dev_type": "x"}', "rtype", None, "'rtype' is missing"),
        ('{"rtype": 0}', "dev_type", None, "'dev_type' is missing"),
        ('{"rtype": 5, "dev_type": "x"}', "rtype", 1, "out of range"),
        ('{"rtype": 0,\n"dev_type": "a b"}', "dev_type", 2, "letters, digits"),
        ('{"rtype": 0, "dev_type": "x", "mtype": 3}', "mtype", 1, "not one of 0, 1, 2, 4"),
        ('{"rtype": 0, "dev_type": "x", "modbus_read": 5}', "modbus_read", 1, "out of range"),
        (
            '{"rtype": 0, "dev_type": "x", "modbus_allow_gaps": "yes"}',
            "modbus_allow_gaps",
            1,
            "true or false",
        ),
        ('{"rtype": 0, "dev_type": "x",\n\n "rtu": []}', "rtu", 3, "must be an object"),
        (
            '{"rtype": 0, "dev_type": "x",\n "v": {\n  "address": 1,\n  "type": "int8"}}',
            "v.type",
            4,
            "unknown type 'int8'",
        ),
        (
            '{"rtype": 0, "dev_type": "x",\n "v": {"address": 1, "scale": 2}}',
            "v.scale",
            2,
            "unknown variable property 'scale'",
        ),
        ('{"rtype": 0, "dev_type": "x", "v": {"type": "int16"}}', "v", 1, "needs an 'address'"),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"address": "/x"}}',
            "v.address",
            1,
            "must be an integer",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"address": 70000}}',
            "v.address",
            1,
            "out of range",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"address": 1, "query": "a"}}',
            "v.query",
            1,
            "HTTP and MQTT",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"address": 1, "type": "string"}}',
            "v",
            1,
            "needs 'length'",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "modbus_read_max_registers": 10,\n'
            ' "v": {"address": 1, "type": "string", "length": 11}}',
            "v.length",
            2,
            "out of range 1..10",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"address": 0xFFFF, "type": "int32"}}',
            "v.address",
            1,
            "past 65535",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"address": 1, "resolution": 0}}',
            "v.resolution",
            1,
            "must not be 0",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"address": 1, "order": "ba"}}',
            "v.order",
            1,
            '"hl" or "lh"',
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"address": 1, "length": 3}}',
            "v.length",
            1,
            "must be 2 (a.b) or 4",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"address": 1, "reserved": ["x"]}}',
            "v.reserved[0]",
            1,
            "must be integers",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"address": 1, "reserved": {}}}',
            "v.reserved",
            1,
            "must be integers, not an object",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"expr": "a + M1.power_w"}, "a": {"address": 1}}',
            "v.expr",
            1,
            "refers to 'M1.power_w'",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"expr": "foo(a)"}, "a": {"address": 1}}',
            "v.expr",
            1,
            "unknown function 'foo'",
        ),
        (
            '{"rtype": 0, "dev_type": "x",\n "v": {"expr": "a +"}, "a": {"address": 1}}',
            "v.expr",
            2,
            "expression 'a +': unexpected end of formula at position 4",
        ),
        (
            '{"rtype": 0, "dev_type": "x",\n "a": {"expr": "b"},\n "b": {"expr": "a + 1"}}',
            "a.expr",
            2,
            "circle: a -> b -> a",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"expr": "s"}, "s": {"fixed": "text"}}',
            "v.expr",
            1,
            "which is text",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "v": {"fixed": [1]}}',
            "v.fixed",
            1,
            "string or a number",
        ),
        (
            '{"rtype": 1, "dev_type": "x", "v": {"address": "status"}}',
            "v.address",
            1,
            "must start with '/'",
        ),
        (
            '{"rtype": 1, "dev_type": "x", "v": {"address": 5}}',
            "v.address",
            1,
            "HTTP address must be",
        ),
        (
            '{"rtype": 1, "dev_type": "x", "v": {"address": "/s", "query": "a[x]"}}',
            "v.query",
            1,
            "bad index",
        ),
        (
            '{"rtype": 1, "dev_type": "x", "v": {"address": "/s", "regex": "(a"}}',
            "v.regex",
            1,
            "bad regular expression",
        ),
        (
            '{"rtype": 0, "dev_type": "x", "inputs": [{"address": 1, "count": 16},'
            ' {"address": 2, "count": 16}, {"address": 3}]}',
            "inputs",
            1,
            "more than 32",
        ),
        ('{"rtype": 0, "dev_type": "x", "inputs": {}}', "inputs", 1, "must be an array"),
        (
            '{"rtype": 0, "dev_type": "x", "outputs": [{"url": "/x"}]}',
            "outputs[0].url",
            1,
            "unknown property 'url'",
        ),
        ("[1, 2]", None, 1, "one JSON object"),
        (
            '{"rtype": 0, "dev_type": "x", "A": {"address": 1}, "a": {"address": 2},\n'
            ' "v": {"expr": "a * 2"}}',
            "v.expr",
            2,
            "'a' may mean 'A', 'a'",
        ),
        (
            '{"rtype": 1, "dev_type": "x",\n "outputs": [{"address": "/set?p=${power_w +}"}]}',
            "outputs[0].address",
            2,
            "expression 'power_w +': unexpected end of formula",
        ),
        (
            '{"rtype": 1, "dev_type": "x", "resets": [{"address": "/a", "body": "${if x`1"}]}',
            "resets[0].body",
            1,
            "needs the form ${if expr`yes`no}",
        ),
        (
            '{"rtype": 1, "dev_type": "x", "outputs": [{"address": "/a?v=${x"}]}',
            "outputs[0].address",
            1,
            "'${' at position 6 is never closed",
        ),
    ],
)
def test_validation_errors_name_line_and_field(
    text: str, field: str | None, line: int | None, message: str
) -> None:
    error = error_of(text)
    assert error.field == field
    assert error.line == line
    assert message in str(error)
    if field:
        assert f"field '{field}'" in str(error)


def test_empty_and_oversized_and_binary_texts() -> None:
    assert "empty" in str(error_of("  // nothing\n"))
    assert "empty" in str(error_of("   "))
    assert "too large" in str(error_of('{"rtype": 0, "dev_type": "x"}' + " " * 600_000))
    with pytest.raises(MeterDefinitionError, match="not UTF-8"):
        parse_definition(b"\xff\xfe{")
    d = parse_definition('\ufeff{"rtype": 0, "dev_type": "bom"}'.encode())
    assert d.dev_type == "meter_bom"


def test_expressions_are_bounded_per_definition() -> None:
    # 200 expression variables, then outputs with an expression in address and body: the
    # 29th output's address is the 257th expression (257 variables would be too many).
    many = ",\n".join(f'"e{i}": {{"expr": "a + {i}"}}' for i in range(200))
    outputs = ",\n".join('{"address": "/x?v=${a}", "body": "${a + 1}"}' for _ in range(32))
    error = error_of('{"rtype": 1, "dev_type": "x", "a": {"address": "/a"},\n' + many
                     + ',\n"outputs": [\n' + outputs + "]}")
    assert error.field == "outputs[28].address" and error.line == 231
    assert "more than 256 expressions" in str(error)
    long = " + ".join(["a"] * 2000)  # 7999 characters, a valid formula on its own
    three = ",".join(f'"e{i}": {{"expr": "{long}"}}' for i in range(3))
    error = error_of('{"rtype": 0, "dev_type": "x", "a": {"address": 1}, ' + three + "}")
    assert error.field == "e2.expr" and "16384 characters" in str(error)


def test_outputs_keep_their_text_and_compile_their_expressions() -> None:
    d = parse_definition(
        """{"rtype": 1, "dev_type": "x", "p": {"address": "/s"},
        outputs: [{"address": "#5#/set?v=${CM.var1 * 2}&on=${if M1.power_w > 0`1`0}&d=${id}"}]}"""
    )
    out = d.outputs[0]
    assert out.address.startswith("#5#/set?v=${CM.var1 * 2}")
    assert out.address_template is not None
    assert {f.text for f in out.address_template.formulas} == {"CM.var1 * 2", "M1.power_w > 0"}


def test_unknown_global_properties_are_listed_not_refused() -> None:
    d = parse_definition('{"rtype": 0, "dev_type": "x", "variables": 5, "future": "y"}')
    assert d.ignored_properties == ("variables", "future")
    d = parse_definition('{"rtype": 0, "dev_type": "x", "variables": {"address": 3}}')
    assert d.variable_names == ("variables",)
    # Settings objects are lenient too: keys of newer versions are ignored.
    d = parse_definition('{"rtype": 0, "dev_type": "x", "rtu": {"retries": 2, "parity": "N"}}')
    assert d.rtu.retries == 2


def test_computed_variables_ignore_where_they_would_be_read_from() -> None:
    # The vendor's own example gives a `fixed` variable an `address`; it is not read.
    d = parse_definition(
        '{"rtype": 1, "dev_type": "x", "t": {"fixed": "X", "address": 0, "query": 5}}'
    )
    t = d.variable("t")
    assert t is not None and t.fixed == "X" and t.http is None and t.query is None


def test_of_several_problems_the_first_in_the_file_is_reported() -> None:
    error = error_of(
        '{"rtype": 0, "dev_type": "x",\n "v": {"address": 70000},\n "modbus_read": 5}'
    )
    assert (error.line, error.field) == (2, "v.address")
    error = error_of('{"rtype": 0,\n "v": {"address": -1}}')
    assert (error.line, error.field) == (None, "dev_type")  # the whole file's first


@pytest.mark.parametrize(("rtype", "variable"), [(0, "ModbusVariable"), (1, "HttpVariable")])
def test_json_schema_of_the_file(rtype: int, variable: str) -> None:
    schema = json_schema(rtype)
    props = schema["properties"]
    assert schema["required"] == ["rtype", "dev_type"]
    assert props["modbus_read"]["enum"] == [3, 4]
    assert props["upd_delay"]["maximum"] == 3_600_000
    assert "variables" not in props
    assert schema["additionalProperties"]["anyOf"][0] == {"$ref": f"#/$defs/{variable}"}
    var = schema["$defs"][variable]["properties"]
    assert var["resolution"]["description"].startswith("Multiplier")
    address_type = var["address"]["anyOf"][0] if rtype == 0 else var["address"]
    assert address_type["type"] == ("integer" if rtype == 0 else "string")
    # Every key of the bundled files is a property or a variable.
    for path in builtin_definitions_dir().glob("*.json"):
        doc = parse_json5(path.read_text(encoding="utf-8"))
        if doc["rtype"] == rtype:
            known = charger_json_schema(rtype)["properties"] if doc.get("mtype") == 8 else props
            assert all(k in known or isinstance(v, dict) for k, v in doc.items()), path.name


def test_json_schema_of_a_charger_file() -> None:
    props = charger_json_schema(0)["properties"]
    assert {"set_current", "disable", "keepalive_s", "init"} <= set(props)
    assert props["mtype"]["enum"] == [0, 1, 2, 4, 8]


def test_source_is_prefixed_to_messages() -> None:
    with pytest.raises(MeterDefinitionError) as caught:
        parse_definition('{"rtype": 0}', source="mine.json")
    assert str(caught.value).startswith("mine.json, field 'dev_type': ")


# -- files ----------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_definitions_load() -> None:
    defs = load_definitions(builtin_definitions_dir(), None)
    assert {"meter_sdm630", "meter_abb_b23_b24", "meter_shelly_3em_http_json"} <= set(defs)
    sdm = defs["meter_sdm630"]
    assert sdm.modbus_read == 4 and sdm.modbus_allow_gaps
    current = sdm.variable("current_l1")
    assert current is not None and current.register == 0x06 and current.resolution == 1000
    abb = defs["meter_abb_b23_b24"]
    imp = abb.variable("import_wh")
    assert imp is not None and imp.register == 0x5000 and imp.type is ValueType.UINT64
    assert defs["meter_shelly_3em_http_json"].rtype is RType.HTTP
    assert load_definitions() == defs


def test_user_files_override_bundled_ones(tmp_path: Path) -> None:
    builtin, user = tmp_path / "builtin", tmp_path / "user"
    write(builtin / "a.json", '{"rtype": 0, "dev_type": "a", "name": "A builtin"}')
    write(builtin / "b.json", '{"rtype": 0, "dev_type": "b", "name": "B builtin"}')
    write(user / "mine.json", '{"rtype": 0, "dev_type": "meter_a", "name": "A user"}')
    write(user / "c.json", '{"rtype": 1, "dev_type": "c"}')
    write(user / "notes.txt", "not a definition")
    defs = load_definitions(builtin, user)
    assert {k: v.name for k, v in defs.items()} == {
        "meter_a": "A user",
        "meter_b": "B builtin",
        "meter_c": "c",
    }


def test_broken_user_file_is_skipped_and_reported(tmp_path: Path) -> None:
    builtin, user = tmp_path / "builtin", tmp_path / "user"
    write(builtin / "a.json", '{"rtype": 0, "dev_type": "a"}')
    write(user / "bad.json", '{"rtype": 0,\n "dev_type": "b",\n "v": {"address": -1}}')
    errors: list[MeterDefinitionError] = []
    defs = load_definitions(builtin, user, errors=errors)
    assert set(defs) == {"meter_a"}
    assert len(errors) == 1
    assert str(errors[0]).startswith("bad.json, line 3, field 'v.address'")


def test_broken_bundled_file_raises(tmp_path: Path) -> None:
    write(tmp_path / "bad.json", '{"rtype": 0}')
    with pytest.raises(MeterDefinitionError, match=r"bad\.json"):
        load_definitions(tmp_path, None)


def test_duplicate_dev_types(tmp_path: Path) -> None:
    write(tmp_path / "b" / "one.json", '{"rtype": 0, "dev_type": "x"}')
    write(tmp_path / "b" / "two.json", '{"rtype": 0, "dev_type": "x"}')
    with pytest.raises(MeterDefinitionError, match="defined twice"):
        load_definitions(tmp_path / "b", None)
    # Among user files, the one named after the dev_type wins.
    write(tmp_path / "u" / "meter_y.json", '{"rtype": 0, "dev_type": "y", "name": "canonical"}')
    write(tmp_path / "u" / "zzz.json", '{"rtype": 0, "dev_type": "y", "name": "other"}')
    defs = load_definitions(tmp_path / "missing", tmp_path / "u")
    assert defs["meter_y"].name == "canonical"


def test_save_user_definition_writes_atomically(tmp_path: Path) -> None:
    user = tmp_path / "user" / "defs"
    text = '// my meter\n{"rtype": 0, "dev_type": "EA777", "name": "first"}'
    d = save_user_definition(user, text)
    assert d.dev_type == "meter_EA777"
    target = user / "meter_EA777.json"
    assert target.read_text(encoding="utf-8") == text  # stored as uploaded, comments and all
    second = text.replace("first", "second")
    assert save_user_definition(user, second.encode()).name == "second"
    assert target.read_text(encoding="utf-8") == second
    assert sorted(p.name for p in user.iterdir()) == ["meter_EA777.json"]
    assert load_definitions(tmp_path / "none", user)["meter_EA777"].name == "second"


def test_save_user_definition_changes_nothing_on_error(tmp_path: Path) -> None:
    user = tmp_path / "user"
    save_user_definition(user, '{"rtype": 0, "dev_type": "x"}')
    before = {p.name: p.read_bytes() for p in user.iterdir()}
    with pytest.raises(MeterDefinitionError, match="unknown type"):
        save_user_definition(
            user, '{"rtype": 0, "dev_type": "x", "v": {"address": 1, "type": "bad"}}'
        )
    with pytest.raises(MeterDefinitionError):
        save_user_definition(tmp_path / "never", "{")
    assert {p.name: p.read_bytes() for p in user.iterdir()} == before
    assert not (tmp_path / "never").exists()


def test_delete_user_definition(tmp_path: Path) -> None:
    save_user_definition(tmp_path, '{"rtype": 0, "dev_type": "x"}')
    assert delete_user_definition(tmp_path, "x")
    assert not delete_user_definition(tmp_path, "meter_x")
    assert not delete_user_definition(tmp_path, "../etc")
    assert list(tmp_path.iterdir()) == []
