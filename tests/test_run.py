"""`autolabel run` end to end through the CLI: sources, schema, metadata, bad inputs, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from click.testing import CliRunner
from PIL import Image

from autolabel.cli import main
from autolabel.table.files import read_metadata
from autolabel.table.schema import OUTPUT_SCHEMA

from .conftest import interrupt_on_batch, noise_image

CONTRACT = ["path", "label", "confidence", "margin", "status", "top_labels", "top_scores", "error"]


def invoke(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, ["run", *args], input=stdin, catch_exceptions=False)


def run_ok(source: str, labels: Path, out: Path, model: Path, *extra: str, stdin: str | None = None):
    result = invoke(source, "--labels", str(labels), "--out", str(out), "--model", str(model), *extra, stdin=stdin)
    assert result.exit_code == 0, result.output
    return result


def test_folder_to_parquet_schema_metadata_and_summary(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    out, summary = tmp_path / "out.parquet", tmp_path / "summary.json"
    run_ok(str(image_folder), labels_yaml, out, tiny_clip, "--summary-json", str(summary), "--top-k", "2")
    table = pq.read_table(out)
    assert table.schema.names == CONTRACT
    for field in OUTPUT_SCHEMA:
        assert table.schema.field(field.name).type == field.type
    frame = table.to_pandas()
    assert list(frame.path) == ["a/1.jpg", "a/sub/3.JPG", "b/1.png", "b/2.png", "c.png", "d.webp"]
    assert set(frame.status) <= {"accepted", "review"}
    assert all(len(t) == 2 for t in frame.top_labels)
    assert np.allclose(frame.confidence, [s[0] for s in frame.top_scores])
    assert np.allclose(frame.margin, frame.confidence - [s[1] for s in frame.top_scores])
    meta = read_metadata(out)
    assert meta["classes"] == ["cat", "dog", "bird"]
    assert meta["thresholds"] == {"cat": 0.4, "dog": 0.4, "bird": 0.2}
    assert meta["prompts"]["dog"][-1] == "a picture of a green tree"
    assert meta["spec"]["classes"][0] == "cat"
    assert meta["model"]["fingerprint"] and meta["counts"]["images"] == 6
    data = json.loads(summary.read_text())
    assert data["images"] == 6 and data["status"]["error"] == 0
    assert sum(c["images"] for c in data["classes"].values()) == 6
    assert data["images_per_second"] > 0 and data["model"]["id"] == str(tiny_clip)


def test_csv_output_has_json_lists_and_same_values(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    run_ok(str(image_folder), labels_yaml, tmp_path / "o.parquet", tiny_clip, "-q")
    run_ok(str(image_folder), labels_yaml, tmp_path / "o.csv", tiny_clip, "-q")
    pq_frame = pd.read_parquet(tmp_path / "o.parquet")
    csv_frame = pd.read_csv(tmp_path / "o.csv")
    assert list(csv_frame.columns) == CONTRACT
    assert list(csv_frame.label) == list(pq_frame.label)
    assert [json.loads(x) for x in csv_frame.top_labels] == [list(x) for x in pq_frame.top_labels]
    np.testing.assert_allclose(csv_frame.confidence, pq_frame.confidence, rtol=0, atol=1e-15)


def test_all_sources_give_identical_labels_and_pass_through(tmp_path, image_folder, labels_yaml, tiny_clip):
    rels = ["c.png", "a/1.jpg", "b/2.png"]
    manifest = image_folder / "m.csv"
    pd.DataFrame({"path": rels, "truth": ["x", "y", "z"], "label": [1, 2, 3]}).to_csv(manifest, index=False)
    run_ok(str(manifest), labels_yaml, tmp_path / "m.parquet", tiny_clip, "-q")
    frame = pd.read_parquet(tmp_path / "m.parquet")
    assert list(frame.columns) == [*CONTRACT, "truth", "input_label"]
    assert list(frame.path) == rels and list(frame.truth) == ["x", "y", "z"] and list(frame.input_label) == [1, 2, 3]
    stdin = "".join(str(image_folder / r) + "\n" for r in rels)
    run_ok("-", labels_yaml, tmp_path / "s.parquet", tiny_clip, "-q", stdin=stdin)
    from_stdin = pd.read_parquet(tmp_path / "s.parquet")
    assert list(from_stdin.path) == [str(image_folder / r) for r in rels]
    np.testing.assert_allclose(np.stack(from_stdin.top_scores), np.stack(frame.top_scores), atol=1e-6)


def _bad_inputs(root: Path) -> dict[str, str | None]:
    """File name → expected error substring (None: must classify)."""
    root.mkdir()
    good = io.BytesIO()
    noise_image(1, (80, 60)).save(good, "JPEG")
    (root / "zero.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(good.getvalue()[:300])
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (root / "text.jpg").write_text("hello, I am not an image")
    (root / "dir.png").mkdir()
    noise_image(2, (40, 40)).convert("CMYK").save(root / "cmyk.jpg")
    pal = noise_image(3, (40, 40)).convert("P")
    pal.save(root / "palette.png", transparency=0)
    Image.fromarray((np.arange(1600).reshape(40, 40) * 40).astype(np.uint16)).save(root / "sixteen.png")
    noise_image(4, (40, 40)).convert("LA").save(root / "la.png")
    frames = [noise_image(5 + i, (40, 40)) for i in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6
    noise_image(6, (60, 40)).save(root / "rotated.jpg", exif=exif)
    noise_image(7, (120, 120)).save(root / "big.png")
    return {"zero.jpg": "empty file", "truncated.jpg": "truncated or corrupt", "corrupt.png": "",
            "text.jpg": "not a recognised image", "cmyk.jpg": None, "palette.png": None, "sixteen.png": None,
            "la.png": None, "anim.gif": None, "rotated.jpg": None, "big.png": "decompression bomb",
            "missing.png": "file not found", "dir.png": "is a directory"}


def test_bad_inputs_become_error_rows(tmp_path, labels_yaml, tiny_clip, monkeypatch) -> None:
    expected = _bad_inputs(tmp_path / "bad")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 120 * 120 // 2 - 1)  # only big.png passes twice the limit
    manifest = tmp_path / "bad" / "list.txt"
    manifest.write_text("\n".join(expected) + "\n")
    result = invoke(str(manifest), "--labels", str(labels_yaml), "--out", str(tmp_path / "o.parquet"),
                    "--model", str(tiny_clip), "--max-errors", "100")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "o.parquet").set_index("path")
    assert list(frame.index) == list(expected)
    for name, message in expected.items():
        row = frame.loc[name]
        if message is None:
            assert row.status in ("accepted", "review") and row.label in ("cat", "dog", "bird"), name
        else:
            assert row.status == "error" and message in row.error and pd.isna(row.label), name
            assert list(row.top_labels) == [] and "\n" not in row.error
            assert f"skipping {name}: " in result.output


def test_max_errors_exit_1_keeps_output(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    (image_folder / "broken.png").write_bytes(b"nope")
    (image_folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "o.parquet"
    result = invoke(str(image_folder), "--labels", str(labels_yaml), "--out", str(out), "--model", str(tiny_clip),
                    "--max-errors", "1", "-q")
    assert result.exit_code == 1
    assert "2 images failed, more than --max-errors 1" in result.output
    assert (pd.read_parquet(out).status == "error").sum() == 2


def test_usage_errors_exit_2(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    cases = [
        (["--out", str(tmp_path / "o.json")], "must end in .parquet or .csv"),
        (["--out", str(tmp_path / "o.csv"), "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--out", str(tmp_path / "o.csv"), "--threshold", "2"], "--threshold: must be between 0 and 1"),
        (["--out", str(tmp_path / "o.csv"), "--device", "cuda:7"], "cuda:7"),
    ]
    for args, message in cases:
        result = invoke(str(image_folder), "--labels", str(labels_yaml), "--model", str(tiny_clip), *args)
        assert result.exit_code == 2, args
        assert message in result.output
    result = invoke(str(tmp_path / "nope"), "--labels", str(labels_yaml), "--out", str(tmp_path / "o.csv"))
    assert result.exit_code == 2 and "no such folder or manifest" in result.output


def test_interrupt_leaves_nothing_and_exits_130(tmp_path, image_folder, labels_yaml, tiny_clip, monkeypatch):
    interrupt_on_batch(monkeypatch, 2)
    out = tmp_path / "o.parquet"
    result = invoke(str(image_folder), "--labels", str(labels_yaml), "--out", str(out), "--model", str(tiny_clip),
                    "--batch-size", "2", "-q")
    assert result.exit_code == 130
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.parquet")] == []


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from autolabel.cli import main\n"
            "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--max-errors" in proc.stdout and "Examples" in proc.stdout


def test_python_dash_m_and_prompts_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "autolabel", "prompts"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0].startswith("default\t16 templates")
    proc = subprocess.run([sys.executable, "-m", "autolabel", "prompts", "imagenet-7"], capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.splitlines()[0] == "itap of a {label}."


def test_a_file_name_that_is_not_utf8_is_labelled_not_lost(tmp_path, labels_yaml, tiny_clip) -> None:
    """The writer used to raise UnicodeEncodeError after every image was classified: the whole run was lost."""
    root = tmp_path / "imgs"
    root.mkdir()
    noise_image(1, (40, 40)).save(root / "plain.png")
    noise_image(2, (40, 40)).save(root / os.fsdecode(b"caf\xe9.png"))
    for out in (tmp_path / "o.parquet", tmp_path / "o.csv"):
        result = invoke(str(root), "--labels", str(labels_yaml), "--out", str(out), "--model", str(tiny_clip), "-q")
        assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "o.parquet")
    assert list(frame.path) == ["caf\\xe9.png", "plain.png"]
    assert set(frame.status) <= {"accepted", "review"} and frame.error.isna().all()  # read through the real name
    assert list(pd.read_csv(tmp_path / "o.csv").path) == ["caf\\xe9.png", "plain.png"]


def test_a_symlink_loop_labels_each_image_once(tmp_path, labels_yaml, tiny_clip) -> None:
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    noise_image(1, (40, 40)).save(root / "a" / "1.png")
    (root / "a" / "loop").symlink_to(root)
    run_ok(str(root), labels_yaml, tmp_path / "o.parquet", tiny_clip, "-q")
    assert list(pd.read_parquet(tmp_path / "o.parquet").path) == ["a/1.png"]


def test_a_fifo_in_the_folder_is_skipped_not_waited_on(tmp_path, labels_yaml, tiny_clip) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    noise_image(1, (40, 40)).save(root / "1.png")
    os.mkfifo(root / "pipe.png")
    run_ok(str(root), labels_yaml, tmp_path / "o.parquet", tiny_clip, "-q")
    assert list(pd.read_parquet(tmp_path / "o.parquet").path) == ["1.png"]


def test_a_fifo_manifest_is_one_line_exit_2_not_a_hang(tmp_path, labels_yaml) -> None:
    os.mkfifo(tmp_path / "m.csv")
    proc = subprocess.run([sys.executable, "-m", "autolabel", "run", str(tmp_path / "m.csv"), "--labels",
                           str(labels_yaml), "--out", str(tmp_path / "o.parquet")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: {tmp_path / 'm.csv'}: cannot read manifest: not a regular file (a FIFO); only "
                           "regular files are read\n")


def test_over_long_prompts_are_one_warning_line_and_all_with_verbose(tmp_path, image_folder, tiny_clip) -> None:
    long = "a photo of the " + " ".join(["red"] * 30)
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"templates": ["a photo of a {label}."],
                                "classes": [{"name": f"c{i}", "prompts": [f"{long} {i}"]} for i in range(40)]}))
    args = [str(image_folder), "--labels", str(spec), "--out", str(tmp_path / "o.parquet"), "--model", str(tiny_clip)]
    quiet = invoke(*args, "-q")
    lines = [ln for ln in quiet.output.splitlines() if "longer than the model's text context" in ln]
    assert quiet.exit_code == 0 and len(lines) == 1
    assert lines[0].startswith("warning: 40 prompts are longer") and lines[0].endswith(
        "… and 37 more (-v lists them all)")
    verbose = invoke(*args, "-q", "-v")
    assert all(f"{long} {i}" in verbose.output for i in range(40))


def test_run_warns_once_about_classes_the_model_cannot_separate(tmp_path, image_folder) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"model": str(Path(__file__).resolve().parent.parent / "examples/tiny-shapes/model"),
                                "templates": ["a photo of a {label}."],
                                "classes": ["red circle", "circle red", "blue square"]}))
    result = invoke(str(image_folder), "--labels", str(spec), "--out", str(tmp_path / "o.parquet"), "-q")
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if "too close for the model to separate" in ln]
    assert len(lines) == 1 and "'red circle' and 'circle red'" in lines[0]


def test_quiet_run_prints_only_the_skip_lines(tmp_path, image_folder) -> None:
    (image_folder / "broken.png").write_bytes(b"nope")
    spec = Path(__file__).resolve().parent.parent / "examples/tiny-shapes/labels.yaml"  # a spec lint passes
    proc = subprocess.run([sys.executable, "-m", "autolabel", "run", str(image_folder), "--labels", str(spec),
                           "--out", str(tmp_path / "o.parquet"), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr == "skipping broken.png: not a recognised image (corrupt, or not an image file)\n"


def test_a_local_model_given_by_a_relative_path_is_recorded_absolute(tmp_path, image_folder, labels_yaml, tiny_clip,
                                                                     monkeypatch) -> None:
    """queue and audit load the table's model from wherever they run (a relative id named nothing from elsewhere)."""
    monkeypatch.chdir(tiny_clip.parent)
    run_ok(str(image_folder), labels_yaml, tmp_path / "out.parquet", Path(tiny_clip.name))
    assert read_metadata(tmp_path / "out.parquet")["model"]["id"] == str(tiny_clip)
