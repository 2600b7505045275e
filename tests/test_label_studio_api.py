"""Pushing to / pulling from a Label Studio server: arguments, failures before any work, where images are served from.

The round trip against a real server is in test_label_studio_app.py (marked `apps`)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.core.errors import UsageError
from autolabel.review.exporters.label_studio_api import connect, storage_folders

from .apps import free_port
from .conftest import noise_image


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path) -> Path:
    """A labels table over root/photos/{a,b}/*.png."""
    root = tmp_path_factory.mktemp("ls-api") / "root"
    for i, rel in enumerate(["a/1.png", "a/2.png", "b/3.png"]):
        (root / "photos" / rel).parent.mkdir(parents=True, exist_ok=True)
        noise_image(i).save(root / "photos" / rel)
    spec = root.parent / "spec.yaml"
    spec.write_text(json.dumps({"templates": ["a photo of a {label}."], "classes": ["cat", "dog"]}))
    out = root.parent / "labels.parquet"
    result = CliRunner().invoke(main, ["run", str(root / "photos"), "--labels", str(spec), "--out", str(out),
                                       "--model", str(tiny_clip), "-q"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(autouse=True)
def _no_server_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT",
                 "AUTOLABEL_EXPORT_URL", "AUTOLABEL_EXPORT_API_KEY", "AUTOLABEL_IMPORT_REVIEW_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def test_export_without_out_or_url_says_what_to_pass(table: Path) -> None:
    result = invoke("export", str(table), "--to", "label-studio")
    assert result.exit_code == 2
    assert result.stderr.endswith("\nError: Missing option '--out' / '-o' (env var: 'AUTOLABEL_EXPORT_OUT'). Or, for "
                                  "--to label-studio, --url to push to a server.\n")


def test_out_and_url_together_are_refused(table: Path, tmp_path: Path) -> None:
    result = invoke("export", str(table), "--to", "label-studio", "--out", str(tmp_path / "o"), "--url",
                    "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert result.output == "error: --out writes files, --url pushes to a server: pass one of them\n"
    assert not (tmp_path / "o").exists()


def test_url_in_the_environment_does_not_hijack_a_file_export(table: Path, tmp_path: Path) -> None:
    result = invoke("export", str(table), "--to", "label-studio", "--out", str(tmp_path / "o"),
                    env={"LABEL_STUDIO_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "tasks.json").is_file()


def test_url_with_another_format_is_refused(table: Path) -> None:
    result = invoke("export", str(table), "--to", "cvat", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert result.output == "error: --url pushes to Label Studio; --to cvat writes files: pass --out\n"


def test_push_without_api_key_says_where_to_get_one(table: Path) -> None:
    result = invoke("export", str(table), "--to", "label-studio", "--url", "http://127.0.0.1:9/")
    assert result.exit_code == 2
    assert result.output == ("error: no API key for Label Studio at http://127.0.0.1:9: pass --api-key or set "
                             "LABEL_STUDIO_API_KEY (Label Studio: Account & Settings → Personal Access Token, or the "
                             "legacy Access Token)\n")


def test_unreachable_server_is_one_line_and_exit_2_at_once(table: Path) -> None:
    import label_studio_sdk  # noqa: F401  (imported ahead: the time measured is the probe's, not the import's)

    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = invoke("export", str(table), "--to", "label-studio", "--url", f"http://127.0.0.1:{port}",
                    env={"LABEL_STUDIO_API_KEY": "k"})
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot reach Label Studio at http://127.0.0.1:{port} (")
    assert result.output.endswith("is it running? check --url / LABEL_STUDIO_URL\n")
    assert result.output.count("\n") == 1
    assert time.monotonic() - started < 5


def test_server_that_never_answers_fails_after_the_probe_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(UsageError, match=r"no answer within 0.5 s; check --url / LABEL_STUDIO_URL$"):
            connect(url, "k", timeout=0.5)
        assert time.monotonic() - started < 3


def test_missing_sdk_is_one_line_with_the_pip_command(table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "label_studio_sdk", None)  # as if not installed
    result = invoke("import-review", "--from-label-studio", "http://127.0.0.1:9", "--project", "x", "--into",
                    str(table), env={"LABEL_STUDIO_API_KEY": "k"})
    assert result.exit_code == 2
    assert result.output == ("error: talking to a Label Studio server needs its SDK: "
                             "pip install 'autolabel[label-studio]'\n")


def test_import_review_needs_a_file_or_a_server(table: Path) -> None:
    result = invoke("import-review", "--into", str(table))
    assert result.exit_code == 2
    assert result.output == "error: give either EXPORTED_RESULTS (an export file) or --from-label-studio URL\n"


def test_import_review_from_a_server_needs_the_project(table: Path) -> None:
    result = invoke("import-review", "--from-label-studio", "http://127.0.0.1:9", "--into", str(table))
    assert result.exit_code == 2
    assert result.output == "error: --from-label-studio needs --project (the project's id or title)\n"


def test_storage_is_the_images_common_folder_below_the_document_root(tmp_path: Path) -> None:
    images = [tmp_path / "photos" / "a" / "1.png", tmp_path / "photos" / "b" / "c" / "2.png"]
    assert storage_folders(images, tmp_path) == [tmp_path / "photos"]


def test_storages_per_subfolder_when_the_common_folder_is_the_document_root(tmp_path: Path) -> None:
    images = [tmp_path / "x" / "a" / "1.png", tmp_path / "x" / "a" / "2.png", tmp_path / "y" / "3.png"]
    assert storage_folders(images, tmp_path) == [tmp_path / "x" / "a", tmp_path / "y"]


def test_image_directly_in_the_document_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        storage_folders([tmp_path / "a" / "1.png", tmp_path / "2.png"], tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / '2.png'}: lies directly in LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={tmp_path}, and Label Studio "
        f"serves local files only from its subfolders; set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT to {tmp_path.parent} "
        "(here and for the server)")


def test_image_outside_the_document_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"not under LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=.*--url-prefix$"):
        storage_folders([tmp_path / "elsewhere" / "1.png"], tmp_path / "root")


def test_push_checks_the_document_root_before_calling_the_server(table: Path) -> None:
    photos = table.parent / "root" / "photos"
    port = free_port()  # would fail with "cannot reach" if it got that far
    result = invoke("export", str(table), "--to", "label-studio", "--url", f"http://127.0.0.1:{port}",
                    env={"LABEL_STUDIO_API_KEY": "k", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(photos / "b")})
    assert result.exit_code == 2
    first = photos / "a" / "1.png"
    assert result.output.startswith(f"error: {first}: not under LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")


def test_file_export_links_images_relative_to_the_document_root(table: Path, tmp_path: Path) -> None:
    root = table.parent / "root"
    result = invoke("export", str(table), "--to", "label-studio", "--out", str(tmp_path / "o"),
                    env={"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root)})
    assert result.exit_code == 0, result.output
    tasks = json.loads((tmp_path / "o" / "tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == ["/data/local-files/?d=photos/a/1.png",
                                                   "/data/local-files/?d=photos/a/2.png",
                                                   "/data/local-files/?d=photos/b/3.png"]


def test_api_key_also_comes_from_the_commands_own_variable(table: Path) -> None:
    port = free_port()  # nothing listens: getting as far as "cannot reach" shows the key was read
    result = invoke("export", str(table), "--to", "label-studio", "--url", f"http://127.0.0.1:{port}",
                    env={"AUTOLABEL_EXPORT_API_KEY": "k"})
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot reach Label Studio at http://127.0.0.1:{port} (")


class FakeServer:
    """A local HTTP server answering each "METHOD /path" with a canned body (200), to play a broken Label Studio."""

    JSON, HTML = "application/json", "text/html"
    USER = ('{"id": 1, "email": "a@example.com"}', JSON)
    NO_PROJECTS = ('{"count": 0, "results": []}', JSON)
    PROJECT = ('{"id": 7, "title": "autolabel labels", "label_config": "<View/>"}', JSON)
    NO_TASKS = ('{"tasks": [], "total": 0}', JSON)
    LOGIN_PAGE = ("<html><body><h1>Sign in</h1></body></html>", HTML)

    def __init__(self, routes: dict[str, tuple[str, str]]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        self.calls: list[str] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                key = f"{self.command} {urlsplit(self.path).path.rstrip('/')}"
                later_page = "page=" in self.path and "page=1" not in self.path  # the SDK pages until empty
                calls.append(key)
                body, kind = FakeServer.NO_TASKS if later_page else routes.get(key, ('{"detail": "?"}', "text/plain"))
                data = body.encode()
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


CREATED = "; this push had already created the Label Studio project 'autolabel labels' (id 7): delete it there, " \
          "or fix the problem and export again to add the tasks to it\n"


def push_to(server: FakeServer, table: Path):
    return invoke("export", str(table), "--to", "label-studio", "--url", server.url,
                  env={"LABEL_STUDIO_API_KEY": "k"})


def test_a_login_page_after_the_project_was_created_names_the_project(table: Path) -> None:
    with FakeServer({"GET /api/current-user/whoami": FakeServer.USER, "GET /api/projects": FakeServer.NO_PROJECTS,
                     "POST /api/projects": FakeServer.PROJECT, "GET /api/tasks": FakeServer.LOGIN_PAGE}) as server:
        result = push_to(server, table)
    assert result.exit_code == 2
    assert "Traceback" not in result.output and result.output.count("\n") == 1
    assert result.output == ("error: Label Studio answered the request to list the project's tasks with something "
                             "that is not its JSON (HTTP 200: Sign in); check that --url is the Label Studio server "
                             "itself, not a login page or proxy" + CREATED)


@pytest.mark.parametrize("upload", [('"stored"', FakeServer.JSON), FakeServer.LOGIN_PAGE])
def test_an_upload_answer_of_the_wrong_shape_names_the_project(table: Path, upload: tuple[str, str]) -> None:
    with FakeServer({"GET /api/current-user/whoami": FakeServer.USER, "GET /api/projects": FakeServer.NO_PROJECTS,
                     "POST /api/projects": FakeServer.PROJECT, "GET /api/tasks": FakeServer.NO_TASKS,
                     "POST /api/projects/7/import": upload}) as server:
        result = push_to(server, table)
    assert result.exit_code == 2
    assert "Traceback" not in result.output and result.output.count("\n") == 1
    assert result.output.startswith("error: Label Studio answered the request to take an upload of 3 images with ")
    assert result.output.endswith(CREATED)


def test_a_created_project_without_an_id_is_one_line(table: Path) -> None:
    with FakeServer({"GET /api/current-user/whoami": FakeServer.USER, "GET /api/projects": FakeServer.NO_PROJECTS,
                     "POST /api/projects": ('{"ok": true}', FakeServer.JSON)}) as server:
        result = push_to(server, table)
        assert "POST /api/projects/None/import" not in server.calls
    assert result.exit_code == 2
    assert result.output == ("error: Label Studio answered the request to create the project 'autolabel labels' "
                             "without a project id; look for the project in Label Studio (delete it if it is there) "
                             "and check that --url is a Label Studio server (1.x)\n")


def test_import_review_from_a_login_page_is_one_line_and_changes_nothing(table: Path, tmp_path: Path) -> None:
    into = tmp_path / "labels.parquet"
    into.write_bytes(table.read_bytes())
    with FakeServer({"GET /api/current-user/whoami": FakeServer.USER, "GET /api/projects/7": FakeServer.PROJECT,
                     "GET /api/tasks": FakeServer.LOGIN_PAGE}) as server:
        result = invoke("import-review", "--from-label-studio", server.url, "--project", "7", "--into", str(into),
                        env={"LABEL_STUDIO_API_KEY": "k"})
    assert result.exit_code == 2
    assert result.output.startswith("error: Label Studio answered the request to list the project's tasks with "
                                    "something that is not its JSON (HTTP 200: Sign in)")
    assert result.output.count("\n") == 1
    assert into.read_bytes() == table.read_bytes()


@pytest.mark.parametrize("url", ["http://[::1", "http://localhost:x", "http://host:99999"])
def test_a_malformed_url_is_one_line_naming_url(table: Path, url: str) -> None:
    result = invoke("export", str(table), "--to", "label-studio", "--url", url, "--api-key", "x")
    assert result.exit_code == 2, result.output
    assert result.output == f"error: --url {url}: expected the server's address, e.g. http://localhost:8080\n"


class SameAnswer(FakeServer):
    """A server answering every request alike with 200 JSON of the wrong shape (a proxy, another API)."""

    def __init__(self, body: str) -> None:
        super().__init__({})
        handler = self.server.RequestHandlerClass

        def answer(this) -> None:
            this.rfile.read(int(this.headers.get("content-length") or 0))
            self.calls.append(f"{this.command} {this.path}")
            data = body.encode()
            this.send_response(200)
            this.send_header("content-type", FakeServer.JSON)
            this.send_header("content-length", str(len(data)))
            this.end_headers()
            this.wfile.write(data)

        handler.do_GET = handler.do_POST = handler.do_PATCH = answer


WRONG_SHAPE = '{"id": "x", "results": "nope", "title": 5}'


@pytest.mark.parametrize("command", ["export", "import-review-title", "import-review-id"])
def test_json_of_the_wrong_shape_is_one_line_and_a_few_requests(table: Path, tmp_path: Path, command: str) -> None:
    into = tmp_path / "labels.parquet"
    into.write_bytes(table.read_bytes())
    with SameAnswer(WRONG_SHAPE) as server:
        args = (["export", str(table), "--to", "label-studio", "--url", server.url] if command == "export" else
                ["import-review", "--from-label-studio", server.url, "--into", str(into), "--project",
                 "1" if command.endswith("id") else "title"])
        done = threading.Event()
        result = []
        thread = threading.Thread(target=lambda: (result.append(invoke(*args, env={"LABEL_STUDIO_API_KEY": "k"})),
                                                  done.set()), daemon=True)
        thread.start()
        finished = done.wait(20)
        calls = len(server.calls)
        server.server.shutdown()  # ends a request loop that would otherwise go on for ever
        assert finished, f"still requesting after {calls} requests"
    output = result[0].output
    assert result[0].exit_code == 2, output
    assert output.count("\n") == 1 and output.startswith("error: Label Studio answered the request to "), output
    assert "cannot read" in output and calls < 10
    assert into.read_bytes() == table.read_bytes()
