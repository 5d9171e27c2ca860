"""docs/configuration.md keeps up with the code.

Every site parameter, device field, dev_type and meter role the code knows is in the
reference's tables (and nothing the code does not know), the defaults written there are
the dataclasses' defaults, the ranges are those the parsers accept, every key the API
shows is explained, and the document's links lead somewhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from chargebrain.api import known_keys, views
from chargebrain.api.cmd_manager import params_answer
from chargebrain.api.errors import ApiError
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


SITE_ROWS = by_name(table(section("## Site parameters")))
DEVICE_TABLES = {
    "### Fields of every device": views.COMMON_FIELDS,
    "### EVSE fields": views.EVSE_FIELDS,
    "### Meter fields": views.METER_FIELDS,
    "### EVSE group fields": views.GROUP_FIELDS,
}


def test_every_site_parameter_is_documented_and_nothing_else() -> None:
    settable = set(views.SITE_FIELDS) | set(views.HARDWARE_FIELDS)
    assert settable - set(SITE_ROWS) == set(), "site parameters missing from the doc"
    assert set(SITE_ROWS) - settable - set(views.SITE_STATE_FIELDS) == set()


def test_site_defaults_and_persistence_are_those_of_the_code() -> None:
    site = SiteParams()
    for name, field in views.SITE_FIELDS.items():
        row = SITE_ROWS[name]
        assert documented_default(row["Default"]) == getattr(site, name), name
        assert row["Persisted"].startswith("yes") == field.persist, name
    for name, value in views.hardware_json(PhaseSwitchSettings()).items():
        row = SITE_ROWS[name]
        assert documented_default(row["Default"]) == value, name
        assert row["Persisted"].startswith("yes"), name


def test_watt_names_stand_for_the_currents_they_convert_to() -> None:
    rows = by_name(table(section("### 1.x watt names")), "1.x name")
    for watts, current in views.WATT_ALIASES.items():
        assert names(rows[watts]["Stands for"]) == [current], watts


@pytest.mark.parametrize("heading", list(DEVICE_TABLES))
def test_every_device_field_is_documented_and_nothing_else(heading: str) -> None:
    rows = by_name(table(section(heading)))
    code = set(DEVICE_TABLES[heading])
    extra = {"dev_id", "dev_type"} if heading == "### Fields of every device" else set()
    assert code - set(rows) == set(), f"missing under {heading}"
    assert set(rows) - code - extra == set(), f"not fields of the code under {heading}"


@pytest.mark.parametrize("heading", list(DEVICE_TABLES))
def test_device_defaults_are_those_of_the_code(heading: str) -> None:
    rows = by_name(table(section(heading)))
    defaults = {f.name: f.default for f in fields(DeviceConfig)}
    for name in DEVICE_TABLES[heading]:
        cell = rows[name]["Default"]
        if name in DEFAULTS_IN_WORDS:
            assert not cell.startswith("`"), name
            continue
        assert documented_default(cell) == plain(defaults[name]), name


def _probe(field: views.Field, name: str, cell: str) -> int:
    """Check the range written in `cell` against the field's parser; how many checks."""
    accepts, refuses = [], []
    if m := re.match(r"`(-?\d+)`–`(-?\d+)`", cell):
        lo, hi = int(m.group(1)), int(m.group(2))
        accepts, refuses = [lo, hi], [lo - 1, hi + 1]
    elif re.fullmatch(r"`-?\d+`(, `-?\d+`)+", cell):
        allowed = [int(v) for v in re.findall(r"-?\d+", cell)]
        accepts, refuses = allowed, [min(allowed) - 1, max(allowed) + 1]
    elif m := re.match(r"up to (\d+) characters", cell):
        n = int(m.group(1))
        accepts, refuses = ["a" * n], ["a" * (n + 1)]
    for value in accepts:
        field.parse(name, value)
    for value in refuses:
        with pytest.raises(ApiError):
            field.parse(name, value)
    return len(accepts) + len(refuses)


def test_documented_ranges_are_what_the_api_accepts() -> None:
    checked = 0
    tables = [(SITE_ROWS, {**views.SITE_FIELDS, **views.HARDWARE_FIELDS})]
    tables += [(by_name(table(section(h))), f) for h, f in DEVICE_TABLES.items()]
    for rows, parsers in tables:
        for name, row in rows.items():
            if name in parsers:
                checked += _probe(parsers[name], name, row["Range"])
    assert checked > 100  # the patterns above still match the document


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
