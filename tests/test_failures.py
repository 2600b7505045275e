"""Failures no command foresaw (a full disk, a refused write, a library's error, a bug): one line, no traceback."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.cli.failures import describe
from autolabel.embedding.cache import EmbeddingCache


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line(output: str) -> str:
    """The one line of the error (the tiny model's lint warnings come before it)."""
    assert "Traceback" not in output
    lines = [line for line in output.splitlines(keepends=True) if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def run_args(image_folder: Path, labels_yaml: Path, tiny_clip: Path, out: Path | str, *more: str) -> list[str]:
    return ["run", str(image_folder), "--labels", str(labels_yaml), "--out", str(out), "--model", str(tiny_clip),
            "-q", *more]


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")  # as pyarrow and file writes raise it: no file named


def test_full_disk_on_the_output_names_it_and_leaves_nothing(tmp_path, image_folder, labels_yaml, tiny_clip,
                                                             monkeypatch) -> None:
    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    out = tmp_path / "out" / "labels.parquet"
    result = invoke(*run_args(image_folder, labels_yaml, tiny_clip, out, "--no-cache"))
    assert result.exit_code == 1
    line = one_line(result.output)
    assert line == f"error: {out}: the disk is full: free space there, or write to another disk\n"
    assert list(out.parent.iterdir()) == []  # no partial table, no temp file


def test_full_disk_on_a_csv_output_too(tmp_path, image_folder, labels_yaml, tiny_clip, monkeypatch) -> None:
    import csv

    real = csv.writer

    class Full:
        def __init__(self, handle) -> None:
            self.rows = 0
            self.inner = real(handle)

        def writerow(self, row):
            self.rows += 1
            if self.rows > 1:  # the header fits, the first row does not
                disk_full()
            return self.inner.writerow(row)

    monkeypatch.setattr(csv, "writer", Full)
    out = tmp_path / "labels.csv"
    result = invoke(*run_args(image_folder, labels_yaml, tiny_clip, out, "--no-cache"))
    assert result.exit_code == 1
    assert one_line(result.output) == f"error: {out}: the disk is full: free space there, or write to another disk\n"
    assert not any(p.name.startswith(".labels.csv") or p.name.startswith("labels.csv") for p in tmp_path.iterdir())


def test_full_disk_on_a_shard_names_the_part(tmp_path, image_folder, labels_yaml, tiny_clip, monkeypatch) -> None:
    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    folder = tmp_path / "shards"
    result = invoke(*run_args(image_folder, labels_yaml, tiny_clip, f"{folder}/", "--no-cache"))
    assert result.exit_code == 1
    assert one_line(result.output) == (f"error: {folder / 'part-00000.parquet'}: the disk is full: free space "
                                       "there, or write to another disk\n")
    assert not list(folder.glob("*.parquet")) and not list(folder.glob(".part-*"))


class FullConnection:
    """An SQLite connection on a full disk: reads work, writes fail as SQLite reports it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def executemany(self, *args):
        raise sqlite3.OperationalError("database or disk is full")

    def __getattr__(self, name: str):
        return getattr(self.conn, name)


def test_full_disk_on_the_cache_says_free_space_or_no_cache(tmp_path, image_folder, labels_yaml, tiny_clip,
                                                            monkeypatch) -> None:
    real = EmbeddingCache.conn
    monkeypatch.setattr(EmbeddingCache, "conn", property(lambda self: FullConnection(real.fget(self))))
    cache, out = tmp_path / "cache", tmp_path / "labels.parquet"
    result = invoke(*run_args(image_folder, labels_yaml, tiny_clip, out, "--cache-dir", str(cache)))
    assert result.exit_code == 1
    assert one_line(result.output) == (f"error: the cache folder {cache} is full (database or disk is full): free "
                                       "space there, or pass --cache-dir DIR on another disk, or --no-cache\n")
    assert not out.exists()


def test_full_disk_on_a_json_file_names_it(tmp_path, image_folder, labels_yaml, tiny_clip, monkeypatch) -> None:
    out, summary = tmp_path / "labels.parquet", tmp_path / "summary.json"
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.startswith(".summary.json"):
            disk_full()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    result = invoke(*run_args(image_folder, labels_yaml, tiny_clip, out, "--no-cache", "--summary-json",
                              str(summary)))
    assert result.exit_code == 1
    assert one_line(result.output) == (f"error: {summary}: the disk is full: free space there, or write to "
                                       "another disk\n")
    assert not summary.exists() and not list(tmp_path.glob(".summary.json*"))


def test_a_bug_is_one_line_that_asks_for_a_report_and_v_shows_the_traceback(tmp_path, image_folder, labels_yaml,
                                                                           tiny_clip, monkeypatch) -> None:
    import autolabel.labelling.pipeline

    def broken(*args, **kwargs):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(autolabel.labelling.pipeline, "summarize", broken)
    args = run_args(image_folder, labels_yaml, tiny_clip, tmp_path / "labels.parquet", "--no-cache")
    result = invoke(*args)
    assert result.exit_code == 1
    assert one_line(result.output) == ("error: internal error (TypeError: unsupported operand); this is a bug in "
                                       "autolabel: please report it with the output of the same command run with "
                                       "-v\n")
    for verbose in (["-v", *args], [*args, "-v"]):  # the group's -v, and run's own
        result = CliRunner().invoke(main, verbose)
        assert result.exit_code == 1
        assert "Traceback (most recent call last)" in result.output
        assert "TypeError: unsupported operand" in result.output
        assert result.output.splitlines()[-1].startswith("error: internal error (TypeError")


@pytest.mark.parametrize(("exc", "line"), [
    (PermissionError(errno.EACCES, "Permission denied", "/data/out.csv"),
     "/data/out.csv: permission denied: check its permissions, or choose another location"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x.parquet"),
     "/mnt/ro/x.parquet: the file system is read-only: choose a writable location"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "/tmp/aaaa"),
     "/tmp/aaaa: the name is too long for this file system: choose a shorter name"),
    (OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device"),
     "the disk is full: free space there, or write to another disk"),
    (pa.ArrowInvalid("Parquet magic bytes not found in footer"),
     "Arrow/Parquet failed: Parquet magic bytes not found in footer"),
    (sqlite3.DatabaseError("file is not a database"), "SQLite failed: file is not a database"),
    (MemoryError(), "out of memory: use a smaller --batch-size or fewer --workers, or free memory"),
])
def test_describe_names_the_file_and_what_to_do(exc: BaseException, line: str) -> None:
    assert describe(exc) == (line, 1)


def test_describe_library_errors_by_their_module() -> None:
    import httpx
    import yaml

    assert describe(yaml.YAMLError("mapping values are not allowed\n here"))[0] == \
        "YAML failed: mapping values are not allowed here"
    assert describe(httpx.ConnectError("connection refused"))[0] == "HTTP failed: connection refused"
    from PIL import UnidentifiedImageError

    assert describe(UnidentifiedImageError("cannot identify image file 'x.png'")) == \
        ("cannot identify image file 'x.png': check the file and try again", 1)


def test_examples_given_an_image_folder_says_it_takes_a_table(tmp_path, image_folder, labels_yaml,
                                                              tiny_clip) -> None:
    result = invoke(*run_args(image_folder, labels_yaml, tiny_clip, tmp_path / "labels.parquet", "--examples",
                              str(image_folder)))
    assert result.exit_code == 2
    assert one_line(result.output) == (
        f"error: --examples {image_folder}: not a finished run's folder, nor a table of reviewed images; "
        "--examples takes a table "
        "(.parquet/.csv/.jsonl with path and label columns, e.g. a corrections CSV or a table import-review filled) "
        "or a shard folder `autolabel run --out DIR/` wrote; to learn from folders of images, give each class "
        "`examples: DIR/CLASS/*` in the label spec\n")
    assert not (tmp_path / "labels.parquet").exists()


def test_api_takes_one_examples_table_as_a_string(tmp_path, image_folder, tiny_clip) -> None:
    import autolabel

    table = tmp_path / "reviewed.csv"
    table.write_text(f"path,reviewed_label\n{image_folder / 'c.png'},dog\n")
    for given in (str(table), table):
        labeler = autolabel.Labeler(model=str(tiny_clip), classes=["cat", "dog", "bird"], examples=given,
                                    cache=False)
        frame = labeler.label(image_folder / "c.png")
        assert (frame.status[0], frame.label[0]) == ("reviewed", "dog")
        assert labeler.examples_tables == (str(table),)


@pytest.mark.parametrize("classes", ["cat dog", b"cat dog", {"cat": 1, "dog": 2}, 3])
def test_api_refuses_classes_that_are_not_a_list(classes, tiny_clip) -> None:
    import autolabel

    with pytest.raises(autolabel.UsageError, match=r"^classes= takes a list of class names, e\.g\. "
                                                   r"classes=\['cat', 'dog'\], not "):
        autolabel.Labeler(model=str(tiny_clip), classes=classes, cache=False)


def test_api_a_picture_without_pixels_is_an_error_row_and_none_is_refused(tiny_clip) -> None:
    from PIL import Image

    import autolabel

    labeler = autolabel.Labeler(model=str(tiny_clip), classes=["cat", "dog"], cache=False)
    frame = labeler.label([Image.new("RGB", (0, 0)), Image.new("RGB", (8, 8), "red"), Image.new("L", (5, 0))])
    assert list(frame.status[[0, 2]]) == ["error", "error"] and frame.status[1] != "error"
    assert frame.error[0] == "cannot use this image (the image has no pixels (0×0))"
    for nothing in (None, 42):
        with pytest.raises(autolabel.UsageError, match="^images: expected a path, a PIL image or a list of them, got "):
            labeler.label(nothing)


def test_a_csv_table_keeps_its_run_metadata_beside_it(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    """eval, report and export work on a CSV table without --labels, and the report finds its images."""
    import json

    import pandas as pd

    out = tmp_path / "labels.csv"
    assert invoke(*run_args(image_folder, labels_yaml, tiny_clip, out, "--no-cache")).exit_code == 0
    sidecar = json.loads((tmp_path / "labels.csv.autolabel.json").read_text())
    assert sidecar["table"] == "labels.csv" and sidecar["autolabel"]["classes"] == ["cat", "dog", "bird"]
    assert sidecar["autolabel"]["images_root"] == str(image_folder)
    frame = pd.read_csv(out)
    frame["truth"] = frame["label"]
    frame.to_csv(out, index=False)  # edited in a spreadsheet: the sidecar still describes the run
    evaluated = CliRunner().invoke(main, ["eval", str(out), "--truth", "truth", "--json", "-"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == 1.0
    report = tmp_path / "report.html"
    reported = invoke("report", str(out), "--out", str(report))
    assert reported.exit_code == 0, reported.output
    assert 'class="none">no image' not in report.read_text()  # every thumbnail found
    exported = invoke("export", str(out), "--to", "imagefolder", "--out", str(tmp_path / "export"))
    assert exported.exit_code == 0, exported.output
    assert "skipping" not in exported.output
    assert f"exported {(frame.status != 'error').sum()} images as imagefolder" in exported.output


def test_a_report_that_finds_no_image_says_pass_images_root(tmp_path, image_folder, labels_yaml,
                                                           tiny_clip) -> None:
    import pandas as pd

    out = tmp_path / "labels.csv"
    assert invoke(*run_args(image_folder, labels_yaml, tiny_clip, out, "--no-cache")).exit_code == 0
    elsewhere = tmp_path / "moved"
    image_folder.rename(elsewhere)
    report = tmp_path / "report.html"
    result = invoke("report", str(out), "--out", str(report))
    assert result.exit_code == 0  # the metrics stand; the line says why there are no thumbnails
    n = len(pd.read_csv(out))
    warned = [line for line in result.output.splitlines() if "none of its" in line]
    assert warned == [f"warning: {out}: none of its {n} images was found under {image_folder} (e.g. "
                      f"{pd.read_csv(out).path[0]} → {image_folder / pd.read_csv(out).path[0]}); pass --images-root "
                      "with the folder its paths are relative to; the report shows no thumbnails"]
    again = invoke("report", str(out), "--out", str(report), "--images-root", str(elsewhere))
    assert again.exit_code == 0 and 'class="none">no image' not in report.read_text()


def test_a_csv_without_metadata_finds_images_beside_it(tmp_path, image_folder, labels_yaml, tiny_clip,
                                                       monkeypatch) -> None:
    """A CSV that lost its sidecar, kept beside the images, is reported with them (as an export finds them)."""
    out = image_folder / "labels.csv"
    assert invoke(*run_args(image_folder, labels_yaml, tiny_clip, out, "--no-cache")).exit_code == 0
    (image_folder / "labels.csv.autolabel.json").unlink()
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "report.html"
    result = invoke("report", str(out), "--out", str(report), "--labels", str(labels_yaml))
    assert result.exit_code == 0, result.output
    assert 'class="none">no image' not in report.read_text()


def test_a_file_of_the_users_where_the_sidecar_goes_is_kept(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    out, theirs = tmp_path / "labels.csv", tmp_path / "labels.csv.autolabel.json"
    theirs.write_text('{"notes": "mine"}')
    assert invoke(*run_args(image_folder, labels_yaml, tiny_clip, out, "--no-cache")).exit_code == 0
    assert theirs.read_text() == '{"notes": "mine"}'
    result = invoke("eval", str(out), "--truth", "label")
    assert result.exit_code == 2
    assert one_line(result.output) == (f"error: {theirs}: not the metadata autolabel writes beside a CSV table (no "
                                       "'autolabel' object); move it away, or pass the label spec with --labels\n")
    given = invoke("eval", str(out), "--truth", "label", "--labels", str(labels_yaml))
    assert "sidecar" not in given.output and "autolabel.json" not in given.output, given.output
