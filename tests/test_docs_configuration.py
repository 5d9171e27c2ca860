"""docs/configuration.md keeps up with the code.

Every site parameter, device field, dev_type and meter role the code knows is in the
reference's tables (and nothing the code does not know). The settings are those the
declared shapes of api/shapes/ have: the defaults written there are the shapes' (and the
dataclasses') defaults, the ranges are those the shapes accept and their JSON Schema
states, the meanings are the fields' descriptions (what get_config_schema shows the web
UI), and so are the units. Every key the API shows is explained, and the document's links
lead somewhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from chargebrain.api import known_keys
from chargebrain.api.cmd_manager import params_answer
from chargebrain.api.errors import ApiError
from chargebrain.api.lenient import Body, check
from chargebrain.api.shapes.devices import (
    CommonSettings,
    EvseSettings,
    GroupSettings,
    MeterSettings,
)
from chargebrain.api.shapes.schema import config_schema
from chargebrain.api.shapes.site import (
    HARDWARE_KEYS,
    PERSISTED_KEYS,
    SITE_KEYS,
    STATE_KEYS,
    WATT_ALIASES,
    SiteBody,
)
from chargebrain.clock import VirtualClock
from chargebrain.devices.meterdef import builtin_definitions_dir, load_definitions
from chargebrain.devices.registry import STATIC_TYPES, DeviceTypes
from chargebrain.manager import config as C
from chargebrain.manager.assembly import build_manager
from chargebrain.manager.config import DeviceConfig, SiteParams
from chargebrain.manager.persistence import ManagerStore
from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.powerbrain.phase_switch import PhaseSwitchSettings
from chargebrain.store.db import Store
from tests.conftest import ROOT

DOCS = ROOT / "docs"
DOC = DOCS / "configuration.md"
TEXT = DOC.read_text(encoding="utf-8")

#: Fields whose "Default" cell says in words what a new device gets.
DEFAULTS_IN_WORDS = {"name"}  # a new device is named after its id


def section(heading: str) -> str:
    """The text under `heading` (a whole heading line) up to the next heading of the same
    or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = TEXT.splitlines()
    start = lines.index(heading) + 1
    end = len(lines)
    for i in range(start, len(lines)):
        m = re.match(r"(#+) ", lines[i])
        if m and len(m.group(1)) <= level:
            end = i
            break
    return "\n".join(lines[start:end])


def table(text: str) -> list[dict[str, str]]:
    """The first Markdown table in `text`, one dict per row keyed by the header."""
    rows: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    assert len(rows) >= 3, "no table found"

    def cells(line: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]

    header = cells(rows[0])
    out = []
    for line in rows[2:]:
        values = cells(line)
        assert len(values) == len(header), f"row has {len(values)} cells: {line}"
        out.append(dict(zip(header, values, strict=True)))
    return out


def names(cell: str) -> list[str]:
    """The backticked names in a table cell (`a`, `b`), without placeholders."""
    return [n for n in re.findall(r"`([^`]+)`", cell) if "<" not in n]


def by_name(rows: list[dict[str, str]], column: str = "Name") -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        for name in names(row[column]):
            assert name not in out, f"{name} is documented twice"
            out[name] = row
    return out


def documented_default(cell: str) -> Any:
    m = re.match(r"`([^`]*)`", cell)
    assert m, f"default {cell!r} is not a JSON value in backticks"
    return json.loads(m.group(1))


def plain(value: Any) -> Any:
    """A default as the API shows it (tuples are JSON lists)."""
    return list(value) if isinstance(value, tuple) else value


def own_fields(shape: type[Body]) -> list[str]:
    """The fields `shape` declares itself (not those of the common base)."""
    inherited = set(CommonSettings.model_fields) if shape is not CommonSettings else set()
    return [name for name in shape.model_fields if name not in inherited]


SITE_ROWS = by_name(table(section("## Site parameters")))
#: Each device table: its fields, the shape that checks them, its schema in the answer.
DEVICE_TABLES: dict[str, tuple[type[Body], str]] = {
    "### Fields of every device": (CommonSettings, "evse"),
    "### EVSE fields": (EvseSettings, "evse"),
    "### Meter fields": (MeterSettings, "meter"),
    "### EVSE group fields": (GroupSettings, "group"),
}
SCHEMA = config_schema()


def test_every_site_parameter_is_documented_and_nothing_else() -> None:
    settable = set(SITE_KEYS) | set(HARDWARE_KEYS)
    assert settable == set(SCHEMA["site"]["properties"])
    assert settable - set(SITE_ROWS) == set(), "site parameters missing from the doc"
    assert set(SITE_ROWS) - settable - set(STATE_KEYS) == set()


def test_site_defaults_and_persistence_are_those_of_the_code() -> None:
    site = SiteParams()
    hardware = PhaseSwitchSettings()
    properties = SCHEMA["site"]["properties"]
    for name in SITE_KEYS:
        row = SITE_ROWS[name]
        assert documented_default(row["Default"]) == getattr(site, name), name
        assert properties[name]["default"] == getattr(site, name), name
        assert row["Persisted"].startswith("yes") == (name in PERSISTED_KEYS), name
    assert [hardware.plugged, hardware.cp_off_s] == [
        documented_default(SITE_ROWS[name]["Default"]) for name in HARDWARE_KEYS]
    for name in HARDWARE_KEYS:
        assert properties[name]["default"] == documented_default(SITE_ROWS[name]["Default"])
        assert SITE_ROWS[name]["Persisted"].startswith("yes"), name


def test_watt_names_stand_for_the_currents_they_convert_to() -> None:
    rows = by_name(table(section("### 1.x watt names")), "1.x name")
    for watts, current in WATT_ALIASES.items():
        assert names(rows[watts]["Stands for"]) == [current], watts


@pytest.mark.parametrize("heading", list(DEVICE_TABLES))
def test_every_device_field_is_documented_and_nothing_else(heading: str) -> None:
    rows = by_name(table(section(heading)))
    shape, kind = DEVICE_TABLES[heading]
    code = set(own_fields(shape))
    extra = {"dev_id", "dev_type"} if heading == "### Fields of every device" else set()
    assert code <= set(SCHEMA["device"][kind]["properties"])
    assert code - set(rows) == set(), f"missing under {heading}"
    assert set(rows) - code - extra == set(), f"not fields of the code under {heading}"


@pytest.mark.parametrize("heading", list(DEVICE_TABLES))
def test_device_defaults_are_those_of_the_code(heading: str) -> None:
    rows = by_name(table(section(heading)))
    shape, kind = DEVICE_TABLES[heading]
    defaults = {f.name: f.default for f in fields(DeviceConfig)}
    properties = SCHEMA["device"][kind]["properties"]
    for name in own_fields(shape):
        cell = rows[name]["Default"]
        assert plain(shape.model_fields[name].default) == plain(defaults[name]), name
        if name in DEFAULTS_IN_WORDS:
            assert not cell.startswith("`"), name
            assert "default" not in properties[name], name
            continue
        assert documented_default(cell) == plain(defaults[name]), name
        assert properties[name]["default"] == plain(defaults[name]), name


def _probe(shape: type[Body], name: str, cell: str, schema: dict[str, Any]) -> int:
    """Check the range written in `cell` against what the shape accepts and what its JSON
    Schema says; how many checks."""
    accepts: list[Any] = []
    refuses: list[Any] = []
    if m := re.match(r"`(-?\d+)`–`(-?\d+)`", cell):
        lo, hi = int(m.group(1)), int(m.group(2))
        accepts, refuses = [lo, hi], [lo - 1, hi + 1]
        assert (schema["minimum"], schema["maximum"]) == (lo, hi), name
    elif re.fullmatch(r"`-?\d+`(, `-?\d+`)+", cell):
        allowed = [int(v) for v in re.findall(r"-?\d+", cell)]
        accepts, refuses = allowed, [min(allowed) - 1, max(allowed) + 1]
        assert schema["enum"] == allowed, name
    elif m := re.match(r"up to (\d+) characters", cell):
        n = int(m.group(1))
        accepts, refuses = ["a" * n], ["a" * (n + 1)]
        assert schema["maxLength"] == n, name
    if "or a formula" in cell:
        assert schema["formula"] is True, name
        accepts.append("min(16000, 20000)")
    for value in accepts:
        check(shape, {name: value})
    for value in refuses:
        with pytest.raises(ApiError):
            check(shape, {name: value})
    return len(accepts) + len(refuses)


def test_documented_ranges_are_what_the_api_accepts() -> None:
    checked = 0
    tables: list[tuple[dict[str, dict[str, str]], type[Body], dict[str, Any]]] = [
        (SITE_ROWS, SiteBody, SCHEMA["site"])]
    tables += [(by_name(table(section(h))), shape, SCHEMA["device"][kind])
               for h, (shape, kind) in DEVICE_TABLES.items()]
    for rows, shape, schema in tables:
        for name, row in rows.items():
            if name in schema["properties"]:
                checked += _probe(shape, name, row["Range"], schema["properties"][name])
    assert checked > 100  # the patterns above still match the document


def _words(cell: str) -> str:
    """A Markdown cell as plain words: links are their text."""
    return " ".join(re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", cell).split())


def _setting_rows() -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    out = [(name, row, SCHEMA["site"]["properties"][name]) for name, row in SITE_ROWS.items()
           if name in SCHEMA["site"]["properties"]]
    for heading, (shape, kind) in DEVICE_TABLES.items():
        rows = by_name(table(section(heading)))
        out += [(name, rows[name], SCHEMA["device"][kind]["properties"][name])
                for name in own_fields(shape)]
    return out


def test_meanings_are_the_fields_descriptions() -> None:
    """The form's help text and the reference say the same (the docstring is the source)."""
    rows = _setting_rows()
    assert len(rows) > 40
    for name, row, schema in rows:
        assert schema["description"] == _words(row["Meaning"]), name


UNITS = {"mA", "s", "ms", "%", "degrees", "W", "MB"}


def test_units_are_the_fields_units() -> None:
    for name, row, schema in _setting_rows():
        first = row["Unit"].split()[0].rstrip(",")
        if first in UNITS:
            assert schema.get("unit") == first, name
        else:
            assert "unit" not in schema or schema.get("formula"), name


def test_every_setting_says_whether_it_is_advanced_or_a_formula() -> None:
    forms = [SCHEMA["site"], *SCHEMA["device"].values(), SCHEMA["user"]]
    forms.append(SCHEMA["user"]["properties"]["rfids"]["items"])
    for form in forms:
        for name, schema in form["properties"].items():
            assert isinstance(schema.get("advanced"), bool), name
            assert isinstance(schema.get("formula"), bool), name
            assert "type" in schema and schema["description"], name


def test_every_dev_type_is_documented_and_nothing_else() -> None:
    rows = by_name(table(section("## Device types")), "dev_type")
    bundled = set(load_definitions(builtin_definitions_dir(), None))
    known = {t.dev_type for t in STATIC_TYPES} | bundled
    assert known - set(rows) == set(), "dev_types missing from the doc"
    assert set(rows) - known == set(), "dev_types the code does not know"


def test_remote_power_brain_needs_observe_mode_in_the_dev_type_table() -> None:
    rows = by_name(table(section("## Device types")), "dev_type")
    assert "observe mode" in rows["evse_powerbrain"]["Notes"]
    assert "lb_enabled" in rows["evse_powerbrain"]["Notes"]
    operations = (DOCS / "operations.md").read_text(encoding="utf-8")
    assert "observe mode" in operations and "lb_enabled" in operations


def test_every_meter_role_is_documented() -> None:
    rows = table(section("## Meter roles"))
    documented = {int(row["role"]): row["Name"] for row in rows}
    code = {getattr(C, n): n for n in dir(C) if n.startswith("ROLE_")}
    assert set(documented) == set(code)


def test_every_key_of_get_params_is_explained() -> None:
    mgr = build_manager(VirtualClock(start=1_700_000_000.0), PowerBrain(None),
                        DeviceTypes(), ManagerStore(Store(":memory:")))
    answer = params_answer(mgr, 0.0)
    explained = set(SITE_ROWS)
    explained |= set(by_name(table(section("### 1.x watt names")), "1.x name"))
    explained |= set(by_name(table(section("### Read-only figures in get_params")), "Key"))
    assert set(answer) - explained == set()


def test_every_key_a_device_shows_is_explained() -> None:
    explained: set[str] = set()
    for heading in DEVICE_TABLES:
        explained |= set(by_name(table(section(heading))))
    explained |= set(by_name(table(section("### What get_dev_info shows for a device")), "Key"))
    for kind in ("evse", "meter", "group"):
        assert set(known_keys.device_keys(kind)) - explained == set(), kind


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_links_lead_somewhere() -> None:
    anchors = {_slug(m) for m in re.findall(r"^#+ (.+)$", TEXT, re.M)}
    links = re.findall(r"\]\(([^)\s]+)\)", TEXT)
    assert links
    for link in links:
        path, _, anchor = link.partition("#")
        if path:
            assert (DOCS / path).is_file(), link
        else:
            assert anchor in anchors, link


def test_the_reference_is_linked() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    assert "(docs/configuration.md)" in readme
    assert "(configuration.md)" in api


def test_helpers_read_the_tables() -> None:
    # by_name must see every row: a row without a backticked name would hide a field.
    for heading in ("## Site parameters", *DEVICE_TABLES):
        rows = table(section(heading))
        assert all(names(row["Name"]) for row in rows), heading
    assert Path(DOC).is_relative_to(ROOT)
