"""Library exceptions. The CLI turns them into one-line messages and exit codes."""


class SmplusError(Exception):
    """Bad input or a refused operation: the message says what, where and how to fix."""


class UsageError(SmplusError):
    """An option value out of its range (the CLI exits 2, like click's own usage errors)."""
