"""Where a part of a scenario text is: the line of a path like `("cars", 2, "evse")`.

Lines are only looked for when there is a problem to report, so reading a scenario costs
nothing extra. `JsonLines` walks the JSON text the standard library has already read,
container by container along the path, skipping the values it passes over with the
library's own C scanner (so it reads exactly the JSON `json.loads` reads); the members of
a container are remembered once found. For a key the line is the key's, for an element
of an array the element's; a path that goes beyond what the text has (a missing key)
gets the line of its nearest part that exists. YAML keeps its lines in the nodes PyYAML
composes (`yaml_text.py`).

This module must never decide what a value means, and never read files.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable
from typing import Any, Protocol

from chargebrain.shapes import Path

__all__ = ["JsonLines", "Lines", "NoLines"]


class Lines(Protocol):
    """Where the parts of a read document are."""

    def line(self, path: Path) -> int | None:
        """The line (1-based) of `path`, or of its nearest part that exists; None for the
        document itself or when not known."""
        ...


class NoLines:
    """A document that did not come from text (a dict built in code)."""

    def line(self, path: Path) -> int | None:
        return None


_WHITESPACE = re.compile(r"[ \t\n\r]*")
# The C scanner: (text, offset) -> (value, end); StopIteration where no value starts.
_SCAN: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009
# A container's parts: key or index -> (offset of the key or element, offset of its value)
_Members = dict[str | int, tuple[int, int]]


class JsonLines:
    """The lines of a JSON text that `json.loads` has read."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._members: dict[Path, _Members] = {}
        self._line_starts: list[int] | None = None

    def line(self, path: Path) -> int | None:
        found: int | None = None
        value_at = self._skip(0)
        for depth, part in enumerate(path):
            prefix = path[:depth]
            members = self._members.get(prefix)
            if members is None:
                members = self._members[prefix] = self._read_members(value_at)
            hit = members.get(part)
            if hit is None:
                break
            found, value_at = hit
        return None if found is None else self._line_of(found)

    def _skip(self, pos: int) -> int:
        m = _WHITESPACE.match(self._text, pos)
        return m.end() if m else pos

    def _read_members(self, at: int) -> _Members:
        text, skip = self._text, self._skip
        members: _Members = {}
        opening = text[at : at + 1]
        if opening not in ("{", "["):
            return members
        closing = "}" if opening == "{" else "]"
        pos = skip(at + 1)
        index = 0
        try:
            while not text.startswith(closing, pos):
                part_at = pos
                part: str | int = index
                if opening == "{":
                    key, pos = _SCAN(text, pos)
                    part = str(key)
                    pos = skip(skip(pos) + 1)  # the ':'
                members[part] = (part_at, pos)  # a later duplicate key wins, as in json.loads
                _value, pos = _SCAN(text, pos)
                pos = skip(pos)
                if text.startswith(",", pos):
                    pos = skip(pos + 1)
                index += 1
        except (StopIteration, ValueError):  # (not the JSON json.loads read; no lines below)
            pass
        return members

    def _line_of(self, offset: int) -> int:
        if self._line_starts is None:
            self._line_starts = [0, *(m.end() for m in re.finditer("\n", self._text))]
        return bisect.bisect_right(self._line_starts, offset)
