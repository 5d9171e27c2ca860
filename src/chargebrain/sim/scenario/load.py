"""Loading scenarios: files, shipped names, JSON or YAML text, and errors with lines.

`load_scenario("home")` loads a shipped scenario (sim/scenarios/), `load_scenario(path)`
a file: JSON, or YAML when the name ends in .yaml or .yml. Text is read into plain values
(`json.loads`; `yaml_text.read_yaml`), validated (`checks.validate_scenario`) and built
(`build.build`). Every problem is reported at once in one `ScenarioError`, each naming the
field as a JSON path and, for text, its line (`lines.JsonLines`, `yaml_text.YamlLines`):
`line 12, $.cars[2].evse: unknown EVSE 'E9'`.

This module must never decide what is valid (checks.py does) and never simulate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from chargebrain.shapes import Path as FieldPath
from chargebrain.shapes import ShapeError, field_name
from chargebrain.sim.scenario.build import build
from chargebrain.sim.scenario.checks import validate_scenario
from chargebrain.sim.scenario.lines import JsonLines, Lines, NoLines
from chargebrain.sim.scenario.spec import Scenario

__all__ = [
    "SCENARIO_DIR",
    "YAML_SUFFIXES",
    "ScenarioError",
    "ScenarioProblem",
    "load_scenario",
    "loads_scenario",
    "loads_scenario_yaml",
    "scenario_from_dict",
    "shipped_scenarios",
]

SCENARIO_DIR = "scenarios"
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class ScenarioProblem:
    """One thing wrong with a scenario: where (`path`, `line` when read from text), what."""

    path: FieldPath
    message: str
    line: int | None = None

    @property
    def field(self) -> str:
        """The JSON path of the field: `$.cars[2].evse` (`$` for the whole document)."""
        name = field_name(self.path)
        return f"$.{name}" if name else "$"

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line is not None else ""
        return f"{where}{self.field}: {self.message}"


class ScenarioError(ValueError):
    """A scenario cannot be used: `errors` holds the text of every problem, `problems` those
    found in the document (with path and line); a text that cannot be read has none."""

    def __init__(self, errors: Iterable[str | ScenarioProblem], source: str = "") -> None:
        items = list(errors)
        self.problems = tuple(e for e in items if isinstance(e, ScenarioProblem))
        self.errors = tuple(str(e) for e in items)
        self.source = source
        head = f"invalid scenario {source}: " if source else "invalid scenario: "
        super().__init__(head + "; ".join(self.errors))


def _from_document(data: Any, source: str, lines: Lines) -> Scenario:
    try:
        shape = validate_scenario(data)
    except ShapeError as exc:
        found = [ScenarioProblem(p.path, p.message, lines.line(p.path)) for p in exc.problems]
        found.sort(key=lambda p: p.line or 0)  # in the order of the file; stable otherwise
        raise ScenarioError(found, source) from None
    return build(shape)


def scenario_from_dict(data: Mapping[str, Any], source: str = "") -> Scenario:
    """Build and validate a scenario from parsed JSON; raises ScenarioError listing all problems."""
    return _from_document(data, source, NoLines())


def loads_scenario(text: str, source: str = "") -> Scenario:
    """Parse and validate a scenario from JSON text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScenarioError([f"not valid JSON: {e}"], source) from None
    return _from_document(data, source, JsonLines(text))


def loads_scenario_yaml(text: str, source: str = "") -> Scenario:
    """Parse and validate a scenario from YAML text (needs PyYAML, in the `sim` extra)."""
    try:
        from chargebrain.sim.scenario.yaml_text import YamlError, read_yaml
    except ImportError:
        raise ScenarioError(["YAML scenarios need PyYAML: pip install 'chargebrain[sim]'"],
                            source) from None
    try:
        data, lines = read_yaml(text)
    except YamlError as e:
        raise ScenarioError([f"not valid YAML: {e}"], source) from None
    return _from_document(data, source, lines)


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped with chargebrain."""
    root = resources.files("chargebrain.sim").joinpath(SCENARIO_DIR)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by shipped name ("home") or from a file: JSON, or YAML when the
    name ends in .yaml or .yml (the same object; see yaml_text.py)."""
    source = str(name_or_path)
    path = Path(name_or_path)
    yaml = path.suffix.lower() in YAML_SUFFIXES
    if yaml or path.suffix.lower() == ".json" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ScenarioError([f"cannot read it: {why}"], source) from None
        return loads_scenario_yaml(text, source) if yaml else loads_scenario(text, source)
    res = resources.files("chargebrain.sim").joinpath(SCENARIO_DIR, f"{name_or_path}.json")
    if not res.is_file():
        raise ScenarioError([f"no such scenario {source!r} ({', '.join(shipped_scenarios())})"])
    return loads_scenario(res.read_text(encoding="utf-8"), source)
