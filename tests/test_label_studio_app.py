"""Against a real Label Studio 1.23.2 server on 127.0.0.1: push a table twice, look at every task and image, annotate
in the app, pull the reviews back."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main

from .apps import LABEL_STUDIO, app, free_port
from .conftest import noise_image

pytestmark = pytest.mark.apps
VERSION = "1.23.2"
CLASSES = ["cat", "dog", "b & c"]
N = 30


@dataclass(frozen=True)
class Server:
    url: str
    token: str  # the legacy token given at start
    document_root: Path
    log: Path


def _wait_ready(url: str, token: str, process: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Label Studio exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"},
                         timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"Label Studio did not answer within {seconds:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Label Studio on a free port: SQLite in a temp data dir, one user with a generated token, local files served
    from a temp document root; killed by PID afterwards."""
    executable = app(LABEL_STUDIO, f"Label Studio {VERSION}")
    home = tmp_path_factory.mktemp("label-studio")
    root = home / "files"
    root.mkdir()
    port, token = free_port(), secrets.token_hex(20)
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env.update(LABEL_STUDIO_BASE_DATA_DIR=str(home / "data"), DJANGO_DB="sqlite", LATEST_VERSION_CHECK="false",
               COLLECT_ANALYTICS="false", LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
               LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(root))
    log = home / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
             "--username", "reviewer@example.com", "--password", secrets.token_urlsafe(16), "--user-token", token,
             "--enable-legacy-api-token"],
            cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(url, token, process, log)
        assert httpx.get(f"{url}/api/version", timeout=5).json()["release"] == VERSION
        yield Server(url=url, token=token, document_root=root, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def table(server: Server, tiny_clip: Path) -> Path:
    """30 images (PNG and JPEG, two folders) under the server's document root, labelled by the tiny CLIP."""
    photos = server.document_root / "photos"
    for i in range(N):
        path = photos / ("cats" if i % 2 else "dogs") / f"{i:02d}.{'png' if i % 3 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        noise_image(i, (40 + i, 36)).save(path)
    spec = server.document_root.parent / "spec.yaml"
    spec.write_text(json.dumps({"templates": ["a photo of a {label}."], "classes": CLASSES}))
    out = server.document_root.parent / "labels.parquet"
    result = CliRunner().invoke(main, ["run", str(photos), "--labels", str(spec), "--out", str(out),
                                       "--model", str(tiny_clip), "-q"])
    assert result.exit_code == 0, result.output
    return out


def autolabel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (stdout and stderr apart), with only the given Label Studio variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    return subprocess.run([sys.executable, "-m", "autolabel", *args], env={**clean, **(env or {})}, capture_output=True,
                          text=True, timeout=300)


def client(server: Server, api_key: str | None = None):  # -> label_studio_sdk.LabelStudio
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=server.url, api_key=api_key or server.token)


def tasks_of(server: Server, project_id: int) -> list:
    return list(client(server).tasks.list(project=project_id, fields="all"))


def personal_access_token(server: Server) -> str:
    """A Personal Access Token (a JWT refresh token) made through the API: the newer way to authenticate."""
    return client(server).tokens.create().token


@dataclass(frozen=True)
class Pushed:
    project_id: int
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def local_files_push(server: Server, table: Path) -> Pushed:
    """The table pushed twice with the server's document root set (Local Files storage): first with the legacy
    token, then with a Personal Access Token."""
    common = ["export", str(table), "--to", "label-studio", "--project", "pets (local files)"]
    env = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(server.document_root)}
    first = autolabel(*common, env={**env, "LABEL_STUDIO_API_KEY": server.token})
    assert first.returncode == 0, first.stderr
    second = autolabel(*common, env={**env, "LABEL_STUDIO_API_KEY": personal_access_token(server)})
    assert second.returncode == 0, second.stderr
    project_id = int(first.stdout.rstrip("\n").split("/")[-2])
    return Pushed(project_id=project_id, first=first, second=second)


def test_push_prints_the_project_url_and_a_second_push_adds_nothing(server: Server, local_files_push: Pushed) -> None:
    pid = local_files_push.project_id
    assert local_files_push.first.stdout == f"{server.url}/projects/{pid}/data\n"
    assert local_files_push.second.stdout == local_files_push.first.stdout
    where = f"images: Local Files storage {server.document_root / 'photos'}"
    assert local_files_push.first.stderr == (f"created Label Studio project 'pets (local files)' (id {pid}): {N} tasks "
                                             f"added, 0 already there; {where}\n")
    assert local_files_push.second.stderr == (f"updated Label Studio project 'pets (local files)' (id {pid}): 0 tasks "
                                              f"added, {N} already there; {where}\n")


def test_every_image_is_one_task_with_our_prediction(server: Server, table: Path, local_files_push: Pushed) -> None:
    tasks = tasks_of(server, local_files_push.project_id)
    expected = pd.read_parquet(table).set_index("path")
    assert sorted(t.data["path"] for t in tasks) == sorted(expected.index)
    for task in tasks:
        (prediction,) = task.predictions
        row = expected.loc[task.data["path"]]
        assert prediction.result[0]["value"]["choices"] == [row.label]
        assert prediction.score == pytest.approx(row.confidence)
        assert prediction.result[0]["score"] == pytest.approx(row.confidence)
        assert task.data["image"] == f"/data/local-files/?d=photos/{task.data['path']}"


def _assert_served(server: Server, tasks: list, api_key: str | None = None) -> None:
    http = client(server, api_key)._client_wrapper  # the SDK's auth headers (a token, or a PAT's access token)
    for task in tasks:
        response = httpx.get(server.url + task.data["image"], headers=http.get_headers(), timeout=10)
        assert response.status_code == 200, (task.data, response.text[:300])
        assert response.headers["content-type"] == ("image/png" if task.data["path"].endswith(".png")
                                                     else "image/jpeg")
        assert len(response.content) > 100


def test_every_image_is_served(server: Server, local_files_push: Pushed) -> None:
    tasks = tasks_of(server, local_files_push.project_id)
    assert len(tasks) == N
    _assert_served(server, tasks)


def test_reviews_made_in_label_studio_come_back_as_reviewed_label(server: Server, table: Path, tmp_path: Path,
                                                                  local_files_push: Pushed) -> None:
    sdk = client(server)
    tasks = sorted(tasks_of(server, local_files_push.project_id), key=lambda t: t.data["path"])
    changed, confirmed = tasks[0], tasks[1]
    predicted = changed.predictions[0].result[0]["value"]["choices"][0]
    other = next(c for c in CLASSES if c != predicted)
    for task, label in ((changed, other), (confirmed, confirmed.predictions[0].result[0]["value"]["choices"][0])):
        sdk.annotations.create(id=task.id, result=[{"from_name": "label", "to_name": "image", "type": "choices",
                                                    "value": {"choices": [label]}}], was_cancelled=False)
    into = tmp_path / "labels.parquet"
    into.write_bytes(table.read_bytes())
    pulled = autolabel("import-review", "--from-label-studio", server.url, "--project", "pets (local files)",
                       "--into", str(into), env={"LABEL_STUDIO_API_KEY": server.token})
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stderr == (f"2 reviewed rows merged from label-studio (1 differ from the model's label, 0 reviews "
                             f"matched no row) → {into}\n")
    reviewed = pd.read_parquet(into).set_index("path")
    assert reviewed.loc[changed.data["path"], "reviewed_label"] == other
    assert reviewed.loc[confirmed.data["path"], "reviewed_label"] == reviewed.loc[confirmed.data["path"], "label"]
    assert reviewed["reviewed_by_human"].sum() == 2


def test_without_a_document_root_images_are_uploaded_and_served(server: Server, table: Path) -> None:
    env = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.token}
    pushed = autolabel("export", str(table), "--to", "label-studio", "--project", "pets (uploaded)", env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stderr.endswith(f"{N} tasks added, 0 already there; images: uploaded to Label Studio\n")
    tasks = tasks_of(server, int(pushed.stdout.rstrip("\n").split("/")[-2]))
    assert len(tasks) == N and all(t.data["image"].startswith("/data/upload/") for t in tasks)
    assert all(len(t.predictions) == 1 for t in tasks)
    _assert_served(server, tasks)


def test_a_project_with_another_labeling_config_is_refused(server: Server, table: Path,
                                                           local_files_push: Pushed) -> None:
    sdk = client(server)
    project = sdk.projects.get(local_files_push.project_id)
    sdk.projects.create(title="pets (edited)", label_config=project.label_config.replace(
        '<Choice value="dog" />', '<Choice value="dog" /><Choice value="bird" />'))
    pushed = autolabel("export", str(table), "--to", "label-studio", "--project", "pets (edited)",
                       env={"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.token})
    assert pushed.returncode == 2
    assert pushed.stdout == ""
    assert pushed.stderr.startswith("error: Label Studio project 'pets (edited)' (id ")
    assert pushed.stderr.endswith("has another labeling config than this table's: its classes differ (only there: "
                                  "bird; only here: -); push to a new project with --project NEW_TITLE\n")


def test_a_wrong_key_is_one_line_and_exit_2(server: Server, table: Path) -> None:
    pushed = autolabel("export", str(table), "--to", "label-studio", "--url", server.url, "--api-key", "wrong-key")
    assert pushed.returncode == 2
    assert pushed.stderr == (f"error: Label Studio at {server.url} rejected the API key (Invalid token.); "
                             "check --api-key / LABEL_STUDIO_API_KEY\n")


@pytest.mark.parametrize("how", ["document root", "url prefix"])
def test_the_readme_file_recipe_serves_every_image(server: Server, table: Path, tmp_path: Path, how: str) -> None:
    """README: export files, create the project with config.xml, add a Local Files storage for the images folder
    (a subfolder of the server's document root; not synced), import tasks.json."""
    out = tmp_path / "ls"
    if how == "document root":
        exported = autolabel("export", str(table), "--to", "label-studio", "--out", str(out),
                             env={"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(server.document_root)})
    else:
        exported = autolabel("export", str(table), "--to", "label-studio", "--out", str(out), "--url-prefix",
                             "/data/local-files/?d=photos")
    assert exported.returncode == 0, exported.stderr
    sdk = client(server)
    project = sdk.projects.create(title=f"pets (files, {how})", label_config=(out / "config.xml").read_text())
    sdk.import_storage.local.create(project=project.id, path=str(server.document_root / "photos"))
    sdk.projects.import_tasks(project.id, request=json.loads((out / "tasks.json").read_text()))
    tasks = tasks_of(server, project.id)
    assert len(tasks) == N and all(len(t.predictions) == 1 for t in tasks)
    _assert_served(server, tasks)
