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
from autolabel.core.errors import SourceError
from autolabel.review.exporters.base import folder_name, safe_names
from autolabel.table.results import load_results

from .conftest import finishes, noise_image

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


def load_hf_imagefolder(folder: Path, monkeypatch) -> dict[str, dict]:
    """The export loaded by `datasets` offline (its cache beside the folder): records by path."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(folder.parent / "hf-cache"))
    from datasets import load_dataset

    return {r["path"]: r for r in load_dataset("imagefolder", data_dir=str(folder), split="train")}


def test_hf_imagefolder_loads_with_datasets_offline(labelled: Path, tmp_path: Path, monkeypatch) -> None:
    rows = export(labelled, "hf", tmp_path / "hf")
    by_path = load_hf_imagefolder(tmp_path / "hf", monkeypatch)
    assert len(by_path) == len(rows)
    for row in rows.itertuples():
        record = by_path[row.path]
        assert record["label"] == row.label and record["confidence"] == pytest.approx(row.confidence)
        square = row.path == "../up.png" or row.path.endswith("/absolute.png")  # the two 40×40 images
        assert record["image"].size == ((40, 40) if square else (48, 40))


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


def _tree(folder: Path) -> dict[str, str]:
    """Every entry under folder → 'dir', 'link' or the file's text (for the user's own files)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        out[rel] = "link" if p.is_symlink() else "dir" if p.is_dir() else "file"
    return out


def test_overwrite_removes_only_what_our_export_wrote(labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "c1"
    export(labelled, "cvat", out)
    ours = _tree(out)
    (out / "mine.txt").write_text("keep")
    (out / "images" / "my-photo.png").write_text("keep too")  # the user's file in a folder of ours
    export(labelled, "cvat", out, "--overwrite", "--status", "review")
    assert (out / "mine.txt").read_text() == "keep" and (out / "images" / "my-photo.png").read_text() == "keep too"
    review = pd.read_parquet(labelled).query("status == 'review'")
    assert len(list((out / "images").iterdir())) == len(review) + 1
    assert set(_tree(out)) < set(ours) | {"mine.txt", "images/my-photo.png"}


def test_imagefolder_overwrite_removes_the_earlier_export_and_keeps_the_folder_clean(labelled: Path,
                                                                                    tmp_path: Path) -> None:
    out = tmp_path / "if"
    export(labelled, "imagefolder", out)
    assert "_review" in _tree(out) and not any(p.name.startswith(".") for p in out.rglob("*"))
    marker = tmp_path / ".if.autolabel-export.json"  # beside the folder: Datumaro reads every file inside it
    assert json.loads(marker.read_text())["format"] == "imagefolder"
    (out / "notes.md").write_text("mine")
    export(labelled, "imagefolder", out, "--overwrite", "--status", "accepted")
    assert "_review" not in _tree(out) and (out / "notes.md").read_text() == "mine"


def test_overwrite_never_replaces_a_file_it_did_not_write(labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "ls"
    out.mkdir()
    (out / "tasks.json").write_text("my own tasks")
    result = CliRunner().invoke(main, ["export", str(labelled), "--to", "label-studio", "--out", str(out),
                                       "--overwrite"])
    assert result.exit_code == 2
    assert result.stderr == (f"error: --out {out}: tasks.json exists and was not written by an earlier export of "
                             "ours; move it away or choose another folder\n")
    assert _tree(out) == {"tasks.json": "file"} and (out / "tasks.json").read_text() == "my own tasks"


def test_an_interrupted_export_removes_what_it_wrote(labelled: Path, tmp_path: Path, monkeypatch) -> None:
    from autolabel.review.exporters import base

    real, calls = base.ExportContext.place, {"n": 0}

    def interrupted(self, row, *parts):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, row, *parts)

    monkeypatch.setattr(base.ExportContext, "place", interrupted)
    out = tmp_path / "hf"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = CliRunner().invoke(main, ["export", str(labelled), "--to", "hf", "--out", str(out), "--overwrite"])
    assert result.exit_code == 130
    assert result.stderr == "interrupted: the files written so far were removed\n"
    assert _tree(out) == {"mine.txt": "file"}


def test_export_and_report_find_images_from_any_directory(labelled: Path, tmp_path: Path, monkeypatch) -> None:
    """A table records `images_root` (absolute); tables without it resolve SOURCE against their own folder."""
    import pyarrow.parquet as pq

    from autolabel.table.files import read_metadata
    from autolabel.table.format import METADATA_KEY

    meta = read_metadata(labelled)
    root = Path(meta["source"]).parent
    table = pq.read_table(labelled)
    monkeypatch.chdir(tmp_path)
    for name, recorded in (("new.parquet", {"images_root": str(root), "source": "data/manifest.csv"}),
                           ("old.parquet", {"source": "data/manifest.csv"})):
        target = root.parent / name  # the folder `run` was started in, so SOURCE was data/manifest.csv
        fields = {**meta, **recorded}
        if "images_root" not in recorded:
            fields.pop("images_root", None)
        pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(fields).encode()}), target)
        rows = export(target, "hf", tmp_path / f"hf-{name}")
        assert len(list((tmp_path / f"hf-{name}" / "images").iterdir())) == len(rows)
        assert load_results(target).images_root() == root
        report = CliRunner().invoke(main, ["report", str(target), "--out", str(tmp_path / f"{name}.html")])
        assert report.exit_code == 0, report.output
        html = (tmp_path / f"{name}.html").read_text()
        assert html.count("data:image/jpeg;base64,") > 0 and "no image" not in html


def _with_rows(labelled: Path, target: Path, keep) -> Path:
    """A copy of the table (run metadata kept) with only the rows `keep` selects."""
    import pyarrow.parquet as pq

    frame = pd.read_parquet(labelled)
    table = pa.Table.from_pandas(frame[keep(frame)].reset_index(drop=True), preserve_index=False)
    pq.write_table(table.replace_schema_metadata(pq.read_schema(labelled).metadata), target)
    return target


def test_export_without_any_image_found_fails_before_writing(labelled: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    table = _with_rows(labelled, tmp_path / "relative.parquet", lambda f: ~f.path.str.startswith("/"))
    result = CliRunner().invoke(main, ["export", str(table), "--to", "cvat", "--out", str(tmp_path / "c"),
                                       "--images-root", str(tmp_path / "empty")])
    assert result.exit_code == 2
    n = int((pd.read_parquet(table).status != "error").sum())
    assert result.stderr == (f"error: {table}: none of its {n} images was found under {tmp_path / 'empty'} (e.g. "
                             f"a/img.png → {tmp_path / 'empty' / 'a/img.png'}); pass --images-root with the folder "
                             "its paths are relative to\n")
    assert not (tmp_path / "c").exists()


def test_export_with_no_row_of_the_status_writes_nothing_and_says_so(tmp_path: Path, labelled: Path) -> None:
    table = _with_rows(labelled, tmp_path / "no-review.parquet", lambda f: f.status != "review")
    frame = pd.read_parquet(table)
    result = CliRunner().invoke(main, ["export", str(table), "--to", "cvat", "--out", str(tmp_path / "c"),
                                       "--status", "review"])
    assert result.exit_code == 0
    assert result.stderr == (f"nothing to export: {table} has no labelled rows with status review ({len(frame)} "
                             f"rows); {tmp_path / 'c'} was not written\n")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(("where", "message"), [
    ("{tmp}/file.txt/out", "{tmp}/file.txt is a file, not a folder; choose another location"),
    ("{tmp}/file.txt", "is a file, not a folder; choose a folder"),
    ("/proc/export", "cannot write there"),
    ("{tmp}/" + "x" * 256, "is longer than 255 bytes; choose a shorter or plain name"),
])
def test_export_to_an_unwritable_place_is_one_line(labelled: Path, tmp_path: Path, where: str, message: str) -> None:
    (tmp_path / "file.txt").write_text("user data")
    target = where.format(tmp=tmp_path)
    result = CliRunner().invoke(main, ["export", str(labelled), "--to", "hf", "--out", target])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: --out {target}: ") and message.format(tmp=tmp_path) in result.stderr
    assert (tmp_path / "file.txt").read_text() == "user data"


def test_xml_exports_stay_well_formed_with_control_characters(labelled: Path, tmp_path: Path) -> None:
    """The spec refuses control characters in names; a table written otherwise must still give valid XML."""
    import xml.etree.ElementTree as ET

    from autolabel.review.exporters import export as write_export

    results = load_results(labelled)
    results.classes = ["bad\x00name", "bell\x07", *results.classes[2:]]
    results.frame["label"] = results.frame["label"].replace({CLASSES[0]: "bad\x00name", CLASSES[1]: "bell\x07"})
    write_export(results, "cvat", tmp_path / "cvat")
    write_export(results, "label-studio", tmp_path / "ls")
    cvat = ET.fromstring((tmp_path / "cvat" / "annotations.xml").read_bytes())
    assert [n.text for n in cvat.iter("name") if n.text and "\ufffd" in n.text] == ["bad\ufffdname", "bell\ufffd"]
    config = ET.fromstring((tmp_path / "ls" / "config.xml").read_text())
    assert [c.get("value") for c in config.iter("Choice")][:2] == ["bad\ufffdname", "bell\ufffd"]


@pytest.mark.parametrize(("content", "message"), [
    (json.dumps([{"data": {"path": "a.png"}, "annotations": [{"result": "cat"}]}]),
     "{p}: task [0] annotations[0].result must be a list, got str; is this a Label Studio JSON export of the tasks?"),
    (json.dumps([{"data": {"path": "a.png"}, "annotations": [{"result": [{"type": "choices", "value": "cat"}]}]}]),
     "{p}: task [0] annotations[0].result[0].value must be an object, got str; is this a Label Studio JSON export "
     "of the tasks?"),
    (json.dumps([1, 2]), "{p}: task [0] must be an object, got int; is this a Label Studio JSON export of the tasks?"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "{p}: cannot read it (a Label Studio export is not UTF-8 text (byte 0))"),
    ("[" * 100000, "{p}: not a Label Studio JSON export ("),
])
def test_import_review_of_a_malformed_export_is_one_line(labelled: Path, tmp_path: Path, content,
                                                         message: str) -> None:
    exported = tmp_path / "export.json"
    exported.write_bytes(content if isinstance(content, bytes) else content.encode())
    table = tmp_path / "labels.parquet"
    table.write_bytes(labelled.read_bytes())
    result = CliRunner().invoke(main, ["import-review", str(exported), "--into", str(table)])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: " + message.format(p=exported))
    assert table.read_bytes() == labelled.read_bytes()


def test_import_review_of_a_binary_xml_file_is_one_line(labelled: Path, tmp_path: Path) -> None:
    exported = tmp_path / "annotations.xml"
    exported.write_bytes(bytes(range(256)))
    result = CliRunner().invoke(main, ["import-review", str(exported), "--into", str(labelled)])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {exported}: not a CVAT XML export (not well-formed (invalid token): line 1, "
                             "column 0)\n")


def test_fifo_review_exports_and_tables_are_refused_without_blocking(tmp_path: Path) -> None:
    from autolabel.review.exporters import read_review

    fifo = "not a regular file (a FIFO); only regular files are read"
    for name in ("export.json", "annotations.xml", "labels.parquet"):
        os.mkfifo(tmp_path / name)
    for job, message in [
        (lambda: read_review(tmp_path / "export.json"), f"{tmp_path / 'export.json'}: cannot read it ({fifo})"),
        (lambda: read_review(tmp_path / "annotations.xml"), f"{tmp_path / 'annotations.xml'}: cannot read it ({fifo})"),
        (lambda: load_results(tmp_path / "labels.parquet"),
         f"{tmp_path / 'labels.parquet'}: cannot read labels table ({fifo})"),
    ]:
        outcome = finishes(job)
        assert isinstance(outcome, SourceError) and str(outcome) == message


@pytest.mark.parametrize("existing", [False, True])
def test_an_export_failing_on_a_full_disk_removes_the_folder_it_created(labelled: Path, tmp_path: Path, monkeypatch,
                                                                        existing: bool) -> None:
    import errno

    from autolabel.review.exporters import base

    def full(self, name, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.out / name))

    monkeypatch.setattr(base.ExportContext, "write_text", full)
    out = tmp_path / "new" / "ex"
    if existing:
        out.mkdir(parents=True)
    result = CliRunner().invoke(main, ["export", str(labelled), "--to", "hf", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {out / 'metadata.jsonl'}: the disk is full: free space there, or write to " \
                            "another disk\n"
    if existing:  # the user's folder stays, empty as it was
        assert out.is_dir() and _tree(out) == {}
    else:  # --out and the parent this export made are gone
        assert not (tmp_path / "new").exists()


def test_export_offers_every_format_the_library_writes() -> None:
    """`--to`'s choices are spelled in the CLI (so `--help` imports no exporter); they must name every format."""
    from autolabel.cli.annotation import export
    from autolabel.review.exporters import FORMATS

    choices = next(p for p in export.params if p.name == "fmt").type.choices
    assert sorted(choices) == sorted(FORMATS)
