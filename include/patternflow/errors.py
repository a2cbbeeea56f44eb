"""The project's own error types: every rejection names the file, the line and the field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One defect in an input file, located precisely enough to fix by hand."""

    line: int
    """1-based physical line number in the file (the header is line 1)."""
    field: str | None
    """Column name, or None when the defect is not tied to one column (e.g. a blank line)."""
    message: str

    def describe(self, source: str) -> str:
        where = f"{source}, line {self.line}"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class PatternflowError(Exception):
    """Base class for errors raised by patternflow on purpose."""


class InputError(PatternflowError, ValueError):
    """An input file breaks the data contract.

    ``problems`` lists every defect found (sorted by line), so that callers can report or
    quarantine them; the message names the first one and how many more there are.
    """

    def __init__(self, source: str, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("InputError needs at least one problem")
        self.source = source
        self.problems = sorted(problems, key=lambda p: p.line)
        first = self.problems[0].describe(source)
        more = len(self.problems) - 1
        super().__init__(first if not more else f"{first} (and {more} more problem{'s' * (more > 1)})")
