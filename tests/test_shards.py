"""Folder --out: part files of --shard-size input rows, a manifest written last, resume by shard after SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.table.results import load_results

from .conftest import noise_image, slow_env


def images(root: Path, n: int) -> Path:
    for i in range(n):
        folder = root / ("bird", "cat", "dog")[i % 3]  # class names, so --truth folder scores every image
        folder.mkdir(parents=True, exist_ok=True)
        noise_image(1000 + i, (40 + i % 7, 36)).save(folder / f"{i:03d}.png")
    (root / "bird" / "broken.png").write_bytes(b"not an image")
    return root


@pytest.fixture()
def sixty(tmp_path: Path) -> Path:
    return images(tmp_path / "imgs", 60)


def cli(*args: str) -> dict:
    result = CliRunner().invoke(main, ["run", *args, "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def summary_of(path: Path) -> dict:
    return json.loads(path.read_text())


def test_folder_out_reads_back_equal_to_the_single_file(tmp_path, sixty, labels_yaml, tiny_clip) -> None:
    common = ["--labels", str(labels_yaml), "--model", str(tiny_clip), "--no-cache"]
    cli(str(sixty), "--out", str(tmp_path / "one.parquet"), *common)
    cli(str(sixty), "--out", str(tmp_path / "shards") + "/", "--shard-size", "10", *common)
    names = sorted(p.name for p in (tmp_path / "shards").iterdir())
    assert names == ["_autolabel.json"] + [f"part-{i:05d}.parquet" for i in range(7)]  # 61 rows
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "shards"), pd.read_parquet(tmp_path / "one.parquet"))
    manifest = json.loads((tmp_path / "shards" / "_autolabel.json").read_text())
    assert [(s["first_row"], s["rows"]) for s in manifest["shards"]] == [(i * 10, 10) for i in range(6)] + [(60, 1)]
    assert manifest["rows"] == 61 and manifest["autolabel"]["counts"]["status"]["error"] == 1
    assert all("encoded" not in s["counts"] for s in manifest["shards"])  # a run encodes, not a shard (it said 0)
    assert pq.read_schema(tmp_path / "shards" / "part-00003.parquet").metadata[b"autolabel"]


def test_every_reading_command_accepts_the_folder(tmp_path, sixty, labels_yaml, tiny_clip) -> None:
    cli(str(sixty), "--out", str(tmp_path / "shards") + "/", "--shard-size", "25", "--labels", str(labels_yaml),
        "--model", str(tiny_clip))
    results = load_results(tmp_path / "shards")
    assert len(results.frame) == 61 and results.classes == ["cat", "dog", "bird"]
    for args in (["eval", str(tmp_path / "shards"), "--truth", "folder"],
                 ["diff", str(tmp_path / "shards"), str(tmp_path / "shards")],
                 ["report", str(tmp_path / "shards"), "--out", str(tmp_path / "r.html")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args, result.output)


def test_a_rerun_of_a_finished_job_encodes_nothing(tmp_path, sixty, labels_yaml, tiny_clip) -> None:
    out, summary = str(tmp_path / "shards") + "/", tmp_path / "s.json"
    common = ["--labels", str(labels_yaml), "--model", str(tiny_clip), "--no-cache", "--shard-size", "20",
              "--summary-json", str(summary)]
    cli(str(sixty), "--out", out, *common)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards").glob("part-*")}
    cli(str(sixty), "--out", out, *common)
    data = summary_of(summary)
    assert data["encoded"] == 0 and data["resumed"] == 61 and data["images"] == 61
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards").glob("part-*")} == before


def test_a_different_spec_is_refused_without_overwrite(tmp_path, sixty, labels_yaml, tiny_clip) -> None:
    out = str(tmp_path / "shards") + "/"
    cli(str(sixty), "--out", out, "--labels", str(labels_yaml), "--model", str(tiny_clip), "--shard-size", "20")
    (tmp_path / "shards" / "notes.txt").write_text("mine")
    other = tmp_path / "other.yaml"
    other.write_text("classes: [red car, green tree]\n")
    args = ["run", str(sixty), "--out", out, "--labels", str(other), "--model", str(tiny_clip), "--shard-size", "20"]
    foreign = CliRunner().invoke(main, [*args, "--overwrite"])  # a file of the user's would be rows to pandas
    assert foreign.exit_code == 2 and "holds notes.txt, which autolabel did not write" in foreign.output
    assert (tmp_path / "shards" / "notes.txt").read_text() == "mine"
    (tmp_path / "shards" / "notes.txt").rename(tmp_path / "shards" / ".notes.txt")  # hidden: pandas skips it
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2
    assert "holds shards of a different job (prompts, thresholds changed)" in refused.output
    assert "--overwrite" in refused.output
    stricter = CliRunner().invoke(main, ["run", str(sixty), "--out", out, "--labels", str(labels_yaml), "--model",
                                         str(tiny_clip), "--shard-size", "20", "--threshold", "0.9"])
    assert stricter.exit_code == 2 and "holds shards of a different job (thresholds changed)" in stricter.output
    replaced = CliRunner().invoke(main, [*args, "--overwrite", "-q"])
    assert replaced.exit_code == 0, replaced.output
    assert set(load_results(tmp_path / "shards").frame.label.dropna()) <= {"red car", "green tree"}
    assert (tmp_path / "shards" / ".notes.txt").read_text() == "mine"


def test_a_part_file_autolabel_did_not_write_is_never_touched(tmp_path, sixty, labels_yaml, tiny_clip) -> None:
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "part-00000.parquet").write_text("someone else's")
    result = CliRunner().invoke(main, ["run", str(sixty), "--out", str(tmp_path / "shards"), "--labels",
                                       str(labels_yaml), "--model", str(tiny_clip), "--overwrite"])
    assert result.exit_code == 2 and "was not written by autolabel" in result.output
    assert (tmp_path / "shards" / "part-00000.parquet").read_text() == "someone else's"


def _kill_after_parts(cmd: list[str], folder: Path, parts: int, env: dict[str, str]) -> None:
    """Start a (slowed) run and SIGKILL it as soon as `parts` shards are committed."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while len(list(folder.glob("part-*.parquet"))) < parts and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the slowed run ended before it was killed: {proc.stderr.read()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        # Ray's workers may outlive their killed driver for a moment and commit one more shard: wait until the
        # folder stops changing, so the re-run resumes exactly what the test counts.
        seen, still = None, 0
        while still < 30:
            now = sorted(p.name for p in folder.glob("part-*.parquet"))
            still = still + 1 if now == seen else 0
            seen = now
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("engine", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_sigkill_after_two_shards_then_rerun_resumes_by_shard(tmp_path, sixty, labels_yaml, tiny_clip,
                                                              engine) -> None:
    if engine == "ray":
        pytest.importorskip("ray")
    common = ["--labels", str(labels_yaml), "--model", str(tiny_clip), "--no-cache", "--batch-size", "5",
              "--engine", engine, "-q"]
    single = tmp_path / "single.parquet"
    cli(str(sixty), "--out", str(single), "--labels", str(labels_yaml), "--model", str(tiny_clip), "--no-cache")
    folder = tmp_path / "shards"
    run = [sys.executable, "-m", "autolabel", "run", str(sixty), "--out", str(folder) + "/", "--shard-size", "10",
           *common]
    _kill_after_parts(run, folder, 2, slow_env(0.4, RAY_ADDRESS=""))
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*.parquet")}
    assert len(kept) >= 2 and not (folder / "_autolabel.json").exists()
    summary = tmp_path / "resume.json"
    rerun = subprocess.run([*run, "--summary-json", str(summary)], timeout=300, env=slow_env(0), capture_output=True,
                           text=True)
    assert rerun.returncode == 0, rerun.stderr
    # -q: only our own skip and warning lines (the random tiny model's classes are confusable), nothing of Ray's
    assert [line for line in rerun.stderr.splitlines() if not line.startswith(("skipping bird/broken.png: ",
                                                                                "warning: classes "))] == []
    data = summary_of(summary)
    broken_row = 20  # bird/broken.png sorts after bird's 20 images
    assert data["resumed"] == 10 * len(kept)
    assert data["encoded"] == 61 - data["resumed"] - (broken_row >= data["resumed"])  # no image of a kept shard
    assert {n: t for n, t in kept.items()} == {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*.parquet")
                                                if p.name in kept}
    pd.testing.assert_frame_equal(pd.read_parquet(folder), pd.read_parquet(single))
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_import_review_into_a_shard_folder_rewrites_its_parts(tmp_path, sixty, labels_yaml, tiny_clip) -> None:
    cli(str(sixty), "--out", str(tmp_path / "shards") + "/", "--shard-size", "25", "--labels", str(labels_yaml),
        "--model", str(tiny_clip))
    first = load_results(tmp_path / "shards").frame
    reviewed = [str(sixty / p) for p in first.path[[3, 40]]]
    pd.DataFrame({"path": reviewed, "reviewed_label": ["bird", "cat"]}).to_csv(tmp_path / "c.csv", index=False)
    result = CliRunner().invoke(main, ["import-review", str(tmp_path / "c.csv"), "--into", str(tmp_path / "shards")])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "shards")
    assert frame.reviewed_label[3] == "bird" and frame.reviewed_label[40] == "cat"
    assert frame.reviewed_label.notna().sum() == 2 and len(frame) == 61
