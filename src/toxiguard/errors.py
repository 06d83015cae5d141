"""The project's exceptions: one base class, so entry points can catch a user's mistake."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class ToxiguardError(Exception):
    """A problem the user can fix (bad input, missing model, unreachable service)."""


@dataclass(frozen=True)
class Problem:
    """One validation finding: which file, which rows (1-based data rows), which column."""

    file: str
    column: str | None
    rows: tuple[int, ...]
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" (+{len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            where.append(f"row{'s' if len(self.rows) > 1 else ''} {shown}{more}")
        if self.column:
            where.append(f"column '{self.column}'")
        return f"{': '.join(where)}: {self.message}"


class DataValidationError(ToxiguardError):
    """The data broke one or more rules; each finding names file, rows and column."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    @classmethod
    def single(
        cls, file: str | Path, message: str, *, column: str | None = None, rows: Sequence[int] = ()
    ) -> DataValidationError:
        """Return an error holding one problem."""
        return cls([Problem(str(file), column, tuple(rows), message)])


class ModelNotFoundError(ToxiguardError):
    """No model where one was asked for (no champion yet, unknown version or family)."""


class RegistryError(ToxiguardError):
    """The model registry refused or could not carry out an operation."""
