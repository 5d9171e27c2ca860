"""Error type of the formula language.

Every problem found while compiling a formula (syntax, unknown function, wrong number of
arguments, too long, nested too deeply) is reported as a FormulaError naming the column.
This module must never import the parser or evaluate anything.
"""

from __future__ import annotations


class FormulaError(ValueError):
    """A formula could not be compiled. `column` is 1-based (0 when not tied to a place)."""

    def __init__(self, message: str, column: int = 0, line: int = 1) -> None:
        self.message = message
        self.column = column
        self.line = line
        if column > 0:
            where = f"column {column}" if line <= 1 else f"line {line}, column {column}"
            super().__init__(f"{where}: {message}")
        else:
            super().__init__(message)
