"""The review side's library calls: export_labels, import_reviews and push_labels, without the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import autolabel
from autolabel.cli import main
from autolabel.core.errors import UsageError
from autolabel.labelling.output import FolderLock
from autolabel.review import exchange
from autolabel.review.exchange import ExportOptions, LabelStudioProject, export_labels, import_reviews
from autolabel.task import SINGLE

CLASSES = ("cat", "dog", "bird")


@pytest.fixture(scope="module")
def run_once(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path) -> Path:
    """A real run over six images: labels.parquet beside images/."""
    from .conftest import LABELS_YAML, noise_image

    base = tmp_path_factory.mktemp("exchange")
    for i, rel in enumerate(["b/2.png", "a/1.jpg", "a/sub/3.JPG", "c.png", "d.webp", "b/1.png"]):
        (base / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        noise_image(i, (40 + 8 * i, 36)).save(base / "images" / rel)
    (base / "labels.yaml").write_text(LABELS_YAML)
    for out in ("labels.parquet", "shards/"):
        result = CliRunner().invoke(main, ["run", str(base / "images"), "-l", str(base / "labels.yaml"), "-m",
                                           str(tiny_clip), "-o", f"{base}/{out}", "--shard-size", "4", "-q"])
        assert result.exit_code == 0, result.output
    return base


@pytest.fixture()
def table(run_once: Path, tmp_path: Path) -> Path:
    """This test's own copy of the table (imports rewrite it); its images stay where the run found them."""
    shutil.copy(run_once / "labels.parquet", tmp_path / "labels.parquet")
    return tmp_path / "labels.parquet"


@pytest.fixture()
def folder(run_once: Path, tmp_path: Path) -> Path:
    """This test's own copy of the shard folder (two parts)."""
    shutil.copytree(run_once / "shards", tmp_path / "shards")
    return tmp_path / "shards"


def corrections(tmp_path: Path, rows: dict[str, str]) -> Path:
    path = tmp_path / "corrections.csv"
    pd.DataFrame({"path": list(rows), "reviewed_label": list(rows.values())}).to_csv(path, index=False)
    return path


def other_label(table: Path, row: int) -> tuple[str, str]:
    """A row's path and a class the model did not give it."""
    frame = pd.read_parquet(table)
    return frame.path[row], next(c for c in CLASSES if c != frame.label[row])


def test_export_labels_returns_every_file_it_wrote(table: Path, tmp_path: Path) -> None:
    done = export_labels(table, ExportOptions("hf", tmp_path / "hf"))
    assert done == exchange.ExportResult(
        format="hf", out=tmp_path / "hf", table_rows=6, rows=6, skipped=(),
        files=("images/a__1.jpg", "images/a__sub__3.jpg", "images/b__1.png", "images/b__2.png", "images/c.png",
               "images/d.webp", "metadata.jsonl"), folders=("images",), local_files=None)
    assert done.exported == 6
    assert sorted(p.relative_to(tmp_path / "hf").as_posix() for p in (tmp_path / "hf").rglob("*")
                  if not p.is_dir() and not p.name.startswith(".")) == list(done.files)


def test_export_labels_of_no_row_with_the_status_writes_nothing(table: Path, tmp_path: Path) -> None:
    frame = pd.read_parquet(table)
    assert set(frame.status) == {"accepted"}  # the tiny model is sure of everything
    done = export_labels(table, ExportOptions("hf", tmp_path / "hf", status="review"))
    assert done == exchange.ExportResult(format="hf", out=tmp_path / "hf", table_rows=6, rows=0)
    assert not (tmp_path / "hf").exists()


def test_export_labels_for_label_studio_names_the_folder_to_serve(table: Path, run_once: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    assert export_labels(table, ExportOptions("label-studio", tmp_path / "ls")).local_files == run_once / "images"


def test_export_labels_served_from_a_url_prefix_needs_no_local_files(table: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    options = ExportOptions("label-studio", tmp_path / "ls", url_prefix="https://images.example.com/set")
    assert export_labels(table, options).local_files is None


def test_export_labels_refuses_a_non_empty_folder_without_overwrite(table: Path, tmp_path: Path) -> None:
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "mine.txt").write_text("user data")
    with pytest.raises(UsageError) as info:
        export_labels(table, ExportOptions("hf", tmp_path / "hf"))
    assert str(info.value) == (f"--out {tmp_path / 'hf'}: folder is not empty; pass --overwrite or choose an empty "
                               "folder")
    assert [p.name for p in (tmp_path / "hf").iterdir()] == ["mine.txt"]


def test_import_reviews_counts_what_it_merged(table: Path, tmp_path: Path) -> None:
    path, label = other_label(table, 0)
    nowhere = "/no/such/folder/nowhere.png"
    merged = import_reviews(table, corrections(tmp_path, {path: label, nowhere: "cat"}))
    assert merged == exchange.ImportResult(tool="csv", reviewed=2, matched=1, unmatched=1, changed=1, replaced=0,
                                  unmatched_keys=(nowhere,))


def test_import_reviews_rewrites_the_table_in_place(table: Path, tmp_path: Path) -> None:
    path, label = other_label(table, 2)
    before = pd.read_parquet(table)
    import_reviews(table, corrections(tmp_path, {path: label}))
    after = pd.read_parquet(table)
    assert list(after.columns) == [*before.columns, "reviewed_label", "reviewed_by_human"]
    assert after.reviewed_label.tolist() == [label if p == path else None for p in before.path]
    assert after.reviewed_by_human.tolist() == [p == path for p in before.path]


def test_import_reviews_again_counts_the_review_it_replaced(table: Path, tmp_path: Path) -> None:
    path, label = other_label(table, 1)
    import_reviews(table, corrections(tmp_path, {path: label}))
    model = pd.read_parquet(table).label[1]
    merged = import_reviews(table, corrections(tmp_path, {path: model}))
    assert merged == exchange.ImportResult(tool="csv", reviewed=1, matched=1, unmatched=0, changed=0, replaced=1)


def test_import_reviews_of_labels_outside_the_spec_merges_nothing(table: Path, tmp_path: Path) -> None:
    before = table.read_bytes()
    with pytest.raises(UsageError, match=r"^reviewed labels outside the spec: 'zebra'; "):
        import_reviews(table, corrections(tmp_path, {pd.read_parquet(table).path[0]: "zebra"}))
    assert table.read_bytes() == before


def test_import_reviews_holds_a_shard_folders_lock_while_it_rewrites(folder: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    held = []

    def write_table(results: object) -> None:
        held.append((folder / "_autolabel.lock").is_file())
        write(results)

    write = exchange.write_table
    monkeypatch.setattr(exchange, "write_table", write_table)
    path, label = other_label(folder, 5)  # in the second part
    merged = import_reviews(folder, corrections(tmp_path, {path: label}))
    assert held == [True] and not (folder / "_autolabel.lock").exists()
    assert (merged.matched, merged.changed) == (1, 1)
    assert pd.read_parquet(folder / "part-00001.parquet").reviewed_label.tolist() == [None, label]


def test_import_reviews_is_refused_while_a_run_writes_the_folder(folder: Path, tmp_path: Path) -> None:
    review = corrections(tmp_path, dict([other_label(folder, 0)]))
    before = {p.name: p.read_bytes() for p in folder.glob("part-*.parquet")}
    lock = FolderLock.take(folder, str(folder))
    try:
        with pytest.raises(UsageError) as info:
            import_reviews(folder, review)
    finally:
        lock.release()
    assert str(info.value) == (f"--out {folder}: another autolabel run is writing to this folder; wait for it to "
                               "finish, or choose another folder")
    assert {p.name: p.read_bytes() for p in folder.glob("part-*.parquet")} == before


def test_import_reviews_releases_the_lock_when_the_merge_fails(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="^reviewed labels outside the spec"):
        import_reviews(folder, corrections(tmp_path, {pd.read_parquet(folder).path[0]: "zebra"}))
    assert not (folder / "_autolabel.lock").exists()
    assert import_reviews(folder, corrections(tmp_path, dict([other_label(folder, 0)]))).matched == 1


def test_import_reviews_pulls_a_label_studio_project(table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autolabel.review.exporters import label_studio_api

    path, label = other_label(table, 3)
    asked = []

    def pull_reviews(url: str, api_key: str | None, project: str, task: object = None) -> dict[str, str]:
        asked.append((url, api_key, project, task))
        return {path: label}

    monkeypatch.setattr(label_studio_api, "pull_reviews", pull_reviews)
    merged = import_reviews(table, LabelStudioProject("http://ls.example.com", "pets", api_key="key"))
    assert asked == [("http://ls.example.com", "key", "pets", SINGLE)]
    assert merged == exchange.ImportResult(tool="label-studio", reviewed=1, matched=1, unmatched=0, changed=1,
                                           replaced=0)


def test_push_labels_hands_the_table_to_the_push(table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autolabel.review.exporters import label_studio_api

    config = exchange.PushConfig(url="http://ls.example.com", api_key="key", status="review")
    pushed = exchange.PushResult(project_id=7, project_title="autolabel labels", project_url="http://ls.example.com/x",
                        created=True, added=6, present=0, images="uploaded to Label Studio")
    seen = []
    monkeypatch.setattr(label_studio_api, "push", lambda results, cfg, reporter: seen.append(
        (results.path, len(results.frame), cfg, reporter)) or pushed)
    assert exchange.push_labels(table, config) is pushed
    assert seen == [(table, 6, config, None)]


def test_the_review_functions_are_autolabels_own() -> None:
    assert (autolabel.export_labels, autolabel.import_reviews, autolabel.push_labels) == (
        export_labels, import_reviews, exchange.push_labels)
    assert (autolabel.ExportOptions, autolabel.ImportResult, autolabel.LabelStudioProject, autolabel.PushConfig) == (
        ExportOptions, exchange.ImportResult, LabelStudioProject, exchange.PushConfig)
