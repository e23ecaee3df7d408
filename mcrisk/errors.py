"""Errors a user can act on: every problem names its study path, the value and the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem in a study: where (a dotted study path) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class StudyError(ValueError):
    """A study (or an override of it) is invalid; holds every problem found, not just the first."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"invalid study {source}" if source else "invalid study"
        lines = [f"{head}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class RunFolderError(RuntimeError):
    """The output folder cannot be used (exists without --force, or a resume does not match)."""
