"""`autolabel queue`: the next reviews, from the cache, in the corrections format; reviewed rows never again."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.learn.examples import read_table

from .test_learn import COMBOS, NONSENSE, draw, label, manifest, spec

COMBOS6 = COMBOS[:6]
CODES = dict(zip(COMBOS6, NONSENSE[:6], strict=True))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Six combos × 6 images under codes the text cannot know, labelled once (which fills the cache)."""
    tmp = tmp_path_factory.mktemp("queue")
    frame = draw(tmp / "images", COMBOS6, 6, 1)
    source = manifest(tmp, frame, "manifest", CODES)
    labels = spec(tmp, NONSENSE[:6])
    cache = tmp / "cache"
    label(source, labels, tmp / "r1.parquet", "--cache-dir", str(cache))
    return {"tmp": tmp, "source": source, "labels": labels, "cache": cache, "r1": tmp / "r1.parquet"}


def queue(world: dict[str, Path], table: Path, out: Path, budget: int, *extra: str) -> str:
    result = CliRunner().invoke(main, ["queue", str(table), "--budget", str(budget), "--out", str(out),
                                       "--cache-dir", str(world["cache"]), "-q", *extra])
    assert result.exit_code == 0, result.output
    return result.output


def truth_of(world: dict[str, Path]) -> dict[str, str]:
    frame = pd.read_csv(world["source"])
    return dict(zip(frame.path, frame.truth, strict=True))


def test_cold_start_queue_covers_the_classes_from_the_cache_in_the_corrections_format(labelled) -> None:
    out = labelled["tmp"] / "q1.csv"
    said = queue(labelled, labelled["r1"], out, 6)
    assert "0 images newly embedded" in said  # the run cached every image: nothing decoded or encoded again
    planned = pd.read_csv(out, keep_default_na=False)
    assert list(planned.columns) == ["path", "reviewed_label", "rank", "reason", "label", "confidence", "priority"]
    assert planned["rank"].tolist() == [1, 2, 3, 4, 5, 6] and set(planned.reviewed_label) == {""}
    assert set(planned.reason) == {"coverage"}
    truth = truth_of(labelled)
    assert len({truth[p] for p in planned.path}) >= 5  # typical images of (nearly) every class, not 6 of one
    assert planned.priority.is_monotonic_increasing
    assert read_table(str(out), None) == []  # nothing filled in: --examples learns nothing from it


def test_second_round_offers_no_reviewed_or_skipped_row_and_learns_from_the_first(labelled) -> None:
    first = labelled["tmp"] / "q-first.csv"
    queue(labelled, labelled["r1"], first, 6)
    filled = pd.read_csv(first, keep_default_na=False)
    truth = truth_of(labelled)
    filled["reviewed_label"] = [truth[p] if i != 1 else "" for i, p in enumerate(filled.path)]  # row 2 skipped
    filled.head(4).to_csv(first, index=False)
    second = labelled["tmp"] / "q-second.csv"
    said = queue(labelled, labelled["r1"], second, 6, "--examples", str(first))
    assert "3 row(s) reviewed before" in said
    offered = set(pd.read_csv(second).path)
    assert not offered & set(filled.head(4).path)  # neither the three reviewed nor the skipped one
    assert len(offered) == 6


def test_reviews_imported_into_the_table_count_as_reviewed(labelled) -> None:
    planned = labelled["tmp"] / "q-import.csv"
    queue(labelled, labelled["r1"], planned, 4)
    table = labelled["tmp"] / "r1-reviewed.parquet"
    table.write_bytes(labelled["r1"].read_bytes())
    reviews = pd.read_csv(planned, keep_default_na=False).head(2)
    truth = truth_of(labelled)
    reviews.assign(reviewed_label=[truth[p] for p in reviews.path])[["path", "reviewed_label"]].to_csv(
        labelled["tmp"] / "two.csv", index=False)
    result = CliRunner().invoke(main, ["import-review", str(labelled["tmp"] / "two.csv"), "--into", str(table)])
    assert result.exit_code == 0, result.output
    again = labelled["tmp"] / "q-after-import.csv"
    assert "2 row(s) reviewed before" in queue(labelled, table, again, 4)
    assert not set(pd.read_csv(again).path) & set(reviews.path)


def test_empty_label_cells_are_not_examples(tmp_path: Path) -> None:
    table = tmp_path / "queue.csv"
    pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "reviewed_label": ["cat", "", None], "rank": [1, 2, 3],
                  "reason": ["coverage"] * 3, "label": ["dog", "dog", "dog"]}).to_csv(table, index=False)
    found = read_table(str(table), None)
    assert [(Path(e.location).name, e.label) for e in found] == [("a.png", "cat")]  # not the model's `label`


@pytest.mark.parametrize(("args", "message"), [
    (["--budget", "0", "--out", "q.csv"], "--budget must be at least 1"),
    (["--budget", "3", "--out", "q.txt"], "the queue is one file ending in .csv or .parquet"),
    (["--budget", "3", "--out", "qdir/"], "the queue is one file ending in .csv or .parquet"),
])
def test_bad_options_are_one_line_and_exit_2(labelled, tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["queue", str(labelled["r1"]), *[str(tmp_path / a) if a.startswith("q.")
                                                                       else a for a in args]])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_out_must_not_be_the_labels_table(labelled) -> None:
    result = CliRunner().invoke(main, ["queue", str(labelled["r1"]), "--budget", "2", "--out", str(labelled["r1"])])
    assert result.exit_code == 2 and "an input of this command" in result.output


def report_queue(table: Path, out: Path, *extra: str) -> tuple[list[list], str]:
    """Write the report in a child process that must not import torch; the editor's rows and the page."""
    code = ("import sys; from autolabel.cli import main\n"
            f"try:\n    main(['report', {str(table)!r}, '--out', {str(out)!r}, *{list(extra)!r}])\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    data = re.search(r"<script type='application/json' id='rq-data'>(.*?)</script>", page, re.S).group(1)
    return json.loads(data)["rows"], page


def test_the_report_queue_starts_with_the_planned_rows_in_the_queue_order(labelled) -> None:
    planned = labelled["tmp"] / "q-report.csv"
    queue(labelled, labelled["r1"], planned, 5)
    rows, page = report_queue(labelled["r1"], labelled["tmp"] / "report.html", "--queue", str(planned))
    expected = pd.read_csv(planned)
    assert [(r[1], r[7]) for r in rows[:5]] == list(zip(expected.path, expected.reason, strict=True))
    assert all(r[7] == "" for r in rows[5:])  # then today's order, without the planned rows again
    assert len({r[1] for r in rows}) == len(rows)
    assert "rows <code>autolabel queue</code> planned first" in page


def test_imported_reviews_show_as_reviewed_in_the_report_and_leave_its_queue(labelled) -> None:
    table = labelled["tmp"] / "r1-report.parquet"
    table.write_bytes(labelled["r1"].read_bytes())
    frame = pd.read_parquet(table)
    waiting = frame[frame.status == "review"].head(3)
    truth = {Path(p).name: t for p, t in truth_of(labelled).items()}
    reviews = pd.DataFrame({"path": [str(labelled["tmp"] / "images" / Path(p).name) for p in waiting.path],
                            "reviewed_label": [truth[Path(p).name] for p in waiting.path]})
    reviews.to_csv(labelled["tmp"] / "three.csv", index=False)
    before, _ = report_queue(table, labelled["tmp"] / "before.html")
    result = CliRunner().invoke(main, ["import-review", str(labelled["tmp"] / "three.csv"), "--into", str(table)])
    assert result.exit_code == 0, result.output
    after, page = report_queue(table, labelled["tmp"] / "after.html")
    assert len(after) == len(before) - 3 and not set(reviews.path) & {r[1] for r in after}
    assert re.search(r"<tr><td>reviewed</td><td>3</td></tr>", page)
    assert "<th>reviewed</th>" in page
    cells = re.findall(r"<tr><td>([^<]+)</td><td>\d+</td><td>\d+</td><td>\d+</td><td>(\d+)</td>", page)
    per_class = {name: int(n) for name, n in cells}
    assert sum(per_class.values()) == 3 and per_class[reviews.reviewed_label[0]] >= 1


def test_a_queue_a_person_filled_in_is_never_replaced(labelled) -> None:
    """Re-using the name of last round's queue for the next one would drop every review in it."""
    filled = labelled["tmp"] / "filled.csv"
    queue(labelled, labelled["r1"], filled, 3)
    frame = pd.read_csv(filled, keep_default_na=False)
    frame.loc[0, "reviewed_label"] = frame.loc[0, "label"]
    frame.to_csv(filled, index=False)
    before = filled.read_bytes()
    result = CliRunner().invoke(main, ["queue", str(labelled["r1"]), "--budget", "2", "--out", str(filled),
                                       "--cache-dir", str(labelled["cache"]), "-q"])
    assert result.exit_code == 2 and result.output.strip() == (
        f"error: --out {filled}: a queue holding 1 review(s) a person filled in; write the next queue to another "
        "file and pass this one to --examples (nothing you wrote is replaced)")
    assert filled.read_bytes() == before
    empty = labelled["tmp"] / "empty.csv"
    queue(labelled, labelled["r1"], empty, 3)
    queue(labelled, labelled["r1"], empty, 2)  # an untouched queue of ours is replaced
    assert len(pd.read_csv(empty)) == 2


def test_rows_left_empty_above_a_filled_one_are_counted_as_skipped(labelled) -> None:
    """A relative-path queue (as a person may save it beside the images) is matched, and the line says how many
    rows it takes as skipped, so filling in only a later row does not silently drop the ones above it."""
    first = labelled["tmp"] / "q-skip.csv"
    queue(labelled, labelled["r1"], first, 4)
    frame = pd.read_csv(first, keep_default_na=False)
    truth = truth_of(labelled)
    frame.loc[3, "reviewed_label"] = truth[frame.loc[3, "path"]]
    images = labelled["source"].parent
    frame["path"] = [str(Path(p).relative_to(images)) for p in frame["path"]]
    rel = labelled["tmp"] / "elsewhere" / "q-rel.csv"  # its paths are relative to the images' folder, not to it
    rel.parent.mkdir()
    frame.to_csv(rel, index=False)
    said = queue(labelled, labelled["r1"], labelled["tmp"] / "q-next.csv", 4, "--examples", str(rel))
    assert "1 row(s) reviewed before, 3 skipped (left empty above a filled-in row: never offered again)" in said
    again = set(pd.read_csv(labelled["tmp"] / "q-next.csv").path)
    assert not again & {str(images / p) for p in frame["path"]}


def test_a_table_of_error_rows_only_is_one_line(tmp_path: Path, labelled) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"x")
    (bad / "b.png").write_bytes(b"yy")
    label(bad, labelled["labels"], tmp_path / "bad.parquet", "--cache-dir", str(labelled["cache"]))
    result = CliRunner().invoke(main, ["queue", str(tmp_path / "bad.parquet"), "--budget", "2", "--out",
                                       str(tmp_path / "q.csv"), "--cache-dir", str(labelled["cache"]), "-q"])
    assert result.exit_code == 2 and result.output.strip() == (
        f"error: {tmp_path / 'bad.parquet'}: every row is an error row (no image could be read): nothing to plan; "
        "fix the images and run again")


def test_a_queue_of_another_table_is_refused_by_the_report(labelled, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    pd.DataFrame({"path": ["/elsewhere/a.png"], "reviewed_label": [""], "rank": [1], "reason": ["coverage"],
                  "label": ["x"], "confidence": [0.5], "priority": [0.0]}).to_csv(other, index=False)
    result = CliRunner().invoke(main, ["report", str(labelled["r1"]), "--out", str(tmp_path / "r.html"),
                                       "--queue", str(other)])
    assert result.exit_code == 2 and result.output.strip() == (
        f"error: --queue {other}: none of its 1 rows is an image of r1.parquet; plan the queue from this table "
        "with `autolabel queue`")
    assert not (tmp_path / "r.html").exists()
