"""Reading scenario files written in YAML instead of JSON.

The same object as the JSON format (docs/simulator.md), parsed with PyYAML's safe loader
with one change: YAML 1.1 reads an unquoted `9:30` or `1:30:00` as a base-60 number
(570, 5400), so a time of day or a duration written as one would silently become a count
of seconds. Here such values stay text, and the scenario's own rules read them as times;
numbers are only decimal integers and decimal or exponent floats. Everything else (safe
tags only, booleans, null) is PyYAML's.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


class _ScenarioLoader(yaml.SafeLoader):
    """The safe loader without base-60 numbers (and without hex, octal or binary ones)."""


_ScenarioLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ScenarioLoader.add_implicit_resolver(
    _INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
_ScenarioLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


class YamlError(ValueError):
    """The text is not YAML the scenario loader can read."""


def parse_yaml(text: str) -> Any:
    """The YAML document in `text` as plain Python values (dict, list, str, int, …)."""
    try:
        return yaml.load(text, Loader=_ScenarioLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        raise YamlError(" ".join(str(exc).split())) from None
