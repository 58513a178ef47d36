"""The exception tree of flagops: every failure a caller can expect, with its exit code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One problem in one input file, pointing at the offending line and column (1-based)."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class FlagopsError(Exception):
    """Base of every error flagops raises on purpose; `exit_code` is what the CLI exits with."""

    exit_code = 1

    def lines(self) -> list[str]:
        """The message as the lines the CLI prints on stderr."""
        return [str(self)]


class ConfigError(FlagopsError):
    """The YAML configuration is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the configuration")

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class UsageError(FlagopsError):
    """A command was asked for something that cannot be done (unknown environment, bad file, ...)."""


class DatabaseError(FlagopsError):
    """The database could not be reached or refused a statement (message never holds a password)."""


class SchemaError(DatabaseError):
    """The database schema is missing or older than this version of flagops."""


class StalePlanError(FlagopsError):
    """A saved plan no longer matches the database it was made against."""

    exit_code = 3


class LockTimeoutError(FlagopsError):
    """Another apply holds the environment's lock and did not release it in time."""

    exit_code = 4


class BlockedError(FlagopsError):
    """A guard refused the plan (deletes, protected flags, drift overwrite)."""

    exit_code = 5

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons)
        super().__init__(f"apply blocked by {len(self.reasons)} guard(s)")

    def lines(self) -> list[str]:
        return [f"{self} (nothing was written):", *(f"  {r}" for r in self.reasons)]
