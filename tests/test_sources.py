"""Folder walks, every manifest format, stdin, path columns and pass-through columns."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from autolabel.core.errors import SourceError
from autolabel.labelling.sources import open_source, walk_folder

from .conftest import finishes, noise_image

EXPECTED = ["a/1.jpg", "a/sub/3.JPG", "b/1.png", "b/2.png", "c.png", "d.webp"]


def test_folder_walk_sorted_recursive_skips_hidden_and_non_images(image_folder: Path) -> None:
    assert walk_folder(image_folder) == EXPECTED
    source = open_source(str(image_folder))
    assert [r.path for r in source.records] == EXPECTED
    assert source.count is None and source.counter is not None and source.counter() == 6  # counted beside the run


def test_folder_sort_is_by_full_path_string(tmp_path: Path) -> None:
    for rel in ["a.b/x.png", "a/z.png", "a-b.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert walk_folder(tmp_path) == sorted(["a.b/x.png", "a/z.png", "a-b.png"])


def _write(path: Path, frame: pd.DataFrame) -> None:
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    else:
        path.write_text("\n".join(frame.iloc[:, 0]) + "\n")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl", ".txt"])
def test_manifest_formats(tmp_path: Path, image_folder: Path, suffix: str) -> None:
    frame = pd.DataFrame({"image": ["c.png", "a/1.jpg", str(image_folder / "b/1.png")], "truth": ["x", "y", "z"]})
    if suffix == ".txt":
        frame = frame[["image"]]
    manifest = image_folder / f"list{suffix}"
    _write(manifest, frame)
    source = open_source(str(manifest))
    records = list(source.records)
    assert [r.path for r in records] == list(frame["image"])
    assert records[0].location == str(image_folder / "c.png")
    assert records[2].location == str(image_folder / "b/1.png")
    if suffix != ".txt":
        assert source.extra_schema.names == ["truth"]
        assert [r.extra for r in records] == [("x",), ("y",), ("z",)]


def test_path_column_choice_and_errors(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"file_name": ["a.png"], "filepath": ["b.png"]}).to_csv(manifest, index=False)
    assert [r.path for r in open_source(str(manifest)).records] == ["a.png"]
    assert [r.path for r in open_source(str(manifest), "filepath").records] == ["b.png"]
    with pytest.raises(SourceError, match="no column 'nope'"):
        open_source(str(manifest), "nope")
    pd.DataFrame({"x": ["a.png"]}).to_csv(manifest, index=False)
    with pytest.raises(SourceError, match="no path column"):
        open_source(str(manifest))


def test_empty_path_becomes_error_record(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,k\na.png,1\n,2\n")
    records = list(open_source(str(manifest)).records)
    assert records[1].error == "row 2: empty path"


def test_stdin_and_missing_source(tmp_path: Path) -> None:
    source = open_source("-", stdin=io.StringIO("x.png\n\n /abs/y.jpg \n"))
    assert [r.path for r in source.records] == ["x.png", "/abs/y.jpg"]
    with pytest.raises(SourceError, match="no such folder or manifest"):
        open_source(str(tmp_path / "missing"))
    (tmp_path / "f.xlsx").write_text("")
    with pytest.raises(SourceError, match="not a folder or a manifest"):
        open_source(str(tmp_path / "f.xlsx"))
    (tmp_path / "broken.parquet").write_text("garbage")
    with pytest.raises(SourceError, match="cannot read parquet manifest"):
        open_source(str(tmp_path / "broken.parquet"))


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise_image(0, (8, 8)).save(path, "PNG")


def test_a_symlink_loop_lists_each_image_once(tmp_path: Path) -> None:
    _image(tmp_path / "a" / "1.png")
    (tmp_path / "a" / "loop").symlink_to(tmp_path)  # a/loop/a/loop/… would never end
    (tmp_path / "b").symlink_to(tmp_path / "a")  # a second name for a folder already listed
    assert [r.path for r in open_source(str(tmp_path)).records] == ["a/1.png"]


def test_a_symlinked_folder_outside_the_root_is_followed(tmp_path: Path) -> None:
    _image(tmp_path / "elsewhere" / "2.png")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "linked").symlink_to(tmp_path / "elsewhere")
    assert [r.path for r in open_source(str(tmp_path / "root")).records] == ["linked/2.png"]


def test_fifos_and_devices_with_image_names_are_skipped(tmp_path: Path) -> None:
    _image(tmp_path / "ok.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    assert [r.path for r in open_source(str(tmp_path)).records] == ["ok.png"]


def test_names_that_are_not_utf8_get_escaped_paths_and_real_locations(tmp_path: Path) -> None:
    _image(tmp_path / "plain.png")
    raw = os.fsdecode(b"caf\xe9.png")
    _image(tmp_path / raw)
    source = open_source(str(tmp_path))
    records = list(source.records)
    assert sorted(r.path for r in records) == ["caf\\xe9.png", "plain.png"]
    escaped = next(r for r in records if r.path == "caf\\xe9.png")
    assert escaped.location == str(tmp_path / raw) and Path(escaped.location).is_file()
    assert source.renamed == ["caf\\xe9.png"]


def test_stdin_paths_that_are_not_utf8_are_escaped(tmp_path: Path) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"/data/caf\xe9.png\n/data/ok.png\n"), encoding="utf-8")
    source = open_source("-", stdin=stdin)
    records = list(source.records)
    assert [r.path for r in records] == ["/data/caf\\xe9.png", "/data/ok.png"]
    assert os.fsencode(records[0].location) == b"/data/caf\xe9.png"
    assert source.renamed == ["/data/caf\\xe9.png"]


def test_a_path_column_that_is_not_text_or_not_unique_is_refused_up_front(tmp_path: Path) -> None:
    (tmp_path / "dup.csv").write_text("path,path\na.png,b.png\n")
    with pytest.raises(SourceError, match=r"dup.csv: 2 columns are named 'path'; give the path column a name of"):
        open_source(str(tmp_path / "dup.csv"))
    (tmp_path / "list.jsonl").write_text('{"path": ["a.png"]}\n')
    with pytest.raises(SourceError, match=r"list.jsonl: column 'path' holds list<item: string> values, not paths$"):
        open_source(str(tmp_path / "list.jsonl"))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl", ".txt"])
def test_a_fifo_manifest_is_refused_without_blocking(tmp_path: Path, suffix: str) -> None:
    os.mkfifo(tmp_path / f"m{suffix}")
    outcome = finishes(lambda: open_source(str(tmp_path / f"m{suffix}")))
    assert isinstance(outcome, SourceError)
    assert str(outcome) == (f"{tmp_path / f'm{suffix}'}: cannot read manifest: not a regular file (a FIFO); only "
                            "regular files are read")


def test_repeated_pass_through_column_names_are_kept_apart(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,image,image\na.png,x,y\n")
    source = open_source(str(manifest))
    assert source.extra_schema.names == ["image", "image"]
    assert [r.extra for r in source.records] == [("x", "y")]


def test_a_dangling_symlink_image_is_an_error_row_not_silence(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").symlink_to(tmp_path / "gone.png")
    records = list(open_source(str(tmp_path)).records)
    assert [(r.path, r.error) for r in records] == [("a.png", None), ("b.png", None)]  # b: "file not found" on read


def test_a_folder_that_cannot_be_listed_is_an_error_row(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "x.png").write_bytes(b"x")
    (tmp_path / "shut").mkdir()
    real = os.scandir

    def scandir(path):
        if str(path).endswith("shut"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    records = list(open_source(str(tmp_path)).records)
    assert [(r.path, r.error) for r in records] == [
        ("open/x.png", None),
        ("shut/", "cannot list this folder (Permission denied); its images are left out")]


def test_a_saved_pandas_index_is_not_passed_through(tmp_path: Path) -> None:
    frame = pd.DataFrame({"path": ["a.png", "b.png"], "truth": ["x", "y"]}, index=[7, 9])
    frame.to_parquet(tmp_path / "m.parquet")  # pandas keeps a non-default index as __index_level_0__
    source = open_source(str(tmp_path / "m.parquet"))
    assert source.extra_schema.names == ["truth"]
    assert [r.extra for r in source.records] == [("x",), ("y",)]
