"""Library exceptions. The CLI turns them into one-line messages and exit codes."""

from __future__ import annotations


class SmplusError(Exception):
    """Bad input or a refused operation: the message says what, where and how to fix."""


class UsageError(SmplusError):
    """An option value out of its range (the CLI exits 2, like click's own usage errors)."""


class OutputError(SmplusError):
    """Writing to OUT failed (disk full, read-only, file-size limit): the run stops, it never skips.

    What is written stays valid, so once the cause is fixed --resume continues.
    """

    @classmethod
    def writing(cls, path: str, reason: str) -> "OutputError":
        return cls(f"cannot write {path}: {reason}; once that is fixed, "
                   "rerun the same command with --resume to continue")
