"""Multi-label eval, calibrate and diff: equal to scikit-learn / brute force; truth lists from Parquet and CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from autolabel.cli import main
from autolabel.core.errors import UsageError
from autolabel.table.results import Results, load_results
from autolabel.table.truth import resolve_truth
from autolabel.task import multi as labelsets
from autolabel.task.cells import label_list
from autolabel.task.metrics import Truth

CLASSES = ["outdoor", "people", "text", "night", "dog"]


def make_results(scores: np.ndarray, thresholds: list[float] | None = None, seed: int = 0) -> Results:
    """A multi-label table from a (rows, classes) score matrix, as `autolabel run` would write it."""
    rng = np.random.default_rng(seed)
    thresholds = thresholds or [0.5] * scores.shape[1]
    rows = []
    for i, row in enumerate(scores):
        order = np.argsort(-row, kind="stable")
        rows.append({"path": f"d/{i}.jpg", "label": CLASSES[order[0]],
                     "labels": [CLASSES[j] for j in order if row[j] >= thresholds[j]],
                     "confidence": float(row[order[0]]), "margin": float(rng.uniform(0, 3)),
                     "status": "accepted" if rng.random() < 0.7 else "review",
                     "top_labels": [CLASSES[j] for j in order], "top_scores": [float(row[j]) for j in order],
                     "error": None})
    meta = {"classes": CLASSES, "thresholds": dict(zip(CLASSES, thresholds, strict=True)), "multi_label": True}
    frame = pd.DataFrame(rows, columns=["path", "label", "labels", "confidence", "margin", "status", "top_labels",
                                        "top_scores", "error"])
    return Results(path=Path("t.parquet"), frame=frame, classes=list(CLASSES), metadata=meta)


def random_case(seed: int, n: int) -> tuple[Results, list[list[str]]]:
    rng = np.random.default_rng(seed)
    truth = rng.random((n, len(CLASSES))) < [0.5, 0.3, 0.2, 0.1, 0.02]
    scores = np.clip(0.35 * truth + rng.uniform(0, 0.65, truth.shape), 0, 1)
    truth_lists = [[c for c, t in zip(CLASSES, row, strict=True) if t] for row in truth]
    return make_results(scores, [0.5, 0.45, 0.6, 0.5, 0.5], seed), truth_lists


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_sklearn_multilabel(seed: int) -> None:
    results, truth = random_case(seed, int(np.random.default_rng(seed).integers(40, 300)))
    m = labelsets.evaluate(results, Truth(truth, "t"))
    binarizer = MultiLabelBinarizer(classes=CLASSES)
    y, p = binarizer.fit_transform(truth), binarizer.transform(results.frame["labels"])
    assert m["n"] == len(truth)
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-9)
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, p), abs=1e-9)
    for average in ("micro", "macro", "weighted", "samples"):
        expected = precision_recall_fscore_support(y, p, average=average, zero_division=0)[:3]
        got = (m[f"{average}_precision"], m[f"{average}_recall"], m[f"{average}_f1"])
        assert got == pytest.approx(expected, abs=1e-9), average
    per = precision_recall_fscore_support(y, p, average=None, zero_division=0)
    for i, c in enumerate(CLASSES):
        row = m["per_class"][c]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            tuple(v[i] for v in per), abs=1e-9)
    accepted = (results.frame["status"] == "accepted").to_numpy()
    ya, pa = y[accepted], p[accepted]
    assert m["accepted"]["precision"] == pytest.approx((ya & pa).sum() / pa.sum(), abs=1e-9)
    assert m["accepted"]["subset_accuracy"] == pytest.approx(accuracy_score(ya, pa), abs=1e-9)


def test_exclusions_are_counted() -> None:
    results, truth = random_case(1, 8)
    frame = results.frame
    frame.loc[0, ["status", "label", "labels", "error"]] = ["error", None, None, "broken"]
    frame.at[0, "labels"], frame.at[1, "status"] = [], "reviewed"
    truth[2], truth[3] = None, ["outdoor", "zebra"]
    truth[4] = []  # an image with none of the classes is a real truth
    m = labelsets.evaluate(results, Truth(truth, "t"))
    assert m["n"] == 4
    ex = m["excluded"]
    assert (ex["error"], ex["reviewed"], ex["no_truth"], ex["unknown_truth"], ex["total"]) == (1, 1, 1, 1, 4)
    assert ex["unknown_truth_labels"] == {"zebra": 1}


def test_label_list_cells() -> None:
    assert label_list('["a", "b", "a"]') == ["a", "b"]
    assert label_list("dog") == ["dog"] and label_list(" dog ") == ["dog"]
    assert label_list("[]") == [] and label_list(np.array(["x", "y"])) == ["x", "y"]
    assert label_list(None) is None and label_list("") is None and label_list(float("nan")) is None


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_list_truth_from_a_file_in_parquet_and_csv(tmp_path: Path, fmt: str) -> None:
    results, truth = random_case(2, 60)
    truth[5] = ["dog"]
    table = pd.DataFrame({"path": results.frame["path"], "label": truth})
    if fmt == "parquet":
        table.to_parquet(tmp_path / "truth.parquet")  # a list<string> column
    else:  # JSON arrays, with a plain name for a single label and an empty cell for no truth
        table["label"] = [("dog" if t == ["dog"] else json.dumps(t)) for t in truth]
        table.loc[7, "label"] = ""
        table.to_csv(tmp_path / "truth.csv", index=False)
    resolved = resolve_truth(results, str(tmp_path / f"truth.{fmt}"))
    assert resolved.labels[5] == ["dog"]
    if fmt == "csv":
        assert resolved.labels[7] is None
        truth[7] = None
    assert resolved.labels == truth
    assert labelsets.evaluate(results, resolved) == labelsets.evaluate(results, Truth(truth, resolved.source))


def test_eval_cli_on_csv_and_parquet_tables_with_list_columns(tmp_path: Path) -> None:
    results, truth = random_case(3, 80)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"classes": CLASSES, "multi_label": True}))
    frame = results.frame.assign(truth=truth)
    frame.to_parquet(tmp_path / "t.parquet")
    csv = frame.copy()
    for column in ("labels", "top_labels", "top_scores", "truth"):
        csv[column] = [json.dumps(v) for v in csv[column]]
    csv.to_csv(tmp_path / "t.csv", index=False)
    outputs = []
    for name in ("t.parquet", "t.csv"):
        result = CliRunner().invoke(main, ["eval", str(tmp_path / name), "--truth", "truth", "--labels", str(spec),
                                           "--json", "-"])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout))
        assert "micro F1" in result.stderr
    assert outputs[0] == outputs[1]
    assert outputs[0]["micro_f1"] == pytest.approx(labelsets.evaluate(results, Truth(truth, "t"))["micro_f1"])


def brute_force(scores: np.ndarray, positive: np.ndarray, target: float) -> float | None:
    """The lowest cut whose accepted decisions (score ≥ cut) reach `target` precision."""
    for cut in sorted(set(scores)):
        accepted = scores >= cut
        if accepted.any() and positive[accepted].mean() >= target:
            return float(cut)
    return None


def test_calibrate_per_class_equals_brute_force(tmp_path: Path) -> None:
    results, truth = random_case(4, 400)
    out = labelsets.calibrate(results, Truth(truth, "t"), 0.9, per_class=True, min_class_rows=20)
    scores = labelsets.score_matrix(results, range(400))
    y = MultiLabelBinarizer(classes=CLASSES).fit_transform(truth).astype(bool)
    # The reported threshold is the shortest decimal that accepts exactly the brute-force cut's decisions.
    cut = brute_force(scores.ravel(), y.ravel(), 0.9)
    assert ((scores >= out["global"]["threshold"]) == (scores >= cut)).all()
    for j, c in enumerate(CLASSES):
        got = out["per_class"][c]
        if y[:, j].sum() < 20:
            assert got["threshold"] is None and "need 20" in got["reason"]
            continue
        cut = brute_force(scores[:, j], y[:, j], 0.9)
        kept = scores[:, j] >= got["threshold"]
        assert (kept == (scores[:, j] >= cut)).all() and got["threshold"] <= cut, c
        assert got["precision"] == pytest.approx(y[kept, j].mean())
        assert got["recall"] == pytest.approx(y[kept, j].sum() / y[:, j].sum())
    with pytest.raises(UsageError, match="only 10 labelled rows"):
        labelsets.calibrate(make_results(np.full((10, 5), 0.5)), Truth([["dog"]] * 10, "t"), 0.9)


def test_calibrate_write_spec_keeps_multi_label(tmp_path: Path) -> None:
    results, truth = random_case(5, 200)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"classes": CLASSES, "multi_label": True, "review_band": 0.5}))
    frame = results.frame.assign(truth=truth)
    frame.to_parquet(tmp_path / "t.parquet")
    written = tmp_path / "calibrated.yaml"
    result = CliRunner().invoke(main, ["calibrate", str(tmp_path / "t.parquet"), "--labels", str(spec), "--truth",
                                       "truth", "-p", "0.8", "--per-class", "--write-spec", str(written)])
    assert result.exit_code == 0, result.output
    assert "precision on labels" in result.stdout and "recall" in result.stdout
    data = yaml.safe_load(written.read_text())
    assert data["multi_label"] is True and data["review_band"] == 0.5
    expected = labelsets.calibrate(load_results(tmp_path / "t.parquet", spec), Truth(truth, "t"), 0.8, True)
    for entry in data["classes"]:
        name = entry["name"] if isinstance(entry, dict) else entry
        threshold = expected["per_class"][name]["threshold"]
        assert (entry.get("threshold") if isinstance(entry, dict) else None) == threshold


def test_diff_compares_label_sets(tmp_path: Path) -> None:
    old, _ = random_case(6, 50)
    new, _ = random_case(6, 50)
    new.frame.at[3, "labels"] = ["dog"]
    new.frame.at[4, "labels"] = sorted(set(old.frame.at[4, "labels"]) ^ {"night"})
    new.frame.loc[5, "status"] = "error"
    result = labelsets.diff(old, new)
    changed = [i for i in range(50) if i != 5 and set(old.frame.at[i, "labels"]) != set(new.frame.at[i, "labels"])]
    assert result["flips"] == len(changed) and result["compared"] == 49 and result["newly_errored"] == 1
    assert result["flip_rate"] == pytest.approx(len(changed) / 49)
    expected = {}
    for c in CLASSES:
        added = sum(c in new.frame.at[i, "labels"] and c not in old.frame.at[i, "labels"] for i in changed)
        removed = sum(c not in new.frame.at[i, "labels"] and c in old.frame.at[i, "labels"] for i in changed)
        if added or removed:
            expected[c] = {"total": added + removed, "added": added, "removed": removed}
        members = sum(c in new.frame.at[i, "labels"] for i in range(50) if i != 5)
        assert result["distribution"][c]["new"] == members
    assert result["flips_by_class"] == expected and "night" in expected and len(changed) == 2
    same = labelsets.diff(old, old)
    assert same["flips"] == 0 and same["status_changes"] == {}
    empty = labelsets.diff(old, make_results(np.zeros((0, 5))))
    assert empty["matched"] == 0 and empty["flip_rate"] == 0.0
