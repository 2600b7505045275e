"""What every command shares: AUTOLABEL_<COMMAND>_<OPTION> environment variables, interrupt messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from autolabel.cli import main

from .test_evaluate import _simulated

SPEC = "templates: ['{label}']\nclasses: [cat, dog, bird, fish]\n"


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    """A labels table with a `truth` column and its spec (spec.yaml beside it)."""
    results, truth = _simulated(100, seed=5)
    frame = results.frame.copy()
    frame["truth"] = truth
    frame.to_parquet(tmp_path / "labels.parquet")
    (tmp_path / "spec.yaml").write_text(SPEC)
    return tmp_path / "labels.parquet"


def invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(main, args, env=env)


def test_run_reads_autolabel_run_options(tmp_path: Path, image_folder: Path, labels_yaml: Path) -> None:
    result = invoke(["run", str(image_folder), "--labels", str(labels_yaml), "--out", str(tmp_path / "o.parquet")],
                    {"AUTOLABEL_RUN_BATCH_SIZE": "0"})
    assert result.exit_code == 2 and result.stderr == "error: --batch-size must be at least 1, got 0\n"


def test_eval_reads_autolabel_eval_options(table: Path) -> None:
    result = invoke(["eval", str(table), "--labels", str(table.parent / "spec.yaml")],
                    {"AUTOLABEL_EVAL_TRUTH": "truth", "AUTOLABEL_EVAL_JSON": "-"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["truth"] == "column 'truth'"


def test_calibrate_reads_autolabel_calibrate_options(table: Path) -> None:
    result = invoke(["calibrate", str(table), "--truth", "truth", "--json", "-"],
                    {"AUTOLABEL_CALIBRATE_TARGET_PRECISION": "0.8",
                     "AUTOLABEL_CALIBRATE_LABELS": str(table.parent / "spec.yaml")})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["target_precision"] == 0.8


def test_diff_reads_autolabel_diff_options(table: Path) -> None:
    result = invoke(["diff", str(table), str(table), "--labels", str(table.parent / "spec.yaml")],
                    {"AUTOLABEL_DIFF_MAX_FLIP_RATE": "2"})
    assert result.exit_code == 2 and result.stderr == "error: --max-flip-rate must be between 0 and 1, got 2.0\n"


def test_report_reads_autolabel_report_options(table: Path) -> None:
    out = table.parent / "report.html"
    result = invoke(["report", str(table), "--labels", str(table.parent / "spec.yaml")],
                    {"AUTOLABEL_REPORT_OUT": str(out)})
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!doctype html>")


def test_export_reads_autolabel_export_options(table: Path) -> None:
    out = table.parent / "ls"
    result = invoke(["export", str(table), "--labels", str(table.parent / "spec.yaml"), "--images-root", "/"],
                    {"AUTOLABEL_EXPORT_TO": "label-studio", "AUTOLABEL_EXPORT_OUT": str(out),
                     "AUTOLABEL_EXPORT_URL_PREFIX": "https://cdn.example"})
    assert result.exit_code == 0, result.output
    assert json.loads((out / "tasks.json").read_text())[0]["data"]["image"].startswith("https://cdn.example/")


def test_import_review_reads_autolabel_import_review_options(table: Path) -> None:
    exported = table.parent / "review.json"
    exported.write_text(json.dumps([{"data": {"path": "dir0/img0.jpg"}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["fish"]}}]}]}]))
    result = invoke(["import-review", str(exported), "--labels", str(table.parent / "spec.yaml")],
                    {"AUTOLABEL_IMPORT_REVIEW_INTO": str(table)})
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("1 reviewed rows merged from label-studio")


def test_cache_commands_read_the_shared_cache_dir_and_their_own_options(tmp_path: Path) -> None:
    from autolabel.embedding.cache import EmbeddingCache

    EmbeddingCache(tmp_path / "c").close()
    info = invoke(["cache", "info"], {"AUTOLABEL_CACHE_DIR": str(tmp_path / "c")})
    assert info.exit_code == 0 and info.stdout.splitlines()[0] == f"path\t{tmp_path / 'c' / 'embeddings.sqlite'}"
    missing = invoke(["cache", "info"], {"AUTOLABEL_CACHE_DIR": str(tmp_path / "typo")})
    assert missing.exit_code == 2 and not (tmp_path / "typo").exists()
    prune = invoke(["cache", "prune", "--cache-dir", str(tmp_path / "c")],
                   {"AUTOLABEL_CACHE_PRUNE_MAX_SIZE": "-5GB"})
    assert prune.exit_code == 2 and prune.stderr == "error: --max-size -5GB: must not be negative (e.g. 2GB, 500MB)\n"


@pytest.mark.parametrize("command", [["run", "{dir}/images", "--labels", "{dir}/spec.yaml"],
                                     ["report", "{dir}/labels.parquet"],
                                     ["export", "{dir}/labels.parquet", "--to", "hf"]])
def test_no_variable_is_shared_by_several_commands(table: Path, command: list[str]) -> None:
    result = invoke([a.format(dir=table.parent) for a in command], {"AUTOLABEL_OUT": str(table.parent / "x")})
    assert result.exit_code == 2 and "Missing option '--out'" in result.stderr


def test_help_names_each_options_variable() -> None:
    result = invoke(["cache", "prune", "--help"], {})
    assert "[env var: AUTOLABEL_CACHE_PRUNE_MAX_SIZE]" in " ".join(result.stdout.split())
    assert "[env var: AUTOLABEL_CACHE_DIR]" in " ".join(result.stdout.split())


def test_interrupting_a_command_without_a_cache_promises_no_resume(table: Path, monkeypatch) -> None:
    import autolabel.task.single

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(autolabel.task.single, "evaluate", interrupted)
    result = invoke(["eval", str(table), "--truth", "truth", "--labels", str(table.parent / "spec.yaml")], {})
    assert result.exit_code == 130 and result.stderr == "interrupted: no partial output was written\n"
