"""Domain exceptions, each carrying the exit code the CLI maps it to."""

from __future__ import annotations


class AutolabelError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""

    exit_code: int = 2


class UsageError(AutolabelError):
    """Bad command-line arguments or option combinations."""


class SpecError(AutolabelError):
    """The label-spec YAML is missing, malformed or invalid."""


class SourceError(AutolabelError):
    """The SOURCE (folder, manifest, stdin) cannot be read."""


class ModelError(AutolabelError):
    """The model cannot be found, downloaded or loaded."""


class TooManyErrors(AutolabelError):
    """The run finished but more images failed than --max-errors allows."""

    exit_code = 1


class RuntimeFailure(AutolabelError):
    """The work failed on the way (a full disk, a server's unexpected answer): exit 1, the input may be fine."""

    exit_code = 1
