"""Folder walks, every manifest format, stdin, path columns and pass-through columns."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from autolabel.errors import SourceError
from autolabel.sources import open_source, walk_folder

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
