"""Metrics against ground truth, threshold calibration with confidence intervals, and run-to-run diffs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autolabel.core.errors import SourceError, TooManyErrors, UsageError
from autolabel.core.fileio import InputError
from autolabel.table.results import Results
from autolabel.task.cells import label_list

MIN_CALIBRATION_ROWS = 30


@dataclass
class Truth:
    """Ground truth aligned to a labels table: `labels` (str or None per row) and where it came from.

    For a multi-label table each row's truth is a list of names (results.label_list), or None.
    """

    labels: list[Any]
    source: str


def resolve_truth(results: Results, spec: str) -> Truth:
    """`--truth`: a column of the table, a CSV/Parquet file mapping path → label, or `folder`."""
    frame = results.frame
    clean = label_list if results.multi_label else _clean  # multi-label: lists, JSON arrays or one name
    if spec == "folder":
        parents = [p.replace("\\", "/").rsplit("/", 2)[-2] if "/" in p else None for p in frame["path"]]
        return Truth([clean(p) for p in parents], "parent folder names")
    if spec in frame.columns and spec not in ("path", "label"):
        return Truth([clean(v) for v in frame[spec]], f"column '{spec}'")
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".parquet") and path.exists():
        table = _read_truth(path)
        label_col = next((c for c in ("label", "truth", "reviewed_label", "labels") if c in table.columns), None)
        if "path" not in table.columns or label_col is None:
            raise SourceError(f"{path}: a truth file needs a 'path' column and a 'label' (or 'truth') column")
        mapping = {str(p): clean(v) for p, v in zip(table["path"], table[label_col], strict=True)}
        return Truth([mapping.get(str(p)) for p in frame["path"]], f"{path} ('{label_col}')")
    columns = ", ".join(c for c in frame.columns if c not in ("path",))
    raise UsageError(
        f"--truth {spec}: not a column of {results.path} ({columns}), not an existing .csv/.parquet file, "
        "and not 'folder'"
    )


def _read_truth(path: Path) -> pd.DataFrame:
    """A truth file (regular files only: a FIFO or device is refused, never waited on)."""
    from autolabel.table.files import read_file

    try:
        return read_file(path, all_text=True).frame  # every CSV cell as written: a class may be named "NA"
    except InputError as exc:
        raise SourceError(f"--truth {path}: cannot read it ({exc.strerror})") from None
    except Exception as exc:  # pandas and pyarrow raise many types for files that are not tables
        raise SourceError(f"--truth {path}: not a readable table ({' '.join(str(exc).split())[:200]})") from None


def _clean(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _prf(tp: np.ndarray, pred: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 per class; 0 where undefined (scikit-learn's zero_division=0)."""
    precision = np.divide(tp, pred, out=np.zeros_like(tp, dtype=float), where=pred > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp, dtype=float), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp, dtype=float), where=denom > 0)
    return precision, recall, f1


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Evaluation:
    """The usable rows and the reasons the others were excluded."""

    index: list[int]  # positions of the usable rows in the table
    y_true: list[str]
    y_pred: list[str]
    top: list[list[str]]
    status: list[str]
    excluded: dict[str, Any]


def usable_rows(results: Results, truth: Truth) -> Evaluation:
    """Rows with a prediction and a truth among the spec's classes; every other row is counted in `excluded`."""
    known = set(results.classes)
    index, y_true, y_pred, top, status = [], [], [], [], []
    excluded: dict[str, Any] = {"error": 0, "reviewed": 0, "no_truth": 0, "unknown_truth": 0,
                                "unknown_truth_labels": {}}
    frame = results.frame
    columns = zip(frame["label"], frame["top_labels"], frame["status"], truth.labels, strict=True)
    for i, (label, tops, stat, truth_label) in enumerate(columns):
        if stat == "error" or _clean(label) is None:
            excluded["error"] += 1
        elif stat == "reviewed":  # a person's label, not the machine's: counted, never scored
            excluded["reviewed"] += 1
        elif truth_label is None:
            excluded["no_truth"] += 1
        elif truth_label not in known:
            excluded["unknown_truth"] += 1
            excluded["unknown_truth_labels"][truth_label] = excluded["unknown_truth_labels"].get(truth_label, 0) + 1
        else:
            index.append(i)
            y_true.append(truth_label)
            y_pred.append(str(label))
            top.append(list(tops))
            status.append(stat)
    excluded["total"] = excluded["error"] + excluded["reviewed"] + excluded["no_truth"] + excluded["unknown_truth"]
    return Evaluation(index, y_true, y_pred, top, status, excluded)


def evaluate(results: Results, truth: Truth) -> dict[str, Any]:
    """Accuracy, top-k, per-class and averaged P/R/F1, confusion matrix, accepted coverage and precision."""
    rows = usable_rows(results, truth)
    classes = results.classes
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    n = len(rows.y_true)
    confusion = np.zeros((k, k), dtype=int)
    for t, p in zip(rows.y_true, rows.y_pred, strict=True):
        confusion[index[t], index[p]] += 1
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    precision, recall, f1 = _prf(tp, predicted, support)
    weights = support / support.sum() if support.sum() else np.zeros(k)
    present = (support > 0) | (predicted > 0)
    accepted = [i for i, s in enumerate(rows.status) if s == "accepted"]
    accepted_correct = sum(rows.y_true[i] == rows.y_pred[i] for i in accepted)
    pairs = [(classes[i], classes[j], int(confusion[i, j])) for i in range(k) for j in range(k)
             if i != j and confusion[i, j] > 0]
    pairs.sort(key=lambda x: (-x[2], x[0], x[1]))
    top_k = max((len(t) for t in rows.top), default=0)
    return {
        "n": n,
        "truth": truth.source,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "top_k": top_k,
        # `top_labels` never lists the `other` label: a row labelled it counts by its label
        "top_k_accuracy": float(np.mean([t in tops or t == p for t, p, tops in zip(rows.y_true, rows.y_pred,
                                                                                   rows.top, strict=True)]))
        if n else 0.0,
        # Macro: over the classes the sample has (in truth or predicted), as scikit-learn averages by default;
        # a class absent from both would count as 0 and drag every small reviewed sample down.
        "macro_precision": _mean(precision[present]),
        "macro_recall": _mean(recall[present]),
        "macro_f1": _mean(f1[present]),
        "weighted_precision": float((precision * weights).sum()),
        "weighted_recall": float((recall * weights).sum()),
        "weighted_f1": float((f1 * weights).sum()),
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion": {"labels": classes, "matrix": confusion.tolist()},
        "most_confused": [{"truth": a, "predicted": b, "count": c} for a, b, c in pairs[:10]],
        "accepted": {
            "n": len(accepted),
            "coverage": len(accepted) / n if n else 0.0,
            "precision": accepted_correct / len(accepted) if accepted else None,
        },
        "review_share": (n - len(accepted)) / n if n else 0.0,
        "excluded": rows.excluded,
    }


def shortest_between(low: float, high: float) -> float:
    """The number with the fewest decimals in (low, high]: a threshold that reads well and, with `low` the next
    confidence below `high`, accepts exactly the rows `high` would."""
    exact = Decimal(repr(high))
    for digits in range(18):
        candidate = float(exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_FLOOR))
        if low < candidate <= high:
            return candidate
    return high


def _best_threshold(conf: np.ndarray, margin_ok: np.ndarray, correct: np.ndarray, target: float,
                    governed: np.ndarray) -> dict[str, Any]:
    """Lowest threshold whose accepted rows (confidence ≥ t and margin rule) reach `target` precision.

    `governed` are the confidences of every row of the table the threshold decides (labelled or not): the
    threshold reported is the shortest decimal between the cut and the next confidence below it, so a run
    with it accepts exactly the rows promised here.
    """
    order = np.argsort(-conf, kind="stable")
    conf, margin_ok, correct = conf[order], margin_ok[order], correct[order]
    accepted = np.cumsum(margin_ok)
    right = np.cumsum(correct & margin_ok)
    # Only the last row of a run of equal confidences is a valid cut: everything ≥ t is accepted together.
    last = np.r_[conf[1:] != conf[:-1], True] & (accepted > 0)
    prec = np.divide(right, accepted, out=np.zeros(len(conf)), where=accepted > 0)
    ok = np.flatnonzero(last & (prec >= target))
    n = len(conf)
    if not len(ok):
        best = int(np.argmax(np.where(last, prec, -1))) if n else 0
        return {"threshold": None, "reachable": False, "best_precision": float(prec[best]) if n else None,
                "rows": n}
    i = ok[-1]  # the lowest qualifying threshold accepts the most rows
    cut = float(conf[i])
    below = governed[governed < cut]
    lo, hi = wilson_interval(int(right[i]), int(accepted[i]))
    return {
        "threshold": shortest_between(float(below.max()) if below.size else 0.0, cut),
        "reachable": True,
        "precision": float(prec[i]),
        "precision_ci95": [lo, hi],
        "accepted": int(accepted[i]),
        "coverage": float(accepted[i] / n),
        "rows": n,
    }


def calibrate(results: Results, truth: Truth, target: float, per_class: bool = False,
              min_class_rows: int = 20) -> dict[str, Any]:
    """Thresholds reaching `target` precision on accepted rows, with coverage and Wilson 95% intervals."""
    if not 0.0 < target <= 1.0:
        raise UsageError(f"--target-precision must be in (0, 1], got {target}")
    if min_class_rows < 0:
        raise UsageError(f"--min-class-rows must be 0 or more, got {min_class_rows}")
    rows = usable_rows(results, truth)
    n = len(rows.y_true)
    if n < MIN_CALIBRATION_ROWS:
        raise UsageError(
            f"only {n} labelled rows usable for calibration (need at least {MIN_CALIBRATION_ROWS}); "
            f"excluded: {rows.excluded['error']} error, {rows.excluded['no_truth']} without truth, "
            f"{rows.excluded['unknown_truth']} with a truth outside the spec"
        )
    conf = results.frame["confidence"].to_numpy(dtype=float)[rows.index]
    margin_ok = results.frame["margin"].to_numpy(dtype=float)[rows.index] >= results.min_margin
    pred = np.asarray(rows.y_pred)
    correct = pred == np.asarray(rows.y_true)
    decided = results.frame[(results.frame["status"] != "error") & results.frame["confidence"].notna()]
    governed_conf = decided["confidence"].to_numpy(dtype=float)
    governed_label = decided["label"].astype(str).to_numpy()
    out: dict[str, Any] = {
        "target_precision": target,
        "interval_method": "Wilson score interval, 95%",
        "min_margin": results.min_margin,
        "rows": n,
        "excluded": rows.excluded,
        "global": _best_threshold(conf, margin_ok, correct, target, governed_conf),
    }
    if per_class:
        out["per_class"] = {}
        for c in results.classes:
            mask = pred == c
            if mask.sum() < min_class_rows:
                out["per_class"][c] = {"threshold": None, "rows": int(mask.sum()),
                                       "reason": f"only {int(mask.sum())} labelled rows (need {min_class_rows}): "
                                                 "no threshold set"}
            else:
                out["per_class"][c] = _best_threshold(conf[mask], margin_ok[mask], correct[mask], target,
                                                      governed_conf[governed_label == c])
    return out


def spec_with_thresholds(raw: dict[str, Any], calibration: dict[str, Any]) -> dict[str, Any]:
    """The label spec as given, with the calibrated global and per-class thresholds filled in exactly."""
    spec = dict(raw)
    if calibration["global"].get("threshold") is not None:
        spec["threshold"] = float(calibration["global"]["threshold"])
    per_class = calibration.get("per_class") or {}
    classes = []
    for item in spec.get("classes", []):
        entry = dict(item) if isinstance(item, dict) else {"name": item}
        found = per_class.get(str(entry["name"]), {})
        if found.get("threshold") is not None:
            entry["threshold"] = float(found["threshold"])
        classes.append(entry if len(entry) > 1 else entry["name"])
    spec["classes"] = classes
    other = spec.get("other")
    if other is not None:  # the open-set label is calibrated like a class; its threshold lives under `other:`
        entry = dict(other) if isinstance(other, dict) else {"name": other}
        found = per_class.get(str(entry["name"]), {})
        if found.get("threshold") is not None:
            entry["threshold"] = float(found["threshold"])
        spec["other"] = entry if len(entry) > 1 else entry["name"]
    return spec


def diff(old: Results, new: Results) -> dict[str, Any]:
    """Compare two runs row by row (matched on `path`)."""
    a = old.frame[["path", "label", "status"]].drop_duplicates("path")
    b = new.frame[["path", "label", "status"]].drop_duplicates("path")
    merged = a.merge(b, on="path", how="inner", suffixes=("_old", "_new"))
    machine = ("error", "reviewed")  # flips are the model's: rows a person labelled are reported apart
    both_ok = ~merged["status_old"].isin(machine) & ~merged["status_new"].isin(machine)
    reviewed_new = merged["status_new"] == "reviewed"
    flipped = both_ok & (merged["label_old"] != merged["label_new"])
    compared = int(both_ok.sum())
    flips_by_class: dict[str, dict[str, int]] = {}
    for old_label, new_label in zip(merged.loc[flipped, "label_old"], merged.loc[flipped, "label_new"], strict=True):
        flips_by_class.setdefault(str(old_label), {}).setdefault(str(new_label), 0)
        flips_by_class[str(old_label)][str(new_label)] += 1
    classes = list(dict.fromkeys([*old.classes, *new.classes]))
    count_old = a.loc[a.status != "error", "label"].value_counts()
    count_new = b.loc[b.status != "error", "label"].value_counts()
    distribution = {c: {"old": int(count_old.get(c, 0)), "new": int(count_new.get(c, 0)),
                        "change": int(count_new.get(c, 0) - count_old.get(c, 0))} for c in classes}
    transitions = merged.groupby(["status_old", "status_new"]).size()
    return {
        "matched": len(merged),
        "only_old": int(len(a) - len(merged)),
        "only_new": int(len(b) - len(merged)),
        "compared": compared,
        "flips": int(flipped.sum()),
        "flip_rate": float(flipped.sum() / compared) if compared else 0.0,
        "flips_by_class": {c: {"total": sum(v.values()), "to": v} for c, v in sorted(flips_by_class.items())},
        "distribution": distribution,
        "newly_errored": int(((merged.status_old != "error") & (merged.status_new == "error")).sum()),
        "recovered": int(((merged.status_old == "error") & (merged.status_new != "error")).sum()),
        "status_changes": {f"{o}->{n}": int(v) for (o, n), v in transitions.items() if o != n},
        "reviewed": {"old": int((merged["status_old"] == "reviewed").sum()), "new": int(reviewed_new.sum()),
                     "overruled": int((reviewed_new & (merged["status_old"] != "error")
                                       & (merged["label_old"] != merged["label_new"])).sum())},
    }


def flip_gate(result: dict[str, Any], max_flip_rate: float) -> None:
    """`diff --max-flip-rate`: TooManyErrors (exit 1) when more labels flipped, or when no row could be compared."""
    if result["compared"] == 0:
        raise TooManyErrors(f"no rows to compare ({result['matched']} paths in both tables, none labelled in both): "
                            "--max-flip-rate cannot pass; check that OLD and NEW label the same images")
    if result["flip_rate"] > max_flip_rate:
        raise TooManyErrors(f"flip rate {result['flip_rate']:.4f} exceeds --max-flip-rate {max_flip_rate}")


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0
