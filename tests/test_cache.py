"""Embedding cache: hits by content, damage recovery, resume after an interrupt or a kill, concurrent runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.embedding.cache import EmbeddingCache
from autolabel.embedding.decode import open_image

from .conftest import interrupt_on_batch, noise_image, slow_env


def run(source: Path, labels: Path, out: Path, model: Path, cache: Path, *extra: str) -> dict:
    summary = out.with_suffix(".json")
    result = CliRunner().invoke(main, ["run", str(source), "--labels", str(labels), "--out", str(out), "--model",
                                       str(model), "--cache-dir", str(cache), "--summary-json", str(summary), "-q",
                                       *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(summary.read_text())


def test_hits_by_content_rename_hits_edit_misses(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    cache = tmp_path / "cache"
    first = run(image_folder, labels_yaml, tmp_path / "1.parquet", tiny_clip, cache)
    assert first["encoded"] == 6 and first["cached"] == 0
    second = run(image_folder, labels_yaml, tmp_path / "2.parquet", tiny_clip, cache)
    assert second["encoded"] == 0 and second["cached"] == 6
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "1.parquet"), pd.read_parquet(tmp_path / "2.parquet"))
    os.rename(image_folder / "c.png", image_folder / "renamed.png")
    noise_image(123, (50, 50)).save(image_folder / "d.webp")  # edited content under the same name
    third = run(image_folder, labels_yaml, tmp_path / "3.parquet", tiny_clip, cache)
    assert third["encoded"] == 1 and third["cached"] == 5


def test_changed_spec_reuses_every_image_embedding(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    cache = tmp_path / "cache"
    run(image_folder, labels_yaml, tmp_path / "1.parquet", tiny_clip, cache)
    other = tmp_path / "other.yaml"
    other.write_text("templates: ['a picture of the {label}.']\nclasses: [red car, green tree, blue bird]\n")
    summary = run(image_folder, other, tmp_path / "2.parquet", tiny_clip, cache)
    assert summary["encoded"] == 0 and summary["cached"] == 6
    uncached = run(image_folder, other, tmp_path / "3.parquet", tiny_clip, tmp_path / "fresh")
    np.testing.assert_allclose(np.stack(pd.read_parquet(tmp_path / "2.parquet").top_scores),
                               np.stack(pd.read_parquet(tmp_path / "3.parquet").top_scores), atol=1e-6)
    assert uncached["encoded"] == 6


def test_text_embeddings_are_cached(tmp_path, labels_yaml, tiny_clip) -> None:
    from autolabel.embedding.model import ZeroShotModel
    from autolabel.embedding.stages import text_encoder

    model = ZeroShotModel.load(str(tiny_clip))
    calls = []
    real = model.encode_text
    model.encode_text = lambda prompts: calls.append(list(prompts)) or real(prompts)  # type: ignore[method-assign]
    cache = EmbeddingCache(tmp_path / "c")
    encode = text_encoder(model, cache, "space")
    first = encode(["a cat", "a dog", "a cat"])
    second = encode(["a dog", "a bird"])
    assert calls == [["a cat", "a dog"], ["a bird"]]
    np.testing.assert_array_equal(first[1], second[0])


def test_damaged_cache_is_detected_and_rebuilt(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    cache = tmp_path / "cache"
    run(image_folder, labels_yaml, tmp_path / "1.parquet", tiny_clip, cache)
    db = cache / "embeddings.sqlite"
    assert not Path(str(db) + "-wal").exists()  # a finished run leaves everything in the main file
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])  # a process killed while the file was being copied, say
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out",
                                       str(tmp_path / "2.parquet"), "--model", str(tiny_clip), "--cache-dir",
                                       str(cache), "-q"])
    assert result.exit_code == 0, result.output
    assert "was damaged" in result.output
    assert list(cache.glob("embeddings.sqlite.damaged-*"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "1.parquet"), pd.read_parquet(tmp_path / "2.parquet"))
    again = run(image_folder, labels_yaml, tmp_path / "3.parquet", tiny_clip, cache)
    assert again["cached"] == 6


def _many_images(root: Path, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        noise_image(500 + i, (40 + i % 7, 40)).save(root / f"{i:03d}.png")
    return root


def test_resume_after_interrupt_equals_clean_run(tmp_path, labels_yaml, tiny_clip, monkeypatch) -> None:
    from autolabel.embedding.model import ZeroShotModel

    images = _many_images(tmp_path / "imgs", 20)
    clean = tmp_path / "clean.parquet"
    run(images, labels_yaml, clean, tiny_clip, tmp_path / "clean-cache", "--batch-size", "4")
    real = interrupt_on_batch(monkeypatch, 3)
    out = tmp_path / "out.parquet"
    args = ["run", str(images), "--labels", str(labels_yaml), "--out", str(out), "--model", str(tiny_clip),
            "--cache-dir", str(tmp_path / "cache"), "--batch-size", "4", "-q"]
    assert CliRunner().invoke(main, args).exit_code == 130
    assert not out.exists()
    monkeypatch.setattr(ZeroShotModel, "encode_images", real)
    resumed = run(images, labels_yaml, out, tiny_clip, tmp_path / "cache", "--batch-size", "4")
    assert resumed["cached"] == 8 and resumed["encoded"] == 12  # two batches were done before the interrupt
    pd.testing.assert_frame_equal(pd.read_parquet(clean), pd.read_parquet(out))


def _cached_images(cache: Path) -> int:
    try:
        with sqlite3.connect(cache / "embeddings.sqlite", timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    except sqlite3.Error:
        return 0


def _stop_midway(cmd: list[str], cache: Path, after: int, sig: int) -> subprocess.Popen:
    """Start a run whose model takes 0.3 s more per batch, wait until `after` embeddings are cached, send `sig`.

    The slowed model leaves seconds of work after that point, so the signal always lands mid-run.
    """
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=slow_env(0.3))
    deadline = time.time() + 120
    while _cached_images(cache) < after and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, f"the slowed run ended before it could be stopped: {proc.stderr.read()}"
    proc.send_signal(sig)
    return proc


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autolabel", "run", *args]


def test_resume_after_sigkill_equals_clean_run(tmp_path, labels_yaml, tiny_clip) -> None:
    images = _many_images(tmp_path / "imgs", 60)
    clean = tmp_path / "clean.parquet"
    common = ["--labels", str(labels_yaml), "--model", str(tiny_clip), "--batch-size", "2", "-q"]
    subprocess.run(_cli(str(images), "--out", str(clean), "--cache-dir", str(tmp_path / "c0"), *common), check=True,
                   timeout=120)
    cache, out = tmp_path / "cache", tmp_path / "out.parquet"
    proc = _stop_midway(_cli(str(images), "--out", str(out), "--cache-dir", str(cache), *common, "--workers", "1"),
                        cache, 6, signal.SIGKILL)
    proc.wait()
    done = _cached_images(cache)
    assert 6 <= done < 60 and not out.exists()
    summary = tmp_path / "s.json"
    subprocess.run(_cli(str(images), "--out", str(out), "--cache-dir", str(cache), "--summary-json", str(summary),
                        *common), check=True, timeout=120)
    data = json.loads(summary.read_text())
    assert data["cached"] >= done and data["encoded"] == 60 - data["cached"]
    pd.testing.assert_frame_equal(pd.read_parquet(clean), pd.read_parquet(out))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.parquet")] == []  # killed run's temp removed


def test_two_concurrent_runs_share_a_cache(tmp_path, labels_yaml, tiny_clip) -> None:
    images = _many_images(tmp_path / "imgs", 40)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen(_cli(str(images), "--out", str(tmp_path / f"o{i}.parquet"), "--cache-dir", str(cache),
                                   "--labels", str(labels_yaml), "--model", str(tiny_clip), "--batch-size", "2",
                                   "-q"), stderr=subprocess.PIPE, text=True) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    a, b = (pd.read_parquet(tmp_path / f"o{i}.parquet") for i in range(2))
    assert list(a.label) == list(b.label)
    np.testing.assert_allclose(np.stack(a.top_scores), np.stack(b.top_scores), atol=1e-6)
    assert _cached_images(cache) == 40


def test_cache_info_and_prune(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    cache = tmp_path / "cache"
    run(image_folder, labels_yaml, tmp_path / "1.parquet", tiny_clip, cache)
    info = CliRunner().invoke(main, ["cache", "info", "--cache-dir", str(cache)])
    assert info.exit_code == 0 and "images\t6\t" in info.output
    pruned = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(cache), "--max-size", "300B"])
    assert pruned.exit_code == 0
    assert _cached_images(cache) == 0  # even an empty SQLite file is larger than 300 bytes
    CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(cache), "--all"])
    assert _cached_images(cache) == 0
    shutil.rmtree(cache)


def test_draft_decoding_stays_close_to_full_decoding(tmp_path) -> None:
    """JPEG draft mode (DCT scaling to ≥ 2× the model input) vs full decode, through CLIP's preprocessing."""
    from autolabel.embedding.decode import Preprocessing

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from common import photo_like

    pre = Preprocessing.from_config({"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}})
    import io

    worst_mean, worst_max = 0.0, 0.0
    for seed, size in enumerate([(3000, 2000), (1600, 1200), (2000, 3000)]):
        buf = io.BytesIO()
        photo_like(seed, size).save(buf, "JPEG", quality=90)
        full = pre(open_image(buf.getvalue()))["pixel_values"]
        draft = pre(open_image(buf.getvalue(), draft_size=2 * pre.input_size))["pixel_values"]
        diff = np.abs(full - draft) * np.asarray(pre.std, np.float32)[:, None, None]  # back in [0, 1] pixel units
        worst_mean, worst_max = max(worst_mean, float(diff.mean())), max(worst_max, float(diff.max()))
    assert worst_mean < 0.003  # measured ≈ 0.0008 of the pixel range (0.2 grey levels) on average
    assert worst_max < 0.06  # measured ≈ 0.02 (5 grey levels) at worst


def test_sigterm_exits_130_and_leaves_nothing_half_written(tmp_path, labels_yaml, tiny_clip) -> None:
    images = _many_images(tmp_path / "imgs", 60)
    cache, out = tmp_path / "cache", tmp_path / "out.parquet"
    proc = _stop_midway(_cli(str(images), "--out", str(out), "--cache-dir", str(cache), "--labels", str(labels_yaml),
                             "--model", str(tiny_clip), "--batch-size", "1", "--workers", "1", "-q"),
                        cache, 3, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, (proc.returncode, err)
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def _filled_cache(folder: Path, n: int) -> EmbeddingCache:
    cache = EmbeddingCache(folder)
    rng = np.random.default_rng(0)
    for start in range(0, n, 50):
        ids = range(start, min(n, start + 50))
        cache.put_images("space", [(f"{i:040x}", rng.standard_normal(16)) for i in ids],
                         [(f"/data/{i}.png", 100, 1, f"{i:040x}") for i in ids])
    cache.close()
    return cache


def test_prune_max_size_measures_the_file_itself(tmp_path: Path) -> None:
    """The limit is the SQLite file on disk (not the embedding bytes inside it), and the printed size is true."""
    _filled_cache(tmp_path / "c", 400)
    db = tmp_path / "c" / "embeddings.sqlite"
    before = db.stat().st_size
    limit = before // 2
    result = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(tmp_path / "c"), "--max-size",
                                       f"{limit}B"])
    assert result.exit_code == 0, result.output
    size = db.stat().st_size + (Path(f"{db}-wal").stat().st_size if Path(f"{db}-wal").exists() else 0)
    assert size <= limit
    assert 0 < _cached_images(tmp_path / "c") < 400
    removed = 400 - _cached_images(tmp_path / "c")
    assert result.stderr == f"removed {removed} entries; cache is now {size / 1024:.1f} KB\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--max-size", "-5GB"], "--max-size -5GB: must not be negative (e.g. 2GB, 500MB)"),
    (["--older-than", "-30d"], "--older-than -30d: must not be negative (e.g. 30d, 12h)"),
    (["--max-size", "nanGB"], "--max-size nanGB: must not be negative (e.g. 2GB, 500MB)"),
    (["--older-than", "soon"], "--older-than soon: not a value such as 30d, 12h"),
])
def test_prune_refuses_negative_limits_and_keeps_the_cache(tmp_path: Path, args: list[str], message: str) -> None:
    _filled_cache(tmp_path / "c", 20)
    result = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(tmp_path / "c"), *args])
    assert result.exit_code == 2 and result.stderr == f"error: {message}\n"
    assert _cached_images(tmp_path / "c") == 20


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: Path("/proc/autolabel-cache"), "No such file or directory"),
    (lambda p: p / "file.txt", "File exists"),
    (lambda p: p / "file.txt" / "cache", "Not a directory"),
    (lambda p: p / "fifo", "embeddings.sqlite there is not a regular file"),
])
def test_an_unusable_cache_folder_is_one_line_exit_2(tmp_path: Path, image_folder: Path, labels_yaml: Path,
                                                     make, reason: str) -> None:
    (tmp_path / "file.txt").write_text("user data")
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "embeddings.sqlite")
    folder = make(tmp_path)
    message = (f"error: cannot use {folder} as the embedding cache ({reason}); pass a writable --cache-dir (or set "
               "AUTOLABEL_CACHE_DIR), or run with --no-cache\n")
    info = CliRunner().invoke(main, ["cache", "info", "--cache-dir", str(folder)])
    if not os.path.lexists(folder):  # nothing there: inspecting it creates nothing
        message = (f"error: --cache-dir {folder}: holds no autolabel cache (embeddings.sqlite); check the path (a "
                   "run creates it)\n")
    assert info.exit_code == 2 and info.stderr == message
    assert not os.path.lexists(folder) or folder.name != "cache"
    assert (tmp_path / "file.txt").read_text() == "user data"


def test_a_run_with_an_unusable_cache_folder_is_one_line_exit_2(tmp_path, image_folder, labels_yaml,
                                                                tiny_clip) -> None:
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out",
                                       str(tmp_path / "o.parquet"), "--model", str(tiny_clip), "--cache-dir",
                                       "/proc/autolabel-cache", "-q"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "error: cannot use /proc/autolabel-cache as the embedding cache (No such file or directory); pass a writable "
        "--cache-dir (or set AUTOLABEL_CACHE_DIR), or run with --no-cache")
    assert not (tmp_path / "o.parquet").exists()


def test_file_index_keys_for_names_that_are_not_utf8(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c")
    location = os.fsdecode(b"/data/caf\xe9.png")
    cache.put_images("s", [("h" * 40, np.ones(4))], [(location, 10, 5, "h" * 40)])
    assert cache.known_hash(location, 10, 5) == "h" * 40
    assert cache.known_hash("/data/caf\\xe9.png", 10, 5) is None  # the escaped display form is another file


def test_prune_without_a_limit_is_one_line(tmp_path) -> None:
    result = CliRunner().invoke(main, ["cache", "prune", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert result.output == "error: cache prune: give --max-size SIZE, --older-than AGE or --all\n"
