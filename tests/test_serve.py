"""`autolabel serve` against its HTTP routes, as Label Studio calls them, with the committed tiny-shapes CLIP."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from autolabel.cli import main

from .conftest import TINY_SHAPES

MODEL = TINY_SHAPES / "model"
CODES = {"red circle": "P-1", "blue square": "P-2", "green triangle": "P-3"}
PROJECT = {"id": 3, "created_at": "2026-01-02T03:04:05.678Z"}
KEY = "3.1767323045"  # Label Studio's "ID.TIMESTAMP" for that project


def config(choices: list[str], multiple: bool = False) -> str:
    inner = "".join(f'<Choice value="{c}"/>' for c in choices)
    return (f'<View><Image name="img" value="$picture"/><Choices name="code" toName="img" '
            f'choice="{"multiple" if multiple else "single"}">{inner}</Choices></View>')


CONFIG = config(list(CODES.values()))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Ten images of each of three shapes under a document root, one broken file, and the spec of their codes."""
    from shapes import draw_shape

    root = tmp_path_factory.mktemp("serve")
    rng = random.Random(7)
    images, truth = [], []
    for i in range(30):
        name = list(CODES)[i % 3]
        path = root / "files" / "shots" / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_shape(*name.split(), rng, (56, 56)).save(path)
        images.append(f"/data/local-files/?d=shots/{i:02d}.png")
        truth.append(CODES[name])
    (root / "files" / "shots" / "broken.png").write_text("not an image")
    spec = root / "codes.yaml"
    spec.write_text(json.dumps({"templates": ["a photo of a {label}."], "classes": list(CODES.values())}))
    return {"root": root, "images": images, "truth": truth, "spec": spec}


@pytest.fixture()
def serve(world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A backend on a free port of 127.0.0.1 (state in tmp_path/serve), its base URL."""
    yield from _served(world, tmp_path, monkeypatch)


def _served(world: dict, state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from autolabel.core.spec import load_spec
    from autolabel.embedding.cache import EmbeddingCache
    from autolabel.serve.backend import Backend
    from autolabel.serve.server import Server

    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(world["root"] / "files"))
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    backend = Backend(load_spec(world["spec"]), _model(), EmbeddingCache(state / "cache"), state / "serve")
    server = Server(backend, "127.0.0.1", 0, lambda *a: None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


_MODELS: list = []


def _model():  # the model loads once for the module
    from autolabel.embedding.model import ZeroShotModel

    if not _MODELS:
        _MODELS.append(ZeroShotModel.load(str(MODEL)))
    return _MODELS[0]


def tasks(world: dict, ids: range | list[int]) -> list[dict]:
    return [{"id": i + 1, "data": {"picture": world["images"][i]}} for i in ids]


def predict(url: str, world: dict, ids: range | list[int], project: str = KEY) -> dict:
    response = httpx.post(f"{url}/predict", json={"tasks": tasks(world, ids), "project": project,
                                                   "label_config": CONFIG, "params": {}}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def annotate(url: str, world: dict, task: int, choice: str, annotation_id: int, action: str = "ANNOTATION_CREATED",
             project: dict = PROJECT) -> httpx.Response:
    return httpx.post(f"{url}/webhook", content=annotate_payload(world, task, choice, annotation_id, action, project),
                      headers={"Content-Type": "application/json"}, timeout=60)


def annotate_payload(world: dict, task: int, choice: str, annotation_id: int, action: str = "ANNOTATION_CREATED",
                     project: dict = PROJECT) -> str:
    return json.dumps({"action": action, "project": {**project, "label_config": CONFIG},
                       "annotation": {"id": annotation_id, "task": task + 1, "was_cancelled": False,
                                      "updated_at": f"2026-01-02T04:00:{annotation_id % 60:02d}Z",
                                      "result": [{"from_name": "code", "to_name": "img", "type": "choices",
                                                  "value": {"choices": [choice]}}]},
                       "task": tasks(world, [task])[0]})


def setup(url: str, project: str = KEY, schema: str = CONFIG) -> httpx.Response:
    return httpx.post(f"{url}/setup", json={"project": project, "schema": schema, "hostname": "http://localhost:8080",
                                            "access_token": "x", "extra_params": None}, timeout=60)


def accuracy(result: dict, world: dict, ids: list[int]) -> float:
    chosen = [r["result"][0]["value"]["choices"][0] for r in result["results"]]
    return float(np.mean([c == world["truth"][i] for c, i in zip(chosen, ids, strict=True)]))


def test_health_setup_and_one_prediction_per_task_in_the_projects_choices(serve: str, world: dict) -> None:
    assert httpx.get(f"{serve}/health").json()["status"] == "UP"
    version = setup(serve).json()["model_version"]
    result = predict(serve, world, range(30))
    assert result["model_version"] == version and len(result["results"]) == 30
    for item in result["results"]:
        assert item["model_version"] == version and 0 <= item["score"] < 1
        (choice,) = item["result"]
        assert choice["from_name"] == "code" and choice["to_name"] == "img" and choice["type"] == "choices"
        assert choice["value"]["choices"][0] in CODES.values() and 0 < choice["score"] <= 1  # the confidence
    assert sorted(r["score"] for r in result["results"]) == [round(i / 30, 6) for i in range(30)]  # a strict order


def test_annotations_teach_the_next_predictions_which_carry_a_new_model_version(serve: str, world: dict) -> None:
    before = setup(serve).json()["model_version"]
    others = list(range(6, 30))
    zero_shot = accuracy(predict(serve, world, others), world, others)
    for k, task in enumerate(range(6)):  # two of each code
        assert annotate(serve, world, task, world["truth"][task], 100 + k).status_code == 200
    after = setup(serve).json()["model_version"]
    result = predict(serve, world, others)
    assert after != before and result["model_version"] == after
    assert accuracy(result, world, others) == 1.0 > zero_shot


def test_an_updated_or_deleted_annotation_changes_what_was_learnt(serve: str, world: dict) -> None:
    zero_shot = setup(serve).json()["model_version"]
    annotate(serve, world, 0, "P-1", 1)
    annotate(serve, world, 1, "P-2", 2)
    learnt = setup(serve).json()["model_version"]
    annotate(serve, world, 1, "P-3", 2, action="ANNOTATION_UPDATED")
    changed = setup(serve).json()["model_version"]
    assert len({zero_shot, learnt, changed}) == 3
    deleted = httpx.post(f"{serve}/webhook", json={"action": "ANNOTATIONS_DELETED", "project": PROJECT,
                                                    "annotations": [{"id": 1}, {"id": 2}]})
    assert deleted.status_code == 200 and setup(serve).json()["model_version"] == zero_shot


def test_a_restarted_backend_knows_what_each_project_learnt_and_projects_do_not_mix(
        world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = {"id": 4, "created_at": "2026-01-02T03:04:05Z"}
    served = _served(world, tmp_path, monkeypatch)
    url = next(served)
    fresh = setup(url).json()["model_version"]
    annotate(url, world, 0, "P-1", 1)
    annotate(url, world, 1, "P-2", 2)
    learnt = setup(url).json()["model_version"]
    assert setup(url, "4.1767323045").json()["model_version"] == fresh  # project 4 learnt nothing
    annotate(url, world, 2, "P-3", 3, project=other)
    assert setup(url).json()["model_version"] == learnt  # project 3 did not learn project 4's annotation
    served.close()
    restarted = _served(world, tmp_path, monkeypatch)
    url = next(restarted)
    assert setup(url).json()["model_version"] == learnt
    restarted.close()


def test_the_first_tasks_in_score_order_cover_every_class(serve: str, world: dict) -> None:
    """Cold start: the review order starts with typical images of different regions, not one class's."""
    result = predict(serve, world, range(30))
    first = sorted(range(30), key=lambda i: result["results"][i]["score"])[:3]
    assert sorted(world["truth"][i] for i in first) == sorted(CODES.values())


def test_labelling_down_the_list_follows_one_plan_when_predictions_are_retrieved_again(serve: str,
                                                                                    world: dict) -> None:
    """The plan's head stays in front, in its order, while it is labelled: a re-plan after every label would
    start over each time (and chose worse)."""
    def order() -> list[int]:
        result = predict(serve, world, range(30))["results"]
        return sorted(range(30), key=lambda i: result[i]["score"])

    first = order()
    annotate(serve, world, first[0], world["truth"][first[0]], 1)
    annotate(serve, world, first[1], world["truth"][first[1]], 2)
    again = order()
    assert again[:5] == first[2:7]
    assert {predict(serve, world, first[:2])["results"][k]["score"] for k in range(2)} == {1.0}  # labelled: last


def test_bad_requests_are_answered_with_one_line_and_the_server_lives_on(serve: str, world: dict) -> None:
    not_json = httpx.post(f"{serve}/predict", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    assert httpx.post(f"{serve}/predict", json=[1, 2]).status_code == 400
    assert httpx.post(f"{serve}/predict", json={"tasks": "x", "project": KEY, "label_config": CONFIG}).status_code \
        == 400
    assert httpx.post(f"{serve}/nowhere", json={}).status_code == 404
    bad_project = httpx.post(f"{serve}/setup", json={"project": "../../x", "schema": CONFIG})
    assert bad_project.status_code == 400 and "project" in bad_project.json()["error"]
    mismatch = setup(serve, schema=config(["P-1", "P-2", "P-9"]))
    assert mismatch.status_code == 422
    assert "not in the spec: P-9; not in the config: P-3" in mismatch.json()["error"]
    assert "not in the spec: P-9" in mismatch.reason_phrase  # what Label Studio shows (it keeps the reason)
    assert setup(serve, schema=config(list(CODES.values()), multiple=True)).status_code == 422
    unknown = annotate(serve, world, 0, "P-7", 5)
    assert unknown.status_code == 400 and "'P-7' is not a label of the spec" in unknown.json()["error"]
    assert httpx.post(f"{serve}/webhook", json={"action": "PROJECT_UPDATED", "project": PROJECT}).json()[
        "status"] == "ignored"
    broken = httpx.post(f"{serve}/predict", json={"tasks": [
        {"id": 90, "data": {"picture": "/data/local-files/?d=shots/broken.png"}},
        {"id": 91, "data": {"picture": "/data/local-files/?d=../../etc/passwd"}},
        {"id": 92, "data": {"picture": "/data/upload/1/x.png"}},  # no LABEL_STUDIO_URL to fetch it from
        {"id": 93, "data": {}}, *tasks(world, [0])], "project": KEY, "label_config": CONFIG}).json()["results"]
    assert [r["result"] for r in broken[:4]] == [[], [], [], []] and broken[4]["result"]
    assert "not a recognised image" in broken[0]["error"] and "leaves the local-files document root" in broken[1][
        "error"] and "LABEL_STUDIO_URL" in broken[2]["error"]
    assert httpx.get(f"{serve}/health").status_code == 200


def test_a_request_over_the_size_limit_is_refused_unread(serve: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from autolabel.serve import server

    monkeypatch.setattr(server, "MAX_BODY", 1000)
    refused = httpx.post(f"{serve}/predict", content=b" " * 2000, headers={"Content-Type": "application/json"})
    assert refused.status_code == 413 and "at most" in refused.json()["error"]


def test_serve_refuses_a_busy_port_before_loading_the_model(world: dict) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(world["spec"]), "--model", "/nonexistent", "--port",
                                           str(port)])
    assert result.exit_code == 2 and f"--port {port}: cannot listen there" in result.output


def test_a_multi_label_spec_predicts_every_class_over_its_threshold_and_learns_label_sets(
        world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autolabel.core.spec import load_spec
    from autolabel.serve.backend import Backend

    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(world["root"] / "files"))
    spec = tmp_path / "multi.yaml"
    spec.write_text(json.dumps({"templates": ["a photo of a {label}."], "classes": list(CODES.values()),
                                "multi_label": True}))
    backend = Backend(load_spec(spec), _model(), None, tmp_path / "serve")
    multiple = config(list(CODES.values()), multiple=True)
    assert backend.setup({"project": KEY, "schema": multiple})["model_version"].endswith("zero-shot")
    for k in range(6):
        backend.webhook({"action": "ANNOTATION_CREATED", "project": {**PROJECT, "label_config": multiple},
                         "annotation": {"id": k + 1, "task": k + 1, "result": [
                             {"from_name": "code", "to_name": "img", "type": "choices",
                              "value": {"choices": [world["truth"][k]]}}]},
                         "task": {"id": k + 1, "data": {"picture": world["images"][k]}}})
    result = backend.predict({"tasks": [{"id": i + 1, "data": {"picture": world["images"][i]}} for i in range(30)],
                              "project": KEY, "label_config": multiple})
    assert "6ex" in result["model_version"]
    chosen = [set(r["result"][0]["value"]["choices"]) if r["result"] else set() for r in result["results"]]
    assert all(c <= set(CODES.values()) for c in chosen)
    assert np.mean([world["truth"][i] in chosen[i] for i in range(6, 30)]) >= 0.9


def test_task_image_urls_map_to_the_document_root_the_server_or_the_storage(tmp_path: Path) -> None:
    import base64

    from autolabel.embedding.decode import DecodeError
    from autolabel.serve.images import TaskImages

    on_disk = TaskImages("http://ls:8080", "key", tmp_path)
    assert on_disk.location("/data/local-files/?d=a/b%20c.png") == str((tmp_path / "a" / "b c.png").resolve())
    served = TaskImages("http://ls:8080/", "key")
    assert served.location("/data/local-files/?d=a/b.png") == "http://ls:8080/data/local-files/?d=a/b.png"
    assert served.location("/data/upload/3/x.png") == "http://ls:8080/data/upload/3/x.png"
    assert served.location("https://cdn.example.com/x.png") == "https://cdn.example.com/x.png"
    presign = served.location("s3://bucket/x.png", 7)
    assert presign.startswith("http://ls:8080/tasks/7/presign/?fileuri=")
    assert base64.urlsafe_b64decode(presign.split("=", 1)[1].replace("%3D", "=")) == b"s3://bucket/x.png"
    assert TaskImages().location("s3://bucket/x.png", 7) == "s3://bucket/x.png"  # this machine's credentials
    with pytest.raises(DecodeError, match="LABEL_STUDIO_URL"):
        TaskImages().location("/data/upload/3/x.png")
    with pytest.raises(DecodeError, match="not an image URL"):
        served.location("ftp-ish thing")


def test_start_training_sends_every_annotation_and_they_replace_what_was_kept(serve: str, world: dict) -> None:
    annotate(serve, world, 0, "P-1", 1)
    annotate(serve, world, 1, "P-2", 2)
    both = setup(serve).json()["model_version"]
    annotate(serve, world, 2, "P-3", 3)
    annotated = [{**t, "annotations": [{"id": k + 1, "result": [{"from_name": "code", "to_name": "img",
                                                                 "type": "choices", "value": {"choices": [code]}}]}]}
                 for k, (t, code) in enumerate(zip(tasks(world, [0, 1]), ["P-1", "P-2"], strict=True))]
    trained = httpx.post(f"{serve}/train", json={"annotations": annotated, "project": KEY, "label_config": CONFIG})
    assert trained.status_code == 200 and trained.json()["model_version"] == both == setup(serve).json()[
        "model_version"]


def _backend(world: dict, state: Path, monkeypatch: pytest.MonkeyPatch, warnings: list[str] | None = None):
    from autolabel.core.spec import load_spec
    from autolabel.serve.backend import Backend

    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(world["root"] / "files"))
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    return Backend(load_spec(world["spec"]), _model(), None, state / "serve",
                   warn=(warnings if warnings is not None else []).append)


def _annotated(world: dict, ids: list[int], first_id: int) -> list[dict]:
    """Tasks as Label Studio's task list gives them: each with its annotation of the true code."""
    return [{**t, "annotations": [{"id": first_id + k, "was_cancelled": False, "result": [
        {"from_name": "code", "to_name": "img", "type": "choices", "value": {"choices": [world["truth"][i]]}}]}]}
        for k, (i, t) in enumerate(zip(ids, tasks(world, ids), strict=True))]


def test_start_training_catches_up_on_annotations_made_while_the_backend_was_down(
        world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autolabel.core.errors import SourceError
    from autolabel.review.exporters import label_studio_api

    warnings: list[str] = []
    backend = _backend(world, tmp_path, monkeypatch, warnings)
    backend.setup({"project": KEY, "schema": CONFIG, "hostname": "http://ls:8080", "access_token": "tok"})
    backend.webhook(json.loads(annotate_payload(world, 0, "P-2", 1)))  # a wrong label, corrected while down
    asked: list[tuple] = []

    def held(url: str | None, key: str | None, project_id: int) -> list[dict]:
        asked.append((url, key, project_id))
        return _annotated(world, list(range(6)), 10)

    monkeypatch.setattr(label_studio_api, "project_tasks", held)
    start = {"action": "START_TRAINING", "project": {**PROJECT, "label_config": CONFIG}}
    trained = backend.webhook(start)
    assert asked == [("http://ls:8080", "tok", 3)] and "-6ex-" in trained["model_version"]
    project = backend.projects[KEY]
    assert sorted(project.store.annotations) == list(range(10, 16))  # Label Studio's replace what was kept
    assert project.store.annotations[10].labels == (world["truth"][0],)

    def down(*_: object) -> list[dict]:
        raise SourceError("lost Label Studio while trying to list the project's tasks (refused)")

    monkeypatch.setattr(label_studio_api, "project_tasks", down)
    assert backend.webhook(start)["model_version"] == trained["model_version"]  # what was kept is refitted
    assert len([w for w in warnings if "cannot read its annotations from Label Studio" in w]) == 1

    deleted = backend.webhook({"action": "TASKS_DELETED", "project": PROJECT, "tasks": [{"id": 1}, {"id": 2}]})
    assert "-4ex-" in deleted["model_version"] and sorted(project.store.annotations) == list(range(12, 16))


def test_an_edited_image_is_embedded_again(world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import shutil

    from autolabel.core.spec import load_spec
    from autolabel.embedding.cache import EmbeddingCache
    from autolabel.serve.backend import Backend

    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(tmp_path))
    backend = Backend(load_spec(world["spec"]), _model(), EmbeddingCache(tmp_path / "cache"), tmp_path / "serve")
    shots = world["root"] / "files" / "shots"
    picture, edits = tmp_path / "x.png", [0]

    def embedding_of(source: str) -> np.ndarray:
        shutil.copyfile(shots / source, picture)
        edits[0] += 1
        os.utime(picture, ns=(0, 10**18 + edits[0] * 10**9))  # each edit a later mtime, however coarse the clock
        backend.predict({"tasks": [{"id": 1, "data": {"picture": "/data/local-files/?d=x.png"}}], "project": KEY,
                         "label_config": CONFIG})
        return backend.projects[KEY].pool[1]

    circle, square = embedding_of("00.png"), embedding_of("01.png")
    assert not np.allclose(circle, square)
    assert np.allclose(embedding_of("00.png"), circle)  # and the cache still knows the first content


def test_a_long_prediction_of_one_project_does_not_hold_up_another_projects(
        world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autolabel.embedding.decode import DecodeError
    from autolabel.serve.images import TaskImages

    backend = _backend(world, tmp_path, monkeypatch)
    reading, release = threading.Event(), threading.Event()

    class Stuck(TaskImages):
        def read(self, location: str) -> bytes:  # a server that answers once the other project is done
            reading.set()
            release.wait(60)
            raise DecodeError(f"{location}: unreadable")

    backend.setup({"project": KEY, "schema": CONFIG})
    backend.projects[KEY].images = Stuck(document_root=world["root"] / "files")
    answers: dict[str, dict] = {}

    def ask(project: str, ids: list[int]) -> None:
        answers[project] = backend.predict({"tasks": tasks(world, ids), "project": project, "label_config": CONFIG})

    slow = threading.Thread(target=ask, args=(KEY, list(range(20))))
    slow.start()
    assert reading.wait(60)
    fast = threading.Thread(target=ask, args=("4.1767323045", [0]))
    fast.start()
    fast.join(30)  # (only a failure waits: before, the global lock held it until `release`)
    finished_first = not fast.is_alive() and KEY not in answers
    release.set()
    slow.join(60)
    fast.join(60)
    assert finished_first and answers["4.1767323045"]["results"][0]["result"]
    assert all(r["result"] == [] and "unreadable" in r["error"] for r in answers[KEY]["results"])


def test_bad_examples_are_refused_before_torch_is_imported(world: dict, tmp_path: Path) -> None:
    """Exit 2, always: with torch's thread pools started next to pyarrow's (the CSV read), the error exit
    sometimes aborted in their teardown (exit 134, "terminate called without an active exception")."""
    import subprocess
    import sys

    table = tmp_path / "ex.csv"
    table.write_text("path,label\na.png,nonsense\n")
    probe = ("import sys\nfrom autolabel.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    print('torch' in sys.modules, e.code)\n")
    done = subprocess.run([sys.executable, "-c", probe, "serve", str(world["spec"]), "--model", str(MODEL), "--port",
                           "0", "--examples", str(table), "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert done.stdout.split() == ["False", "2"] and "'nonsense' are not in the label spec" in done.stderr


def test_config_messages_name_the_export_flag_and_the_compared_value_or_alias(
        world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autolabel.core.spec import load_spec
    from autolabel.serve.labelconfig import ConfigError, parse

    spec = load_spec(world["spec"])
    with pytest.raises(ConfigError, match="autolabel export --to label-studio"):
        parse('<View><Image name="img" value="$picture"/></View>', spec)
    aliased = CONFIG.replace('<Choice value="P-1"/>', '<Choice value="Part 1" alias="P-1"/>')
    assert parse(aliased, spec).choice_of["P-1"] == "P-1"  # the alias is the spec's class: matched by it
    with pytest.raises(ConfigError) as refused:
        parse(CONFIG.replace('<Choice value="P-1"/>', '<Choice value="Part 101" alias="P-101"/>'), spec)
    assert 'not in the spec: value "Part 101" (alias "P-101"); not in the config: P-1' in str(refused.value)
    said: list[str] = []
    backend = _backend(world, tmp_path, monkeypatch)
    backend.info = said.append
    backend.predict({"tasks": tasks(world, [0]), "project": KEY, "label_config": CONFIG})
    assert any(line.endswith("zero-shot: no annotations yet: zero-shot") for line in said)
