"""Exports validated by each tool's own library; import-review round trips; --out safety."""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.exporters.base import folder_name, safe_names
from autolabel.results import load_results

from .conftest import noise_image

CLASSES = ["red car", "a/b", "ünïcödé", "<tag> & \"quote\""]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path) -> Path:
    """A real run over awkward paths (same names in two folders, `..`, absolute) and awkward class names."""
    base = tmp_path_factory.mktemp("export-src")
    root = base / "data"
    rows = []
    for i, rel in enumerate(["a/img.png", "b/img.png", "c/photo.jpg", "c/photo.png", "d/x y.png", "e/f/g.png",
                             "h.png", "i.png", "j.png", "k.png"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        noise_image(i, (48, 40)).save(root / rel)
        rows.append(rel)
    noise_image(50, (40, 40)).save(base / "up.png")
    rows.append("../up.png")
    noise_image(51, (40, 40)).save(base / "absolute.png")
    rows.append(str(base / "absolute.png"))
    (root / "broken.png").write_bytes(b"")
    rows.append("broken.png")
    pd.DataFrame({"path": rows}).to_csv(root / "manifest.csv", index=False)
    spec = base / "spec.yaml"
    spec.write_text(json.dumps({"templates": ["a photo of a {label}."], "classes": CLASSES}))
    out = base / "labels.parquet"
    result = CliRunner().invoke(main, ["run", str(root / "manifest.csv"), "--labels", str(spec), "--out", str(out),
                                       "--model", str(tiny_clip), "-q"])
    assert result.exit_code == 0, result.output
    # The random tiny model is confident about everything: send every third image to review.
    table = pq.read_table(out)
    status = [("review" if i % 3 == 0 else s) if s != "error" else s for i, s in enumerate(table["status"].to_pylist())]
    pq.write_table(table.set_column(table.schema.get_field_index("status"), "status", pa.array(status)), out)
    assert set(status) == {"accepted", "review", "error"}
    return out


def export(labelled: Path, fmt: str, out: Path, *extra: str):
    result = CliRunner().invoke(main, ["export", str(labelled), "--to", fmt, "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return pd.read_parquet(labelled).query("status != 'error'").reset_index(drop=True)


def test_safe_names_are_flat_unique_and_contained() -> None:
    names = safe_names(["a/img.png", "b/img.png", "../../etc/passwd.png", "/abs/x.JPG", "c/IMG.png", "c/img.jpg"])
    assert len(set(n.casefold() for n in names)) == 6
    assert all("/" not in n and not n.startswith(".") for n in names)
    assert names[3].endswith(".jpg") and ".." not in "".join(names)
    stems = [Path(n).stem.casefold() for n in names]
    assert len(set(stems)) == 6  # formats that key images by stem never collide
    assert folder_name("a/b") != "a/b" and "/" not in folder_name("a/b") and folder_name("..") == "_.."


def test_label_studio_tasks_and_config_validate_with_the_sdk(labelled: Path, tmp_path: Path) -> None:
    from label_studio_sdk.label_interface import LabelInterface

    rows = export(labelled, "label-studio", tmp_path / "ls")
    interface = LabelInterface((tmp_path / "ls" / "config.xml").read_text())
    interface.validate()
    assert set(interface.get_control("label").labels) == set(CLASSES)
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert len(tasks) == len(rows)
    for task, row in zip(tasks, rows.itertuples(), strict=True):
        prediction = task["predictions"][0]
        assert interface.validate_prediction(prediction)
        assert prediction["result"][0]["value"]["choices"] == [row.label]
        assert prediction["score"] == pytest.approx(row.confidence)
        assert task["data"]["image"].startswith("/data/local-files/?d=")
    prefixed = export(labelled, "label-studio", tmp_path / "ls2", "--url-prefix", "https://cdn.example/ds/",
                      "--status", "review")
    tasks = json.loads((tmp_path / "ls2" / "tasks.json").read_text())
    assert len(tasks) == len(prefixed[prefixed.status == "review"])
    assert all(t["data"]["image"].startswith("https://cdn.example/ds/") for t in tasks)


def _datumaro_labels(path: Path, fmt: str) -> dict[str, tuple[str, float | None, bool]]:
    from datumaro import Dataset

    dataset = Dataset.import_from(str(path), fmt)
    names = dataset.categories()[__import__("datumaro").AnnotationType.label]
    out = {}
    for item in dataset:
        (ann,) = item.annotations
        media = item.media.path if item.media is not None else ""
        out[item.id] = (names[ann.label].name, ann.attributes.get("score"), os.path.isfile(media))
    return out


@pytest.mark.parametrize(("fmt", "datumaro_format", "link"), [("cvat", "cvat", "symlink"),
                                                              ("open-images", "open_images", "copy")])
def test_scored_exports_import_in_datumaro(labelled: Path, tmp_path: Path, fmt: str, datumaro_format: str,
                                           link: str) -> None:
    rows = export(labelled, fmt, tmp_path / fmt, "--link", link)
    got = _datumaro_labels(tmp_path / fmt, datumaro_format)
    assert len(got) == len(rows)
    for name, row in zip(safe_names(list(rows.path)), rows.itertuples(), strict=True):
        label, score, present = got[Path(name).stem]
        assert label == row.label and present and score == pytest.approx(row.confidence, abs=1e-6)


def test_imagefolder_export_imports_in_datumaro(labelled: Path, tmp_path: Path) -> None:
    rows = export(labelled, "imagefolder", tmp_path / "if", "--link", "hardlink")
    got = _datumaro_labels(tmp_path / "if", "imagenet")
    assert len(got) == len(rows)
    for name, row in zip(safe_names(list(rows.path)), rows.itertuples(), strict=True):
        folder = folder_name(row.label)
        expected = folder if row.status == "accepted" else f"_review/{folder}"
        label, _, present = got[f"{expected}:{Path(name).stem}"]
        assert label == expected and present


def test_hf_imagefolder_loads_with_datasets_offline(labelled: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    from datasets import load_dataset

    rows = export(labelled, "hf", tmp_path / "hf")
    dataset = load_dataset("imagefolder", data_dir=str(tmp_path / "hf"), split="train")
    assert len(dataset) == len(rows)
    by_path = {r["path"]: r for r in dataset}
    for row in rows.itertuples():
        record = by_path[row.path]
        assert record["label"] == row.label and record["confidence"] == pytest.approx(row.confidence)
        assert record["image"].size == (48, 40) or record["image"].size == (40, 40)


def test_fiftyone_layout_schema(labelled: Path, tmp_path: Path) -> None:
    """FiftyOne's importer needs its MongoDB; we check the documented FiftyOneImageClassificationDataset layout."""
    rows = export(labelled, "fiftyone", tmp_path / "fo", "--status", "accepted")
    data = json.loads((tmp_path / "fo" / "labels.json").read_text())
    assert data["classes"] == CLASSES
    accepted = rows[rows.status == "accepted"]
    assert len(data["labels"]) == len(accepted)
    files = {p.stem: p for p in (tmp_path / "fo" / "data").iterdir()}
    for uuid, target in data["labels"].items():
        assert files[uuid].is_file() and target["label"] in CLASSES and 0 <= target["confidence"] <= 1


def test_out_safety(labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "nonempty"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    refused = CliRunner().invoke(main, ["export", str(labelled), "--to", "hf", "--out", str(out)])
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    before = {p for p in tmp_path.parent.rglob("*")}
    export(labelled, "cvat", tmp_path / "c1")
    export(labelled, "cvat", tmp_path / "c1", "--overwrite")  # our own earlier export is replaced
    after = {p for p in tmp_path.parent.rglob("*")}
    assert all(tmp_path / "c1" in p.parents or p == tmp_path / "c1" for p in after - before)
    linked = list((tmp_path / "c1" / "images").iterdir())
    assert all(p.is_symlink() and p.resolve().is_file() for p in linked)


def test_import_review_round_trips_label_studio_and_cvat(labelled: Path, tmp_path: Path) -> None:
    table = tmp_path / "labels.parquet"
    table.write_bytes(labelled.read_bytes())
    original = pd.read_parquet(table)
    ok = original[original.status != "error"].reset_index(drop=True)
    # Label Studio's JSON export: tasks with annotations (one cancelled, one updated later).
    tasks = [
        {"id": 1, "data": {"image": "/data/local-files/?d=x", "path": ok.path[0]},
         "annotations": [{"id": 10, "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z",
                          "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                      "value": {"choices": [CLASSES[1]]}}]},
                         {"id": 11, "was_cancelled": False, "updated_at": "2026-01-02T00:00:00Z",
                          "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                      "value": {"choices": [CLASSES[2]]}}]}]},
        {"id": 2, "data": {"path": ok.path[1]},
         "annotations": [{"id": 12, "was_cancelled": True, "result": [{"type": "choices",
                                                                       "value": {"choices": [CLASSES[0]]}}]}]},
        {"id": 3, "data": {"path": "not/in/table.png"}, "annotations": [{"result": [
            {"type": "choices", "value": {"choices": [CLASSES[0]]}}]}]},
    ]
    ls_export = tmp_path / "ls-export.json"
    ls_export.write_text(json.dumps(tasks))
    result = CliRunner().invoke(main, ["import-review", str(ls_export), "--into", str(table)])
    assert result.exit_code == 0, result.output
    updated = pd.read_parquet(table)
    assert updated.loc[updated.path == ok.path[0], "reviewed_label"].item() == CLASSES[2]
    assert pd.isna(updated.loc[updated.path == ok.path[1], "reviewed_label"].item())
    assert updated["reviewed_by_human"].sum() == 1
    pd.testing.assert_frame_equal(updated[original.columns], original)
    assert load_results(table).metadata["classes"] == CLASSES  # run metadata kept
    # CVAT 1.1 XML export: a human tag on one image, an untouched auto tag on another.
    names = safe_names(list(ok.path))
    escaped = xml_escape(CLASSES[3], {'"': "&quot;"})
    xml = (f'<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version>'
           f'<image id="0" name="{names[2]}" width="48" height="40"><tag label="{escaped}" source="manual"/></image>'
           f'<image id="1" name="{names[3]}" width="48" height="40"><tag label="{CLASSES[0]}" source="auto"/></image>'
           f'</annotations>')
    cvat_export = tmp_path / "annotations.xml"
    cvat_export.write_text(xml)
    assert CliRunner().invoke(main, ["import-review", str(cvat_export), "--into", str(table)]).exit_code == 0
    updated = pd.read_parquet(table)
    assert updated.loc[updated.path == ok.path[2], "reviewed_label"].item() == CLASSES[3]
    assert updated.loc[updated.path == ok.path[0], "reviewed_label"].item() == CLASSES[2]  # earlier review kept
    assert pd.isna(updated.loc[updated.path == ok.path[3], "reviewed_label"].item())
    evaluated = CliRunner().invoke(main, ["eval", str(table), "--truth", "reviewed_label", "--json", "-"])
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["n"] == 2
