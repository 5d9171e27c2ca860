"""Reading scenario files written in YAML instead of JSON, keeping where each part is.

The same object as the JSON format (docs/simulator.md), parsed with PyYAML's safe loader
with one change: YAML 1.1 reads an unquoted `9:30` or `1:30:00` as a base-60 number
(570, 5400), so a time of day or a duration written as one would silently become a count
of seconds. Here such values stay text, and the scenario's own rules read them as times;
numbers are only decimal integers and decimal or exponent floats. Everything else (safe
tags only, booleans, null) is PyYAML's.

`read_yaml` composes the node tree and constructs the values from it, as `yaml.load`
does (with libyaml's parser where PyYAML has it); the nodes are kept (`YamlLines`) so
that a problem found later names its line.

This is the only module of the simulator that imports PyYAML (the `sim` extra). It must
never decide what a value means.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from chargebrain.shapes import Path

__all__ = ["YamlError", "YamlLines", "read_yaml"]

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


class _PureLoader(yaml.SafeLoader):
    """The safe loader without base-60 numbers (and without hex, octal or binary ones)."""


_Loader = type[_PureLoader] | type[yaml.CSafeLoader]


def _without_base_60(loader: _Loader) -> _Loader:
    loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    loader.add_implicit_resolver(
        _INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
    loader.add_implicit_resolver(
        _FLOAT,
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                      |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                      |[-+]?\.(?:inf|Inf|INF)
                      |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return loader


_ScenarioLoader: _Loader = _without_base_60(_PureLoader)
if yaml.__with_libyaml__:  # libyaml's parser reads the same 4-5 times faster

    class _FastLoader(yaml.CSafeLoader):
        """The same, with libyaml's parser."""

    _ScenarioLoader = _without_base_60(_FastLoader)


class YamlError(ValueError):
    """The text is not YAML the scenario loader can read."""


class YamlLines:
    """The lines of a YAML document, from its nodes (merged keys keep their own lines)."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._root = root

    def line(self, path: Path) -> int | None:
        node, found = self._root, None
        for part in path:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                pairs = [(k, v) for k, v in node.value
                         if isinstance(k, yaml.ScalarNode) and k.value == part]
                if not pairs:
                    break
                key, node = pairs[-1]  # a later duplicate key wins, as in the loader
                found = key.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                    and 0 <= part < len(node.value):
                node = node.value[part]
                found = node.start_mark.line + 1
            else:
                break
        return found


def read_yaml(text: str) -> tuple[Any, YamlLines]:
    """The YAML document in `text` as plain Python values (dict, list, str, int, …), and
    where its parts are."""
    loader = _ScenarioLoader(text)  # a SafeLoader: no arbitrary objects
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlError(" ".join(str(exc).split())) from None
    finally:
        loader.dispose()
    return data, YamlLines(node)
