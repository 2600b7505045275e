"""Against a real Label Studio 1.23.2 server on 127.0.0.1: push a table twice, look at every task and image, annotate
in the app, pull the reviews back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main

from .apps import LabelStudioServer as Server
from .apps import label_studio_server
from .conftest import noise_image

pytestmark = pytest.mark.apps
VERSION = "1.23.2"
CLASSES = ["cat", "dog", "b & c"]
N = 30


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A real Label Studio server (started when collection ended, see tests/apps.py), stopped after this module."""
    started = label_studio_server()
    try:
        started.wait_ready()
        assert httpx.get(f"{started.url}/api/version", timeout=5).json()["release"] == VERSION
        yield started
    finally:
        started.stop()


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


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def autolabel(*args: str, env: dict[str, str] | None = None) -> Ran:
    """The CLI (in-process: a subprocess costs seconds of imports) with only the given Label Studio variables."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LABEL_STUDIO_")}
    result = CliRunner().invoke(main, list(args), env={**clean, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def autolabel_process(*args: str, env: dict[str, str]) -> Ran:
    """The real command in a subprocess: its stdout and stderr as a shell sees them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    done = subprocess.run([sys.executable, "-m", "autolabel", *args], env={**clean, **env}, capture_output=True,
                          text=True, timeout=300)
    return Ran(done.returncode, done.stdout, done.stderr)


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
    first: Ran
    second: Ran


@pytest.fixture(scope="module")
def local_files_push(server: Server, table: Path) -> Pushed:
    """The table pushed twice with the server's document root set (Local Files storage): first with the legacy
    token, then with a Personal Access Token."""
    common = ["export", str(table), "--to", "label-studio", "--project", "pets (local files)"]
    env = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(server.document_root)}
    first = autolabel_process(*common, env={**env, "LABEL_STUDIO_API_KEY": server.token})
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
    assert pulled.stderr == (f"2 reviewed rows merged from label-studio → {into} (1 reviewed rows in the table now "
                             "differ from the model's label)\n")
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


@pytest.mark.parametrize("how", ["document root", "url prefix", "nothing set"])
def test_the_readme_file_recipe_serves_every_image(server: Server, table: Path, tmp_path: Path, how: str) -> None:
    """README: export files, create the project with config.xml, add a Local Files storage for the images folder
    (a subfolder of the server's document root; not synced), import tasks.json."""
    out = tmp_path / "ls"
    if how == "document root":
        exported = autolabel("export", str(table), "--to", "label-studio", "--out", str(out),
                             env={"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(server.document_root)})
    elif how == "url prefix":
        exported = autolabel("export", str(table), "--to", "label-studio", "--out", str(out), "--url-prefix",
                             "/data/local-files/?d=photos")
    else:  # the images folder's parent is taken for the document root, and the export says so
        exported = autolabel("export", str(table), "--to", "label-studio", "--out", str(out))
        assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={server.document_root} " in exported.stderr
    assert exported.returncode == 0, exported.stderr
    sdk = client(server)
    project = sdk.projects.create(title=f"pets (files, {how})", label_config=(out / "config.xml").read_text())
    sdk.import_storage.local.create(project=project.id, path=str(server.document_root / "photos"))
    sdk.projects.import_tasks(project.id, request=json.loads((out / "tasks.json").read_text()))
    tasks = tasks_of(server, project.id)
    assert len(tasks) == N and all(len(t.predictions) == 1 for t in tasks)
    _assert_served(server, tasks)
