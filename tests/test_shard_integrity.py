"""A shard folder equals a fresh run of its SOURCE or the re-run refuses; readers check every part; nothing foreign
lands in the folder; a folder that is not a finished run is one line, exit 2, in every command that reads tables."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main

from .conftest import noise_image

SHARD = "3"


def cli(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def run(source: Path, out: str, labels: Path, model: Path, *extra: str) -> object:
    return cli("run", str(source), "-l", str(labels), "-m", str(model), "-o", out, "--shard-size", SHARD, "-q",
               *extra)


def ok(result: object) -> object:
    assert result.exit_code == 0, result.output
    return result


def refused(result: object) -> str:
    """The one error line of a command that exited 2 (never a traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()  # a run may warn first (the tiny model's classes are confusable)
    assert lines[-1].startswith("error: ") and not [ln for ln in lines if not ln.startswith(("error: ", "warning: "))]
    assert sum(ln.startswith("error: ") for ln in lines) == 1, result.stderr
    return lines[-1]


@pytest.fixture()
def pics(tmp_path: Path) -> Path:
    root = tmp_path / "pics"
    root.mkdir()
    for i in range(8):
        noise_image(300 + i, (40 + 3 * i, 36)).save(root / f"{i:02d}.png")
    truth = pd.DataFrame({"path": [f"{i:02d}.png" for i in range(8)], "label": (["cat", "dog", "bird"] * 3)[:8]})
    truth.to_csv(truth_csv(tmp_path), index=False)
    return root


def truth_csv(tmp_path: Path) -> Path:
    return tmp_path / "truth.csv"


def manifest(folder: Path) -> dict:
    return json.loads((folder / "_autolabel.json").read_text())


def same_as_fresh(folder: Path, source: Path, labels: Path, model: Path, tmp_path: Path) -> None:
    """The folder reads (pandas and autolabel) exactly as a fresh run of `source`, manifest included."""
    from autolabel.table.results import load_results

    fresh = tmp_path / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    ok(run(source, f"{fresh}/", labels, model))
    pd.testing.assert_frame_equal(pd.read_parquet(folder), pd.read_parquet(fresh))
    pd.testing.assert_frame_equal(load_results(folder).frame, load_results(fresh).frame)
    mine, theirs = manifest(folder), manifest(fresh)
    assert mine["shards"] == theirs["shards"] and mine["rows"] == theirs["rows"]
    assert mine["autolabel"]["counts"] == theirs["autolabel"]["counts"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in fresh.iterdir())


def _add(pics: Path) -> None:
    noise_image(900).save(pics / "03b.png")  # sorts inside shard 1


def _delete(pics: Path) -> None:
    (pics / "01.png").unlink()


def _rename(pics: Path) -> None:
    (pics / "04.png").rename(pics / "zz.png")


def _modify(pics: Path) -> None:
    noise_image(901, (50, 50)).save(pics / "06.png")


def _shrink(pics: Path) -> None:
    for name in ("05.png", "06.png", "07.png"):
        (pics / name).unlink()


@pytest.mark.parametrize("change", [_add, _delete, _rename, _modify, _shrink])
def test_a_rerun_after_the_source_changed_equals_a_fresh_run(tmp_path, pics, labels_yaml, tiny_clip, change) -> None:
    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    change(pics)
    ok(run(pics, str(folder), labels_yaml, tiny_clip))  # without the slash: an existing folder
    same_as_fresh(folder, pics, labels_yaml, tiny_clip, tmp_path)


def test_a_reordered_manifest_is_relabelled_in_its_order(tmp_path, pics, labels_yaml, tiny_clip) -> None:
    listing = tmp_path / "list.csv"
    names = sorted(p.name for p in pics.iterdir())
    pd.DataFrame({"path": [str(pics / n) for n in names], "note": range(8)}).to_csv(listing, index=False)
    folder = tmp_path / "shards"
    ok(run(listing, f"{folder}/", labels_yaml, tiny_clip))
    kept = (folder / "part-00000.parquet").stat().st_mtime_ns
    frame = pd.read_csv(listing)
    pd.concat([frame.iloc[:3], frame.iloc[3:][::-1]]).to_csv(listing, index=False)  # shard 0 stays as it was
    summary = tmp_path / "s.json"
    ok(run(listing, f"{folder}/", labels_yaml, tiny_clip, "--no-cache", "--summary-json", str(summary)))
    assert json.loads(summary.read_text())["resumed"] == 3  # only the unchanged shard was kept, never decoded
    assert (folder / "part-00000.parquet").stat().st_mtime_ns == kept
    same_as_fresh(folder, listing, labels_yaml, tiny_clip, tmp_path)


def reviewed_folder(tmp_path: Path, pics: Path, labels_yaml: Path, tiny_clip: Path) -> Path:
    """A finished shard folder whose first image a person reviewed (import-review)."""
    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    first = pd.read_parquet(folder / "part-00000.parquet").path[0]
    (tmp_path / "c.csv").write_text(f"path,reviewed_label\n{pics / first},bird\n")
    ok(cli("import-review", str(tmp_path / "c.csv"), "--into", str(folder)))
    return folder


def test_a_changed_shard_holding_reviews_is_refused_and_left_as_it_was(tmp_path, pics, labels_yaml,
                                                                       tiny_clip) -> None:
    folder = reviewed_folder(tmp_path, pics, labels_yaml, tiny_clip)
    (pics / "02.png").unlink()
    before = (folder / "part-00000.parquet").read_bytes()
    line = refused(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    assert line == (f"error: --out {folder}: part-00000.parquet holds 1 human review(s) (reviewed_label) and this "
                    "run would redo it (its images changed in SOURCE: added, removed, renamed, reordered or "
                    "modified); write to another folder and pass this one to --examples to keep them, or pass "
                    "--overwrite to drop them")
    assert (folder / "part-00000.parquet").read_bytes() == before


def _every_reader(folder: Path, tmp_path: Path, labels: Path, model: Path, pics: Path) -> list[list[str]]:
    (tmp_path / "rev.csv").write_text(f"path,reviewed_label\n{pics / '00.png'},cat\n")
    table, truth = str(folder), str(truth_csv(tmp_path))
    return [["eval", table, "--truth", truth], ["report", table, "--out", str(tmp_path / "r.html")],
            ["export", table, "--to", "imagefolder", "--out", str(tmp_path / "exp")],
            ["audit", table, "--out", str(tmp_path / "a.csv")], ["diff", table, table],
            ["calibrate", table, "--truth", truth, "-p", "0.5"],
            ["import-review", str(tmp_path / "rev.csv"), "--into", table],
            ["run", str(pics), "-l", str(labels), "-m", str(model), "-o", str(tmp_path / "o.parquet"),
             "--examples", table]]


def _check_readers(folder: Path, tmp_path: Path, labels: Path, model: Path, pics: Path, wanted: str) -> None:
    for args in _every_reader(folder, tmp_path, labels, model, pics):
        line = refused(cli(*args))
        assert wanted in line, (args, line)
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "exp").exists()


def test_a_swapped_part_is_refused_by_every_reader_and_redone_by_the_rerun(tmp_path, pics, labels_yaml,
                                                                           tiny_clip) -> None:
    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    zero, one = folder / "part-00000.parquet", folder / "part-00001.parquet"
    a, b = zero.read_bytes(), one.read_bytes()
    zero.write_bytes(b)
    one.write_bytes(a)
    _check_readers(folder, tmp_path, labels_yaml, tiny_clip, pics,
                   f"{folder}: part-00000.parquet is not the shard _autolabel.json lists")
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    same_as_fresh(folder, pics, labels_yaml, tiny_clip, tmp_path)


def test_a_part_of_an_earlier_state_of_the_run_is_refused_by_readers(tmp_path, pics, labels_yaml,
                                                                      tiny_clip) -> None:
    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    old = (folder / "part-00001.parquet").read_bytes()
    _modify(pics)  # 06.png: shard 2
    (pics / "03.png").unlink()  # shard 1 and after
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    (folder / "part-00001.parquet").write_bytes(old)  # same job, same index, other images
    line = refused(cli("eval", str(folder), "--truth", str(truth_csv(tmp_path))))
    assert line.startswith(f"error: {folder}: part-00001.parquet is not the shard _autolabel.json lists")
    assert "re-run the same `autolabel run` command" in line and "--overwrite" in line
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    same_as_fresh(folder, pics, labels_yaml, tiny_clip, tmp_path)


def test_a_part_the_manifest_does_not_list_is_refused(tmp_path, pics, labels_yaml, tiny_clip) -> None:
    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    shutil.copy(folder / "part-00001.parquet", folder / "part-00007.parquet")
    line = refused(cli("eval", str(folder), "--truth", str(truth_csv(tmp_path))))
    assert "part-00007.parquet, which _autolabel.json does not list" in line
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    same_as_fresh(folder, pics, labels_yaml, tiny_clip, tmp_path)


def test_an_unfinished_run_folder_is_refused_by_every_reader(tmp_path, pics, labels_yaml, tiny_clip) -> None:
    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    (folder / "_autolabel.json").unlink()  # as a killed run leaves it
    _check_readers(folder, tmp_path, labels_yaml, tiny_clip, pics,
                   f"{folder}: run in progress or interrupted; re-run to finish it")


@pytest.mark.parametrize("what", ["root", "images", "stray"])
def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, pics, labels_yaml, tiny_clip, what) -> None:
    folder = {"root": Path("/"), "images": pics, "stray": tmp_path / "stray"}[what]
    if what == "stray":
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
        (folder / "data.parquet").write_bytes(b"PAR1 not really")
    wanted = f"{folder}: not a finished run's folder"
    _check_readers(folder, tmp_path, labels_yaml, tiny_clip, pics, wanted)


def test_a_finished_folder_with_a_file_of_yours_still_reads(tmp_path, pics, labels_yaml, tiny_clip) -> None:
    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    (folder / "notes.txt").write_text("mine")
    ok(cli("eval", str(folder), "--truth", str(truth_csv(tmp_path))))
    ok(cli("run", str(pics), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(tmp_path / "o.parquet"), "-q",
           "--examples", str(folder)))


def _foreign_writes(folder: Path, tmp_path: Path, labels: Path, model: Path, pics: Path) -> list[list[str]]:
    base = ["-l", str(labels), "-m", str(model), "-q"]
    for_run, truth = ["run", str(pics), *base, "-o", str(tmp_path / "o.parquet")], str(truth_csv(tmp_path))
    return [[*for_run, "--summary-json", str(folder / "s.json")],
            [*for_run, "--summary-json", str(folder / "sub" / "s.json")],
            ["run", str(pics), *base, "-o", str(folder / "o.parquet")],
            [*for_run, "--cache-dir", str(folder)], [*for_run, "--cache-dir", str(folder / "cache")],
            ["run", str(pics), *base, "-o", f"{folder}/sub/"],
            ["audit", str(tmp_path / "o.parquet"), "--out", str(folder / "a.csv")],
            ["report", str(tmp_path / "o.parquet"), "--out", str(folder / "r.html")],
            ["export", str(tmp_path / "o.parquet"), "--to", "imagefolder", "--out", str(folder / "exp")],
            ["export", str(tmp_path / "o.parquet"), "--to", "imagefolder", "--out", f"{folder}/exp/"],
            ["eval", str(tmp_path / "o.parquet"), "--truth", truth, "--json", str(folder / "e.json")],
            ["calibrate", str(tmp_path / "o.parquet"), "--truth", truth, "-p", "0.5", "--write-spec",
             str(folder / "s.yaml")]]


@pytest.mark.parametrize("state", ["finished", "interrupted"])
def test_nothing_foreign_lands_in_a_shard_folder(tmp_path, pics, labels_yaml, tiny_clip, state) -> None:
    ok(run(pics, str(tmp_path / "o.parquet"), labels_yaml, tiny_clip))
    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    if state == "interrupted":
        (folder / "_autolabel.json").unlink()
    before = sorted(os.listdir(folder))
    for args in _foreign_writes(folder, tmp_path, labels_yaml, tiny_clip, pics):
        line = refused(cli(*args))
        assert "shard folder" in line, (args, line)
        assert sorted(os.listdir(folder)) == before, args
    if state == "finished":
        pd.read_parquet(folder)


def test_summary_json_stays_out_of_the_runs_own_folder(tmp_path, pics, labels_yaml, tiny_clip) -> None:
    folder = tmp_path / "new"
    for summary in (folder / "s.json", folder / "deep" / "s.json"):  # a folder this run would create
        line = refused(run(pics, f"{folder}/", labels_yaml, tiny_clip, "--summary-json", f"{summary}"))
        assert line == f"error: --summary-json {summary}: is inside --out ({folder}/); write it elsewhere"
        assert not folder.exists()
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    for out in (f"{folder}/", str(folder)):  # an existing folder, with or without the slash
        line = refused(run(pics, out, labels_yaml, tiny_clip, "--summary-json", f"{folder}/s.json"))
        assert line == f"error: --summary-json {folder}/s.json: is inside --out ({out}); write it elsewhere"
    assert sorted(os.listdir(folder)) == ["_autolabel.json", "part-00000.parquet", "part-00001.parquet",
                                          "part-00002.parquet"]


def test_the_folder_reads_with_pandas_after_every_command(tmp_path, pics, labels_yaml, tiny_clip) -> None:
    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    for args in _every_reader(folder, tmp_path, labels_yaml, tiny_clip, pics):
        if args[0] == "calibrate":  # it read the folder, and wants more rows than the test has
            assert "labelled rows usable for calibration (need at least 30)" in refused(cli(*args))
        else:
            ok(cli(*args))
        frame = pd.read_parquet(folder)
        assert len(frame) == 8, args
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    assert pd.read_parquet(folder).reviewed_label.notna().sum() == 1


def test_parts_a_worker_writes_itself_are_kept_until_their_images_change(tmp_path) -> None:
    """The Ray engine's path without a cluster: workers get a shard's records and write its part themselves."""
    from itertools import groupby

    from autolabel.core.records import Counts, ImageRecord
    from autolabel.labelling.engines.base import Batch
    from autolabel.labelling.output import ShardSink
    from autolabel.table.schema import OUTPUT_SCHEMA

    for i in range(5):
        (tmp_path / f"{i}.png").write_bytes(b"x" * (i + 1))
    records = [ImageRecord(path=f"{i}.png", location=str(tmp_path / f"{i}.png"), row=i) for i in range(5)]

    def rerun() -> list[int]:
        sink = ShardSink(f"{tmp_path}/out/", OUTPUT_SCHEMA, "job", 2, False)
        sink.check()
        parts, done = sink.prepare({}), []
        for k, group in groupby(sink.pending(records), key=lambda r: r.row // 2):
            chunk = list(group)
            columns = {name: [None] * len(chunk) for name in OUTPUT_SCHEMA.names}
            columns.update(path=[r.path for r in chunk], status=["error"] * len(chunk))
            sink.write(Batch(rows=tuple(r.row for r in chunk), counts=Counts(),
                             shard=parts.write(k, chunk, [columns])))
            done += [r.row for r in chunk]
        sink.commit({})
        return done

    assert rerun() == [0, 1, 2, 3, 4]
    assert rerun() == []
    (tmp_path / "3.png").write_bytes(b"changed")
    assert rerun() == [2, 3]
    assert manifest(tmp_path / "out")["rows"] == 5 and pd.read_parquet(tmp_path / "out").path.tolist() == [
        f"{i}.png" for i in range(5)]


def test_a_manifest_edited_out_of_order_or_a_missing_part_is_one_line(tmp_path, pics, labels_yaml,
                                                                        tiny_clip) -> None:
    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    original = manifest(folder)
    edited = {**original, "shards": original["shards"][::-1]}
    (folder / "_autolabel.json").write_text(json.dumps(edited))
    assert "_autolabel.json is not a manifest autolabel wrote (it must list part-00000.parquet" in refused(
        cli("eval", str(folder), "--truth", str(truth_csv(tmp_path))))
    (folder / "_autolabel.json").write_text(json.dumps(original))
    (folder / "part-00001.parquet").unlink()
    assert "part-00001.parquet, listed in _autolabel.json, cannot be read (file not found)" in refused(
        cli("eval", str(folder), "--truth", str(truth_csv(tmp_path))))
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    same_as_fresh(folder, pics, labels_yaml, tiny_clip, tmp_path)


def test_a_swapped_part_holding_reviews_is_refused_and_left_as_it_was(tmp_path, pics, labels_yaml,
                                                                          tiny_clip) -> None:
    folder = reviewed_folder(tmp_path, pics, labels_yaml, tiny_clip)
    zero, one = folder / "part-00000.parquet", folder / "part-00001.parquet"
    a, b = zero.read_bytes(), one.read_bytes()
    zero.write_bytes(b)
    one.write_bytes(a)
    line = refused(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    assert line == (f"error: --out {folder}: part-00001.parquet holds 1 human review(s) (reviewed_label) and this "
                    "run would redo it (it is not the shard its name says: a part copied or swapped in); write to "
                    "another folder and pass this one to --examples to keep them, or pass --overwrite to drop them")
    assert (zero.read_bytes(), one.read_bytes()) == (b, a)


def test_a_file_of_the_users_in_the_folder_is_refused_so_pandas_reads_only_the_run(tmp_path, pics, labels_yaml,
                                                                                    tiny_clip) -> None:
    """A stray .parquet beside the parts made pd.read_parquet(DIR) read 10 rows more than the run wrote (exit 0)."""
    folder = tmp_path / "out"
    folder.mkdir()
    pd.DataFrame({"path": ["x.png"], "label": ["cat"]}).to_parquet(folder / "old-labels.parquet")
    line = refused(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    assert line == (f"error: --out {folder}: holds old-labels.parquet, which autolabel did not write; a folder of "
                    "shards holds only its parts (pd.read_parquet reads every file in it): move it out, or choose an "
                    "empty folder")
    assert sorted(p.name for p in folder.iterdir()) == ["old-labels.parquet"]


def test_a_fifo_named_like_a_part_is_refused_without_blocking(tmp_path, pics, labels_yaml, tiny_clip) -> None:
    """It hung `run` in open() for good (SIGTERM too)."""
    folder = tmp_path / "out"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    (folder / "part-00001.parquet").unlink()
    os.mkfifo(folder / "part-00001.parquet")
    line = refused(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    assert line == (f"error: --out {folder}: part-00001.parquet is not a regular file, so autolabel did not write "
                    "it; remove it, or choose an empty folder")


@pytest.mark.parametrize("command", ["summary", "report", "eval", "calibrate"])
def test_an_output_that_is_a_fifo_is_refused_not_replaced(tmp_path, pics, labels_yaml, tiny_clip,
                                                          command: str) -> None:
    """Every output replaced a FIFO (as root, --summary-json /dev/full replaced the device) with exit 0."""
    table = tmp_path / "t.parquet"
    ok(cli("run", str(pics), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o", str(table), "-q"))
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    args = {"summary": ["run", str(pics), "-l", str(labels_yaml), "-m", str(tiny_clip), "-o",
                        str(tmp_path / "u.parquet"), "--summary-json", str(fifo)],
            "report": ["report", str(table), "--out", str(fifo)],
            "eval": ["eval", str(table), "--truth", str(truth_csv(tmp_path)), "--json", str(fifo)],
            "calibrate": ["calibrate", str(table), "--truth", str(truth_csv(tmp_path)), "-p", "0.5",
                          "--write-spec", str(fifo)]}[command]
    line = refused(cli(*args))
    assert line.endswith(f" {fifo}: is not a regular file (a FIFO, device or socket); choose another file")
    assert fifo.exists() and not fifo.is_file()


def test_a_refused_part_is_one_line_and_exit_2_every_time(tmp_path, pics, labels_yaml, tiny_clip) -> None:
    """pq.read_table on an open part left pyarrow threads behind: the refusal aborted (SIGABRT, exit 134) one run in
    four with `terminate called without an active exception`; the process must end cleanly every time."""
    import subprocess
    import sys

    folder = tmp_path / "shards"
    ok(run(pics, f"{folder}/", labels_yaml, tiny_clip))
    data = manifest(folder)
    data["shards"][-1]["digest"] = "0" * 32  # every earlier part is read before the last one is refused
    (folder / "_autolabel.json").write_text(json.dumps(data))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for _ in range(10):
        done = subprocess.run([sys.executable, "-m", "autolabel", "eval", str(folder), "--truth",
                               str(truth_csv(tmp_path))], capture_output=True, text=True, env=env, timeout=60)
        assert (done.returncode, len(done.stderr.splitlines())) == (2, 1), (done.returncode, done.stderr)
        assert "part-00002.parquet is not the shard _autolabel.json lists (it labelled other images" in done.stderr
