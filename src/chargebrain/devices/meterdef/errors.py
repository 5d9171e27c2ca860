"""The one error type of meter definitions, carrying the file, line and field of a problem.

This module must never import the rest of the package (everything else imports it).
"""

from __future__ import annotations


class MeterDefinitionError(ValueError):
    """A meter definition cannot be used. Carries the line and field when known."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.field = field
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where: list[str] = []
        if self.source:
            where.append(self.source)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def with_source(self, source: str) -> MeterDefinitionError:
        return MeterDefinitionError(self.message, line=self.line, field=self.field, source=source)
