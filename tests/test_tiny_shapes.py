"""End-to-end accuracy with the committed tiny-shapes CLIP: these fail when the pipeline is wrong."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from autolabel.cli import main

from .conftest import TINY_SHAPES

MODEL = TINY_SHAPES / "model"


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from make_images import make_images

    root = tmp_path_factory.mktemp("shapes")
    make_images(root, n=240, seed=2024)  # fresh: the trainer never drew these
    return root


def label(source: str, spec: dict | Path, tmp: Path, name: str, stdin: str | None = None) -> pd.DataFrame:
    if isinstance(spec, dict):
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        spec = path
    out = tmp / f"{name}.parquet"
    result = CliRunner().invoke(main, ["run", source, "--labels", str(spec), "--out", str(out), "--model", str(MODEL),
                                       "-q"], input=stdin)
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out)


def truth(shapes_dir: Path) -> pd.DataFrame:
    return pd.read_csv(shapes_dir / "manifest.csv")


def accuracy(frame: pd.DataFrame, column: str) -> float:
    return float((frame["label"] == frame[column]).mean())


def test_twelve_classes_at_least_95_percent(shapes_dir: Path, tmp_path: Path) -> None:
    frame = label(str(shapes_dir / "manifest.csv"), TINY_SHAPES / "labels.yaml", tmp_path, "all")
    assert len(frame) == 240
    # The contract is ≥ 95%; the correct pipeline scores ~99-100%. 97% is what skipping mean/std pixel
    # normalisation (95.4%), a top-left crop (93.3%) or unnormalised prompt ensembling (92.5%) fall below.
    assert accuracy(frame, "truth") >= 0.97


@pytest.mark.parametrize(("spec", "column"), [("colors.yaml", "color"), ("shapes.yaml", "shape")])
def test_colour_only_and_shape_only_at_least_90_percent(shapes_dir: Path, tmp_path: Path, spec: str,
                                                        column: str) -> None:
    frame = label(str(shapes_dir / "manifest.csv"), TINY_SHAPES / spec, tmp_path, column)
    assert accuracy(frame, column) >= 0.90


def test_permuting_or_renaming_classes_changes_no_label(shapes_dir: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load((TINY_SHAPES / "labels.yaml").read_text())
    manifest = str(shapes_dir / "manifest.csv")
    base = label(manifest, spec, tmp_path, "base")
    permuted = dict(spec, classes=list(reversed(spec["classes"][6:])) + spec["classes"][:6][::-1])
    assert list(label(manifest, permuted, tmp_path, "permuted")["label"]) == list(base["label"])
    renamed = dict(spec, classes=[{"name": "crimson disc", "synonyms": ["red circle"]}, *spec["classes"][1:]])
    relabelled = label(manifest, renamed, tmp_path, "renamed")["label"].replace({"crimson disc": "red circle"})
    assert list(relabelled) == list(base["label"])


def test_ensemble_at_least_as_accurate_as_worst_single_template(shapes_dir: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load((TINY_SHAPES / "labels.yaml").read_text())
    manifest = str(shapes_dir / "manifest.csv")
    ensembled = accuracy(label(manifest, spec, tmp_path, "ens"), "truth")
    singles = [accuracy(label(manifest, dict(spec, templates=[t]), tmp_path, f"t{i}"), "truth")
               for i, t in enumerate(spec["templates"])]
    assert ensembled >= min(singles)


def test_folder_csv_parquet_and_stdin_agree(shapes_dir: Path, tmp_path: Path) -> None:
    spec = TINY_SHAPES / "labels.yaml"
    frame = truth(shapes_dir).sort_values("path").reset_index(drop=True)
    frame.to_parquet(shapes_dir / "manifest.parquet", index=False)
    by_folder = label(str(shapes_dir), spec, tmp_path, "folder")
    by_csv = label(str(shapes_dir / "manifest.csv"), spec, tmp_path, "csv").sort_values("path")
    by_parquet = label(str(shapes_dir / "manifest.parquet"), spec, tmp_path, "parquet")
    stdin = "".join(f"{shapes_dir / p}\n" for p in frame["path"])
    by_stdin = label("-", spec, tmp_path, "stdin", stdin=stdin)
    assert list(by_folder["path"]) == list(frame["path"])
    for other in (by_csv, by_parquet, by_stdin):
        assert list(other["label"]) == list(by_folder["label"])
        assert list(other["status"]) == list(by_folder["status"])


def test_calibrated_spec_from_the_table_alone_still_finds_the_model(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(main, ["run", str(shapes_dir / "manifest.csv"), "--labels",
                                       str(TINY_SHAPES / "labels.yaml"), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    target = tmp_path / "elsewhere" / "calibrated.yaml"
    result = CliRunner().invoke(main, ["calibrate", str(out), "--truth", "truth", "-p", "0.9",
                                       "--write-spec", str(target)])  # the spec comes from the table's metadata
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(target.read_text())
    assert (target.parent / written["model"]).resolve() == (TINY_SHAPES / "model").resolve()
    again = CliRunner().invoke(main, ["run", str(shapes_dir / "manifest.csv"), "--labels", str(target), "--out",
                                      str(tmp_path / "again.parquet"), "-q"])
    assert again.exit_code == 0, again.output
