"""Multi-label tables: label-set metrics (scikit-learn's multilabel definitions), per-class calibration, set diffs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autolabel.core.errors import UsageError
from autolabel.table.results import Results
from autolabel.task.cells import label_list
from autolabel.task.single import MIN_CALIBRATION_ROWS, Truth, _best_threshold, _prf


def indicator(sets: Iterable[Iterable[str]], classes: Sequence[str]) -> np.ndarray:
    """Label sets → a (rows, classes) boolean matrix in class order (names outside `classes` are ignored)."""
    index = {c: i for i, c in enumerate(classes)}
    rows = list(sets)
    out = np.zeros((len(rows), len(classes)), dtype=bool)
    for r, names in enumerate(rows):
        for name in names:
            if name in index:
                out[r, index[name]] = True
    return out


def score_matrix(results: Results, rows: Sequence[int]) -> np.ndarray:
    """Every class's score per row from top_labels/top_scores; -inf where --top-k left a class out."""
    index = {c: i for i, c in enumerate(results.classes)}
    out = np.full((len(rows), len(index)), -np.inf)
    frame = results.frame
    for r, i in enumerate(rows):
        for name, score in zip(frame["top_labels"].iat[i], frame["top_scores"].iat[i], strict=True):
            if name in index:
                out[r, index[name]] = float(score)
    return out


@dataclass
class LabelSets:
    """The usable rows of a multi-label table against its truth, as indicator matrices."""

    index: list[int]  # positions of the usable rows in the table
    truth: np.ndarray  # (rows, classes) bool
    predicted: np.ndarray  # (rows, classes) bool, from the `labels` column
    status: list[str]
    excluded: dict[str, Any]


def usable_sets(results: Results, truth: Truth) -> LabelSets:
    """Rows with a prediction and a truth list within the spec; the others are counted in `excluded`.

    `reviewed` rows (the label is a person's, issue 10) are no machine prediction: excluded and counted.
    """
    known = set(results.classes)
    frame = results.frame
    index, truths, status = [], [], []
    excluded: dict[str, Any] = {"error": 0, "reviewed": 0, "no_truth": 0, "unknown_truth": 0,
                                "unknown_truth_labels": {}}
    for i, (stat, names) in enumerate(zip(frame["status"], truth.labels, strict=True)):
        names = label_list(names) if not isinstance(names, list) else names
        if stat == "error":
            excluded["error"] += 1
        elif stat == "reviewed":
            excluded["reviewed"] += 1
        elif names is None:
            excluded["no_truth"] += 1
        elif unknown := [n for n in names if n not in known]:
            excluded["unknown_truth"] += 1
            for name in unknown:
                excluded["unknown_truth_labels"][name] = excluded["unknown_truth_labels"].get(name, 0) + 1
        else:
            index.append(i)
            truths.append(names)
            status.append(str(stat))
    excluded["total"] = sum(excluded[k] for k in ("error", "reviewed", "no_truth", "unknown_truth"))
    predicted = indicator((frame["labels"].iat[i] for i in index), results.classes)
    return LabelSets(index, indicator(truths, results.classes), predicted, status, excluded)


def _averages(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Per-class, micro, macro, weighted and samples precision/recall/F1 (scikit-learn, zero_division=0)."""
    tp, predicted, support = (y & p).sum(0).astype(float), p.sum(0).astype(float), y.sum(0).astype(float)
    precision, recall, f1 = _prf(tp, predicted, support)
    micro = [float(v[0]) for v in _prf(tp.sum(keepdims=True), predicted.sum(keepdims=True),
                                       support.sum(keepdims=True))]
    weights = support / support.sum() if support.sum() else np.zeros_like(support)
    per_row = _prf((y & p).sum(1).astype(float), p.sum(1).astype(float), y.sum(1).astype(float))
    out: dict[str, Any] = {}
    for name, values in (("micro", micro), ("macro", [float(v.mean()) if len(v) else 0.0 for v in
                                                      (precision, recall, f1)]),
                         ("weighted", [float((v * weights).sum()) for v in (precision, recall, f1)]),
                         ("samples", [float(v.mean()) if len(v) else 0.0 for v in per_row])):
        out.update({f"{name}_precision": values[0], f"{name}_recall": values[1], f"{name}_f1": values[2]})
    out["per_class_arrays"] = (precision, recall, f1, support)
    return out


def evaluate(results: Results, truth: Truth) -> dict[str, Any]:
    """Multi-label metrics: subset accuracy, Hamming loss, micro/macro/weighted/samples P/R/F1, per class, and
    the same on accepted rows; equal to scikit-learn's multilabel metrics."""
    rows = usable_sets(results, truth)
    y, p, n = rows.truth, rows.predicted, len(rows.index)
    averages = _averages(y, p)
    precision, recall, f1, support = averages.pop("per_class_arrays")
    accepted = np.asarray([s == "accepted" for s in rows.status], dtype=bool)
    ya, pa = y[accepted], p[accepted]
    return {
        "n": n,
        "truth": truth.source,
        "multi_label": True,
        "subset_accuracy": float((y == p).all(axis=1).mean()) if n else 0.0,
        "hamming_loss": float((y != p).mean()) if y.size else 0.0,
        **averages,
        "label_cardinality": {"truth": float(y.sum(1).mean()) if n else 0.0,
                              "predicted": float(p.sum(1).mean()) if n else 0.0},
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(support[i])}
            for i, c in enumerate(results.classes)
        },
        "accepted": {
            "n": int(accepted.sum()),
            "coverage": float(accepted.mean()) if n else 0.0,
            "precision": float((ya & pa).sum() / pa.sum()) if pa.sum() else None,
            "subset_accuracy": float((ya == pa).all(axis=1).mean()) if len(ya) else None,
        },
        "review_share": float(1 - accepted.mean()) if n else 0.0,
        "excluded": rows.excluded,
    }


def _threshold(scores: np.ndarray, positive: np.ndarray, target: float, governed: np.ndarray) -> dict[str, Any]:
    """evaluate._best_threshold over (image, class) decisions, plus recall; a score is a label when ≥ t.

    `governed`: the scores the threshold decides on the whole table (labelled or not), see _best_threshold.
    """
    found = _best_threshold(scores, np.ones(len(scores), dtype=bool), positive, target,
                            governed[np.isfinite(governed)])
    if found.get("threshold") is not None:
        found["threshold"] = max(0.0, found["threshold"])  # -inf: a class --top-k left out of every row
        found["recall"] = float((positive & (scores >= found["threshold"])).sum() / positive.sum()) \
            if positive.sum() else 0.0
    found["positives"] = int(positive.sum())
    return found


def calibrate(results: Results, truth: Truth, target: float, per_class: bool = False,
              min_class_rows: int = 20) -> dict[str, Any]:
    """Thresholds whose labels reach `target` precision: one over every (image, class) decision, and with
    `per_class` one per class (a class needs `min_class_rows` labelled images that have it)."""
    if not 0.0 < target <= 1.0:
        raise UsageError(f"--target-precision must be in (0, 1], got {target}")
    rows = usable_sets(results, truth)
    n = len(rows.index)
    if n < MIN_CALIBRATION_ROWS:
        ex = rows.excluded
        raise UsageError(
            f"only {n} labelled rows usable for calibration (need at least {MIN_CALIBRATION_ROWS}); excluded: "
            f"{ex['error']} error, {ex['reviewed']} reviewed, {ex['no_truth']} without truth, "
            f"{ex['unknown_truth']} with a truth outside the spec"
        )
    scores = score_matrix(results, rows.index)
    governed = score_matrix(results, np.flatnonzero((results.frame["status"] != "error").to_numpy()))
    out: dict[str, Any] = {
        "target_precision": target,
        "interval_method": "Wilson score interval, 95%",
        "multi_label": True,
        "decision": "a class is a label when its score ≥ the threshold; precision over (image, class) labels",
        "rows": n,
        "excluded": rows.excluded,
        "global": _threshold(scores.ravel(), rows.truth.ravel(), target, governed.ravel()),
    }
    missing = np.isinf(scores).sum(axis=0)
    if per_class:
        out["per_class"] = {}
        for j, c in enumerate(results.classes):
            support = int(rows.truth[:, j].sum())
            if support < min_class_rows:
                out["per_class"][c] = {"threshold": None, "rows": n, "positives": support,
                                       "reason": f"only {support} labelled images have it (need {min_class_rows}): "
                                                 "no threshold set"}
                continue
            out["per_class"][c] = _threshold(scores[:, j], rows.truth[:, j], target, governed[:, j])
            if missing[j]:
                out["per_class"][c]["rows_without_score"] = int(missing[j])  # run with a larger --top-k
    return out


def _sets(results: Results) -> list[frozenset[str]]:
    """Each row's label set: `labels` for a multi-label table, {label} for a single-label one."""
    frame = results.frame
    if results.multi_label:
        return [frozenset(v) for v in frame["labels"]]
    return [frozenset([v]) if isinstance(v, str) else frozenset() for v in frame["label"]]


def diff(old: Results, new: Results) -> dict[str, Any]:
    """Compare two runs row by row (matched on `path`) by label set; either may be single-label ({label})."""
    def table(results: Results) -> dict[str, tuple[frozenset[str], str]]:
        rows: dict[str, tuple[frozenset[str], str]] = {}
        for path, labels, status in zip(results.frame["path"], _sets(results), results.frame["status"], strict=True):
            rows.setdefault(str(path), (labels, str(status)))
        return rows

    a, b = table(old), table(new)
    matched = [p for p in a if p in b]
    machine = ("error", "reviewed")  # flips are the model's: rows a person labelled are reported apart
    compared = [p for p in matched if a[p][1] not in machine and b[p][1] not in machine]
    changed = [p for p in compared if a[p][0] != b[p][0]]
    classes = list(dict.fromkeys([*old.classes, *new.classes]))
    by_class = {c: {"added": 0, "removed": 0} for c in classes}
    for p in changed:
        for c in b[p][0] - a[p][0]:
            by_class.setdefault(c, {"added": 0, "removed": 0})["added"] += 1
        for c in a[p][0] - b[p][0]:
            by_class.setdefault(c, {"added": 0, "removed": 0})["removed"] += 1

    def members(rows: dict[str, tuple[frozenset[str], str]], c: str) -> int:
        return sum(c in labels for labels, status in rows.values() if status != "error")

    distribution = {c: {"old": members(a, c), "new": members(b, c)} for c in by_class}
    for counts in distribution.values():
        counts["change"] = counts["new"] - counts["old"]
    transitions: dict[str, int] = {}
    for p in matched:
        if a[p][1] != b[p][1]:
            key = f"{a[p][1]}->{b[p][1]}"
            transitions[key] = transitions.get(key, 0) + 1
    return {
        "multi_label": True,
        "matched": len(matched),
        "only_old": len(a) - len(matched),
        "only_new": len(b) - len(matched),
        "compared": len(compared),
        "flips": len(changed),
        "flip_rate": len(changed) / len(compared) if compared else 0.0,
        "flips_by_class": {c: {"total": v["added"] + v["removed"], **v} for c, v in by_class.items()
                           if v["added"] or v["removed"]},
        "distribution": distribution,
        "newly_errored": sum(a[p][1] != "error" and b[p][1] == "error" for p in matched),
        "recovered": sum(a[p][1] == "error" and b[p][1] != "error" for p in matched),
        "status_changes": dict(sorted(transitions.items())),
        "reviewed": {"old": sum(a[p][1] == "reviewed" for p in matched),
                     "new": sum(b[p][1] == "reviewed" for p in matched),
                     "overruled": sum(b[p][1] == "reviewed" and a[p][1] != "error" and a[p][0] != b[p][0]
                                      for p in matched)},
    }
