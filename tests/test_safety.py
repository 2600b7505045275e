"""Nothing a person wrote is replaced: files that are not ours, human reviews, reviews that match nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main


def run(*args: str) -> object:
    return CliRunner().invoke(main, ["run", *args, "-q"])


def import_review(exported: str, into: str, *extra: str) -> object:
    return CliRunner().invoke(main, ["import-review", exported, "--into", into, *extra])


@pytest.fixture()
def labelled(tmp_path: Path, image_folder: Path, labels_yaml: Path, tiny_clip: Path) -> Path:
    out = tmp_path / "labels.parquet"
    result = run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(out))
    assert result.exit_code == 0, result.output
    return out


def reviewed_copy(labelled: Path, folder: Path, label: str = "dog") -> Path:
    first = pd.read_parquet(labelled).path[0]
    corrections = folder / "corrections.csv"
    pd.DataFrame({"path": [first], "reviewed_label": [label]}).to_csv(corrections, index=False)
    merged = import_review(str(corrections), str(labelled))
    assert merged.exit_code == 0, merged.output
    return labelled


def test_a_rerun_may_replace_its_own_table(labelled: Path, image_folder: Path, labels_yaml: Path,
                                           tiny_clip: Path) -> None:
    before = pd.read_parquet(labelled)
    result = run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(labelled))
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(labelled), before)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_run_refuses_to_replace_a_table_holding_human_reviews(tmp_path: Path, image_folder: Path, labels_yaml: Path,
                                                              tiny_clip: Path, suffix: str) -> None:
    out = tmp_path / f"labels{suffix}"
    assert run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(out)).exit_code == 0
    first = pd.read_parquet(out).path[0] if suffix == ".parquet" else pd.read_csv(out).path[0]
    (tmp_path / "c.csv").write_text(f"path,reviewed_label\n{first},dog\n")  # as the table names it
    spec = ["--labels", str(labels_yaml)] if suffix == ".csv" else []
    merged = import_review(str(tmp_path / "c.csv"), str(out), *spec)
    assert merged.exit_code == 0, merged.output
    before = out.read_bytes()
    result = run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr == (f"error: --out {out}: holds 1 human review(s) (reviewed_label) that this run would "
                             "replace; write to another --out and pass this table to --examples to keep them, or "
                             "pass --overwrite to drop them\n")
    assert out.read_bytes() == before
    forced = run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(out), "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert "reviewed_label" not in (pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out))


@pytest.mark.parametrize(("name", "content"), [("mine.csv", b"a,b\n1,2\n"), ("mine.parquet", None),
                                               ("mine.csv", b"\xff\xfe binary")])
def test_run_refuses_to_replace_a_file_autolabel_did_not_write(tmp_path: Path, image_folder: Path,
                                                               labels_yaml: Path, tiny_clip: Path, name: str,
                                                               content: bytes | None) -> None:
    out = tmp_path / name
    if content is None:
        pd.DataFrame({"path": ["x.png"], "label": ["cat"], "confidence": [1.0], "status": ["accepted"]}).to_parquet(out)
    else:
        out.write_bytes(content)
    before = out.read_bytes()
    result = run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr == (f"error: --out {out}: exists and is not a labels table autolabel wrote; choose another "
                             "--out (or pass --overwrite to replace it)\n")
    assert out.read_bytes() == before


def test_an_empty_file_is_replaced(tmp_path: Path, image_folder: Path, labels_yaml: Path, tiny_clip: Path) -> None:
    out = tmp_path / "made-by-mktemp.parquet"
    out.touch()
    assert run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(out)).exit_code == 0
    assert len(pd.read_parquet(out)) == 6


def test_import_review_refuses_labels_outside_the_spec_and_merges_nothing(labelled: Path, tmp_path: Path) -> None:
    first = pd.read_parquet(labelled).path[0]
    (tmp_path / "c.csv").write_text(f"path,reviewed_label\n{first},dgo\n")
    before = labelled.read_bytes()
    result = import_review(str(tmp_path / "c.csv"), str(labelled))
    assert result.exit_code == 2
    assert result.stderr == ("error: reviewed labels outside the spec: 'dgo'; the classes are cat, dog, bird: fix them "
                             "in the review export (nothing was merged)\n")
    assert labelled.read_bytes() == before


def test_import_review_names_reviews_that_match_no_row(labelled: Path, tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("path,reviewed_label\n/nowhere/x.png,dog\n/nowhere/y.png,cat\n")
    result = import_review(str(tmp_path / "c.csv"), str(labelled))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"0 reviewed rows merged from csv → {labelled} (0 reviewed rows in the table now differ from the model's "
        "label)",
        f"warning: 2 review(s) matched no row of {labelled}, e.g. '/nowhere/x.png', '/nowhere/y.png': name the same "
        "files as the table (absolute paths, or paths relative to the review file)"]


def test_import_review_matches_the_tables_own_relative_paths(labelled: Path, tmp_path: Path) -> None:
    first = pd.read_parquet(labelled).path[0]
    assert not Path(first).is_absolute() and not (tmp_path / first).exists()
    (tmp_path / "c.csv").write_text(f"path,reviewed_label\n{first},bird\n")
    result = import_review(str(tmp_path / "c.csv"), str(labelled))
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(labelled).set_index("path").loc[first, "reviewed_label"] == "bird"


def test_import_review_refuses_json_that_is_not_a_label_studio_export(labelled: Path, tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('[{"x": 1}]')
    result = import_review(str(tmp_path / "x.json"), str(labelled))
    assert result.exit_code == 2
    assert result.stderr == (f"error: {tmp_path / 'x.json'}: no task has a `data` object, so this is not a Label "
                             "Studio JSON export (in the project: Export → JSON)\n")


@pytest.mark.parametrize("which", ["spec", "out", "image"])
def test_summary_json_never_lands_on_an_input_or_the_output(tmp_path: Path, image_folder: Path, labels_yaml: Path,
                                                            tiny_clip: Path, which: str) -> None:
    out = tmp_path / "labels.parquet"
    target = {"spec": labels_yaml, "out": out, "image": image_folder / "c.png"}[which]
    before = target.read_bytes() if target.exists() else None
    result = run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(out),
                 "--summary-json", str(target))
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"error: --summary-json {target}: ")
    assert (target.read_bytes() if target.exists() else None) == before
    assert not out.exists()


def test_json_and_report_outputs_replace_only_their_own_files(labelled: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for args in (["report", str(labelled), "--out", str(notes)],
                 ["eval", str(labelled), "--truth", "folder", "--json", str(notes)]):
        result = CliRunner().invoke(main, args)
        option = "--out" if args[0] == "report" else "--json"
        assert result.exit_code == 2
        assert result.stderr == (f"error: {option} {notes}: exists and is not a file this command wrote; choose "
                                 "another file (nothing you wrote is replaced)\n")
        assert notes.read_text() == "my notes\n"
    page = tmp_path / "report.html"
    for _ in range(2):  # the second run replaces the first one's page
        assert CliRunner().invoke(main, ["report", str(labelled), "--out", str(page)]).exit_code == 0


def test_the_review_data_in_the_report_holds_no_markup(tmp_path: Path, image_folder: Path, tiny_clip: Path) -> None:
    import json
    import re

    spec = tmp_path / "s.yaml"
    spec.write_text("threshold: 0.9999\nclasses: ['<!--<script>', '</script><b>', plain]\n")
    out, page = tmp_path / "l.parquet", tmp_path / "r.html"
    assert run(str(image_folder), "-l", str(spec), "-m", str(tiny_clip), "-o", str(out)).exit_code == 0
    assert CliRunner().invoke(main, ["report", str(out), "--out", str(page)]).exit_code == 0
    payload = re.search(r"id='rq-data'>(.*?)</script>", page.read_text(), re.S).group(1)
    assert "<" not in payload and ">" not in payload
    assert json.loads(payload)["labels"] == ["<!--<script>", "</script><b>", "plain"]


def test_example_globs_do_not_follow_folder_links(tmp_path: Path) -> None:
    from autolabel.learn.examples import walk_glob

    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("x.png", "a/y.png", "a/b/z.png", "a/.hidden.png"):
        (tmp_path / rel).touch()
    (tmp_path / "a" / "loop").symlink_to(tmp_path)  # glob.glob(recursive=True) never ends with two of these
    (tmp_path / "a" / "loop2").symlink_to(tmp_path)
    assert sorted(walk_glob(f"{tmp_path}/**/*.png")) == [f"{tmp_path}/a/b/z.png", f"{tmp_path}/a/y.png",
                                                         f"{tmp_path}/x.png"]
    assert sorted(walk_glob(f"{tmp_path}/*/*.png")) == [f"{tmp_path}/a/y.png"]
    assert list(walk_glob("/proc/**/*.png")) == []


@pytest.mark.parametrize("fmt", ["cvat", "hf", "imagefolder"])
def test_exports_take_only_image_files_whatever_the_table_names(labelled: Path, tmp_path: Path, fmt: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    secret = tmp_path / "secret.txt"
    secret.write_text("password\n")
    table = pq.read_table(labelled)
    frame = table.to_pandas()
    frame.loc[0, "path"], frame.loc[1, "path"] = str(secret), "/proc/self/mem"
    evil = tmp_path / "evil.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(table.schema.metadata),
                   evil)
    out = tmp_path / "export"
    result = CliRunner().invoke(main, ["export", str(evil), "--to", fmt, "--out", str(out), "--link", "copy"])
    assert result.exit_code == 0, result.output
    assert f"{secret}: {secret} is not an image file" in result.stderr
    assert "/proc/self/mem: /proc/self/mem is a system file, not an image" in result.stderr
    assert "password" not in "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    assert not [p for p in out.rglob("*") if "secret" in p.name or "mem" in p.name]


def test_a_folder_out_takes_one_run_at_a_time(tmp_path: Path, image_folder: Path, labels_yaml: Path,
                                             tiny_clip: Path) -> None:
    from autolabel.labelling.output import FolderLock

    folder = tmp_path / "shards"
    held = FolderLock.take(folder, str(folder))  # another run, mid-way
    args = (str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", f"{folder}/", "--shard-size", "2")
    refused = run(*args)
    assert refused.exit_code == 2
    assert refused.stderr == (f"error: --out {folder}: another autolabel run is writing to this folder; wait for it "
                              "to finish, or choose another folder\n")
    held.release()
    finished = run(*args)
    assert finished.exit_code == 0, finished.output
    assert sorted(p.name for p in folder.iterdir()) == ["_autolabel.json"] + [f"part-0000{i}.parquet" for i in range(3)]
    assert run(*args).exit_code == 0  # the lock went with the run that held it


@pytest.mark.parametrize(("out", "cache", "message"), [
    ("l.parquet", [], "no partial output was written; re-run `autolabel run` with the same arguments to resume "
                      "from the embedding cache"),
    ("l.parquet", ["--no-cache"], "no partial output was written (with --no-cache, a re-run starts over)"),
    ("shards/", ["--no-cache"], "the finished shards in {tmp}/shards/ are kept; re-run `autolabel run` with the same "
                                "arguments to resume from them"),
    ("none/", ["--no-cache"], "no shard of {tmp}/none/ was finished (with --no-cache, a re-run starts over)"),
])
def test_an_interrupted_run_says_what_it_kept(tmp_path: Path, image_folder: Path, labels_yaml: Path, tiny_clip: Path,
                                              monkeypatch: pytest.MonkeyPatch, out: str, cache: list[str],
                                              message: str) -> None:
    from .conftest import interrupt_on_batch

    interrupt_on_batch(monkeypatch, 1 if out == "none/" else 3)  # shard 0 is whole once batch 2 starts shard 1
    result = run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", f"{tmp_path}/{out}",
                 "--batch-size", "2", "--shard-size", "2", *cache)
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == f"interrupted: {message.format(tmp=tmp_path)}"
    if out == "shards/":
        assert (tmp_path / "shards" / "part-00000.parquet").exists()


def test_csv_cells_are_read_as_written(tmp_path: Path, tiny_clip: Path) -> None:
    from .conftest import noise_image

    for i, name in enumerate(["001", "1e3"]):
        noise_image(i).save(tmp_path / name, format="PNG")
    (tmp_path / "m.csv").write_text("path\n001\n1e3\n")
    (tmp_path / "s.yaml").write_text("classes: ['0', '01', 'NA', 'None']\n")
    (tmp_path / "ex.csv").write_text("path,label\n001,01\n1e3,NA\n")
    out = tmp_path / "o.parquet"
    result = run(str(tmp_path / "m.csv"), "-l", str(tmp_path / "s.yaml"), "-m", str(tiny_clip), "-o", str(out),
                 "--examples", str(tmp_path / "ex.csv"))
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert list(zip(table.path, table.label, table.status, strict=True)) == [("001", "01", "reviewed"),
                                                                            ("1e3", "NA", "reviewed")]
    (tmp_path / "truth.csv").write_text("path,label\n001,None\n1e3,NA\n")
    scored = CliRunner().invoke(main, ["eval", str(out), "--truth", str(tmp_path / "truth.csv")])
    assert scored.exit_code == 2  # both rows are reviewed: nothing left to score, but both found their truth
    assert "(0 error rows, 2 reviewed by people, 0 without truth, 0 with a truth outside the spec)" in scored.stderr


def test_a_key_given_twice_in_a_spec_is_an_error(tmp_path: Path) -> None:
    from autolabel.core.errors import SpecError
    from autolabel.core.spec import load_spec

    path = tmp_path / "s.yaml"
    path.write_text("classes: [a, b]\nthreshold: 0.5\nclasses: [c, d]\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: invalid YAML at line 3, column 1: duplicate key 'classes'"
    path.write_text("classes: [&a {name: a, threshold: 0.5}, {<<: *a, name: b, threshold: 0.7}]\n")
    assert [c.threshold for c in load_spec(path).classes] == [0.5, 0.7]  # a merge key's values may be overridden


def test_label_studio_files_point_under_the_images_folders_parent(labelled: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    result = CliRunner().invoke(main, ["export", str(labelled), "--to", "label-studio", "--out", str(tmp_path / "ls")])
    assert result.exit_code == 0, result.output
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == [f"/data/local-files/?d=images/{t['data']['path']}" for t in tasks]
    assert result.stderr.splitlines()[-1] == (
        "note: Label Studio serves these images when started with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
        f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={tmp_path} and given a Local files storage for {tmp_path / 'images'}")


def test_import_review_edge_cases(labelled: Path, tmp_path: Path) -> None:
    import json

    first, second = list(pd.read_parquet(labelled).path[:2])
    choice = {"from_name": "label", "to_name": "image", "type": "choices"}
    tasks = [{"data": {"path": first}, "annotations": [
        {"id": 1, "was_cancelled": "false", "result": [dict(choice, value={"choices": ["bird"]})]}]}]
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    kept = import_review(str(tmp_path / "ls.json"), str(labelled))
    assert kept.exit_code == 0, kept.output
    assert pd.read_parquet(labelled).set_index("path").loc[first, "reviewed_label"] == "bird"  # "false" ≠ cancelled
    (tmp_path / "cvat.xml").write_text('<annotations><image id="0" name="nowhere.png"><tag label="cat" '
                                       'source="manual"/></image></annotations>')
    unknown = import_review(str(tmp_path / "cvat.xml"), str(labelled))
    assert unknown.exit_code == 0, unknown.output
    assert "1 review(s) matched no row" in unknown.stderr and "'nowhere.png'" in unknown.stderr
    (tmp_path / "c.csv").write_text(f"path,reviewed_label\n{second},cat\n{second},dog\n")
    twice = import_review(str(tmp_path / "c.csv"), str(labelled))
    assert twice.exit_code == 2
    assert twice.stderr == (f"error: {tmp_path / 'c.csv'}: {second} is reviewed twice with different labels ('cat' "
                            f"and 'dog', {tmp_path / 'c.csv'} row 2); keep one row per image\n")


def test_a_missing_hub_model_offline_says_what_to_do(tmp_path: Path, image_folder: Path, labels_yaml: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run(str(image_folder), "-l", str(labels_yaml), "-m", "nobody/no-such-model", "-o", str(tmp_path / "o.csv"))
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.rstrip().endswith("it is not in the Hugging Face cache and HF_HUB_OFFLINE is set: pass "
                                           "--model PATH to a local checkpoint folder, or download it once with "
                                           "network access")


def test_import_review_says_when_it_replaces_earlier_reviews(labelled: Path, tmp_path: Path) -> None:
    first = pd.read_parquet(labelled).path[0]
    for label in ("cat", "bird"):
        (tmp_path / "c.csv").write_text(f"path,reviewed_label\n{first},{label}\n")
        result = import_review(str(tmp_path / "c.csv"), str(labelled))
        assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0].endswith("earlier reviews replaced)")
    assert ", 1 earlier reviews replaced)" in result.stderr


def test_a_class_name_is_a_short_phrase(tmp_path: Path) -> None:
    from autolabel.core.errors import SpecError
    from autolabel.core.spec import load_spec

    path = tmp_path / "s.yaml"
    path.write_text(f"classes: [a, {'b' * 5000}]\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == (f"{path}: classes[1]: name: '{'b' * 40}'… is 5,000 characters long; a name is at "
                               "most 200 (put descriptions in prompts)")


def test_the_other_name_follows_the_class_name_rules(tmp_path: Path) -> None:
    from autolabel.core.errors import SpecError
    from autolabel.core.spec import load_spec

    path = tmp_path / "s.yaml"
    path.write_text('other: "x\\ty"\nclasses: [a, b]\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: other: name: 'x\\ty' contains a control character (U+0009); use plain text"


def test_a_grown_source_never_redoes_a_shard_holding_reviews(tmp_path: Path, image_folder: Path,
                                                             labels_yaml: Path, tiny_clip: Path) -> None:
    from .conftest import noise_image

    folder = tmp_path / "shards"
    args = (str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", f"{folder}/", "--shard-size", "4")
    assert run(*args).exit_code == 0  # 6 images: parts of 4 and 2
    last = pd.read_parquet(folder / "part-00001.parquet").path[0]
    (tmp_path / "c.csv").write_text(f"path,reviewed_label\n{last},bird\n")
    assert import_review(str(tmp_path / "c.csv"), str(folder)).exit_code == 0
    noise_image(50).save(image_folder / "e.png")  # the source grows into the short last part
    before = (folder / "part-00001.parquet").read_bytes()
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: --out {folder}: part-00001.parquet holds 1 human review(s) (reviewed_label) and this run would redo "
        "it (SOURCE grew past it); write to another folder and pass this one to --examples to keep them, or pass "
        "--overwrite to drop them")
    assert (folder / "part-00001.parquet").read_bytes() == before


def test_a_file_url_out_is_checked_like_a_path(labelled: Path, image_folder: Path, labels_yaml: Path,
                                               tiny_clip: Path, tmp_path: Path) -> None:
    reviewed_copy(labelled, tmp_path)
    before = labelled.read_bytes()
    result = run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", f"file://{labelled}")
    assert result.exit_code == 2 and "holds 1 human review(s)" in result.stderr
    assert labelled.read_bytes() == before


@pytest.mark.parametrize("header", ["path,label,confidence,status,reviewed_label",
                                    'path,label,confidence,status,"reviewed_label"',
                                    "path,label,confidence,status, reviewed_label"])
def test_reviews_in_a_csv_table_are_found_however_it_is_written(tmp_path: Path, header: str) -> None:
    from autolabel.core.errors import UsageError
    from autolabel.labelling.output import refuse_replacing

    table = tmp_path / "t.csv"
    table.write_text(f"{header}\na.png,cat,0.9,accepted,\nb.png,None,0.8,review,None\n")  # a class named None
    with pytest.raises(UsageError, match="holds 1 human review"):
        refuse_replacing(table, str(table))


@pytest.mark.parametrize("make", ["symlink", "folder", "fifo"])
def test_the_folder_lock_is_a_plain_file_of_ours(tmp_path: Path, make: str) -> None:
    from autolabel.core.errors import UsageError
    from autolabel.labelling.output import FolderLock

    folder, elsewhere = tmp_path / "out", tmp_path / "elsewhere.txt"
    folder.mkdir()
    lock = folder / "_autolabel.lock"
    {"symlink": lambda: lock.symlink_to(elsewhere), "folder": lock.mkdir, "fifo": lambda: os.mkfifo(lock)}[make]()
    with pytest.raises(UsageError, match="remove it if no autolabel run is writing to this folder"):
        FolderLock.take(folder, str(folder))
    assert not elsewhere.exists() and os.path.lexists(lock)


def test_a_lock_taken_on_a_file_that_was_removed_meanwhile_is_taken_again(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    from autolabel.labelling.output import FolderLock

    first = FolderLock.take(tmp_path, str(tmp_path))
    real_flock, calls = fcntl.flock, []

    def flock(fd: int, op: int) -> None:  # the holder finishes between our open and our lock
        if op & fcntl.LOCK_EX and not calls:
            calls.append(fd)
            first.release()
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    second = FolderLock.take(tmp_path, str(tmp_path))
    assert second.path.exists() and os.stat(second.path).st_ino == os.fstat(second.fd).st_ino
    second.release()


def test_the_example_walker_skips_system_folders_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from autolabel.core.errors import SpecError
    from autolabel.learn import examples

    for rel in ("sys/a.png", "system/b.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).touch()
    monkeypatch.setattr(examples, "SYSTEM_ROOTS", (str(tmp_path / "sys"),))
    assert list(examples.walk_glob(f"{tmp_path}/**/*.png")) == [f"{tmp_path}/system/b.png"]
    deep = tmp_path / "deep"
    deep.joinpath(*["d"] * 150).mkdir(parents=True)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(120)
    try:
        with pytest.raises(SpecError, match="nested too deeply to walk"):
            list(examples.walk_glob(f"{deep}/**/*.png"))
    finally:
        sys.setrecursionlimit(limit)


def test_cache_info_leaves_a_file_that_is_not_a_cache_alone(tmp_path: Path) -> None:
    (tmp_path / "embeddings.sqlite").write_text("precious")
    result = CliRunner().invoke(main, ["cache", "info", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == (f"error: --cache-dir {tmp_path}: embeddings.sqlite there is not an autolabel cache; "
                             "nothing was changed\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.sqlite"]
    assert (tmp_path / "embeddings.sqlite").read_text() == "precious"


def test_summary_json_stays_out_of_the_model_and_the_out_folder(tmp_path: Path, image_folder: Path,
                                                                labels_yaml: Path, tiny_clip: Path) -> None:
    import shutil

    model = Path(shutil.copytree(tiny_clip, tmp_path / "model"))
    config = (model / "config.json").read_bytes()
    base = (str(image_folder), "-l", str(labels_yaml), "-m", str(model))
    inside = run(*base, "-o", str(tmp_path / "o.parquet"), "--summary-json", str(model / "config.json"))
    assert inside.exit_code == 2
    assert inside.stderr == (f"error: --summary-json {model / 'config.json'}: is inside the model's folder ({model}); "
                             "write it elsewhere\n")
    assert (model / "config.json").read_bytes() == config
    (tmp_path / "shards").mkdir()
    manifest = tmp_path / "shards" / "_autolabel.json"
    shards = run(*base, "-o", f"{tmp_path}/shards/", "--summary-json", str(manifest))
    assert shards.exit_code == 2 and "is inside --out" in shards.stderr
    (tmp_path / "settings.json").write_text('{"theme": "dark"}')
    other = run(*base, "-o", str(tmp_path / "o.parquet"), "--summary-json", str(tmp_path / "settings.json"))
    assert other.exit_code == 2 and "exists and is not a file this command wrote" in other.stderr
    assert (tmp_path / "settings.json").read_text() == '{"theme": "dark"}'


def test_audit_out_replaces_only_a_findings_table(labelled: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.csv").write_text("my notes\n")
    audit = CliRunner().invoke(main, ["audit", str(labelled), "--out", str(tmp_path / "notes.csv")])
    assert audit.exit_code == 2 and "exists and is not a file this command wrote" in audit.stderr
    assert (tmp_path / "notes.csv").read_text() == "my notes\n"


def test_label_studio_reviews_order_by_real_time_and_refuse_conflicting_tasks(labelled: Path, tmp_path: Path) -> None:
    import json

    first = pd.read_parquet(labelled).path[0]
    choice = {"from_name": "label", "to_name": "image", "type": "choices"}

    def annotation(i: int, when: str, label: str) -> dict:
        return {"id": i, "updated_at": when, "result": [dict(choice, value={"choices": [label]})]}

    # 10:00+02:00 is 08:00 UTC: earlier than 09:00Z, although it sorts later as text
    tasks = [{"data": {"path": first}, "annotations": [annotation(1, "2026-01-01T09:00:00Z", "dog"),
                                                       annotation(2, "2026-01-01T10:00:00+02:00", "cat")]}]
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    result = import_review(str(tmp_path / "ls.json"), str(labelled))
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(labelled).set_index("path").loc[first, "reviewed_label"] == "dog"
    tasks.append({"data": {"path": first}, "annotations": [annotation(3, "2026-01-02T09:00:00Z", "bird")]})
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    twice = import_review(str(tmp_path / "ls.json"), str(labelled))
    assert twice.exit_code == 2
    assert twice.stderr == (f"error: {tmp_path / 'ls.json'}: {first} has two tasks with different reviews ('dog' and "
                            "'bird', task [1]); keep one task per image\n")


@pytest.mark.parametrize("kind", ["parquet", "csv", "folder"])
def test_a_reviewed_run_table_is_an_examples_table_as_it_is(tmp_path: Path, image_folder: Path, labels_yaml: Path,
                                                            tiny_clip: Path, kind: str) -> None:
    """README step 7: its paths are relative to SOURCE, not to the table's folder, and must still be found."""
    out = {"parquet": tmp_path / "r1.parquet", "csv": tmp_path / "r1.csv", "folder": tmp_path / "r1"}[kind]
    base = (str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip))
    assert run(*base, "-o", f"{out}/" if kind == "folder" else str(out)).exit_code == 0
    first = (pd.read_csv(out) if kind == "csv" else pd.read_parquet(out)).path[0]
    assert not (tmp_path / first).exists()  # relative to SOURCE only
    (tmp_path / "c.csv").write_text(f"path,reviewed_label\n{first},bird\n")
    spec = ["--labels", str(labels_yaml)] if kind == "csv" else []
    merged = import_review(str(tmp_path / "c.csv"), str(out), *spec)
    assert merged.exit_code == 0, merged.output
    result = run(*base, "-o", str(tmp_path / "r2.parquet"), "--examples", str(out))
    assert result.exit_code == 0, result.output
    round2 = pd.read_parquet(tmp_path / "r2.parquet").set_index("path")
    assert (round2.loc[first, "status"], round2.loc[first, "label"]) == ("reviewed", "bird")


def test_examples_that_all_fail_to_load_stop_the_run(tmp_path: Path, image_folder: Path, labels_yaml: Path,
                                                     tiny_clip: Path) -> None:
    (tmp_path / "ex.csv").write_text("path,label\nnowhere/x.png,dog\n")
    result = run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(tmp_path / "o.parquet"),
                 "--examples", str(tmp_path / "ex.csv"))
    assert result.exit_code == 2 and not (tmp_path / "o.parquet").exists()
    assert result.stderr.splitlines()[-1].startswith("error: none of the 1 examples could be read (first: ")


def test_a_different_job_refusal_counts_the_reviews_overwrite_would_drop(tmp_path: Path, image_folder: Path,
                                                                        labels_yaml: Path, tiny_clip: Path) -> None:
    folder = tmp_path / "shards"
    base = (str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", f"{folder}/")
    assert run(*base, "--shard-size", "4").exit_code == 0
    first = pd.read_parquet(folder / "part-00000.parquet").path[0]
    (tmp_path / "c.csv").write_text(f"path,reviewed_label\n{first},bird\n")
    assert import_review(str(tmp_path / "c.csv"), str(folder)).exit_code == 0
    refused = run(*base, "--shard-size", "3")
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[-1] == (
        f"error: --out {folder}: holds shards of a different job (shard_size changed); pass --overwrite to replace "
        "them, or choose another folder; --overwrite would drop the 1 human review(s) in them — to keep them, write "
        "to another folder and pass this one to --examples")


def test_import_review_waits_for_no_run_on_a_shard_folder(tmp_path: Path, image_folder: Path, labels_yaml: Path,
                                                          tiny_clip: Path) -> None:
    from autolabel.labelling.output import FolderLock

    folder = tmp_path / "shards"
    assert run(str(image_folder), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", f"{folder}/").exit_code == 0
    first = pd.read_parquet(folder).path[0]
    (tmp_path / "c.csv").write_text(f"path,reviewed_label\n{first},bird\n")
    held = FolderLock.take(folder, str(folder))  # a run is writing the folder
    before = {p.name: p.read_bytes() for p in folder.glob("part-*.parquet")}
    refused = import_review(str(tmp_path / "c.csv"), str(folder))
    assert refused.exit_code == 2 and "another autolabel run is writing to this folder" in refused.stderr
    assert {p.name: p.read_bytes() for p in folder.glob("part-*.parquet")} == before
    held.release()
    assert import_review(str(tmp_path / "c.csv"), str(folder)).exit_code == 0
    assert not (folder / "_autolabel.lock").exists()
