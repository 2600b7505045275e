"""The multi-label task: a set of names per image; label-set metrics (scikit-learn's multilabel definitions),
per-class calibration and set diffs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from autolabel.core.errors import SourceError, UsageError
from autolabel.task import metrics
from autolabel.task.cells import label_list
from autolabel.task.metrics import Record, Table, Threshold, Truth, percent

LABELS = pa.field("labels", pa.list_(pa.string()))  # every class over its threshold, best first


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


def score_matrix(results: Table, rows: Sequence[int]) -> np.ndarray:
    """Every class's score per row from top_labels/top_scores; -inf where --top-k left a class out."""
    index = {c: i for i, c in enumerate(results.classes)}
    out = np.full((len(rows), len(index)), -np.inf)
    frame = results.frame
    for r, i in enumerate(rows):
        for name, score in zip(frame["top_labels"].iat[i], frame["top_scores"].iat[i], strict=True):
            if name in index:
                out[r, index[name]] = float(score)
    return out


@dataclass(frozen=True)
class UsableSets:
    """The usable rows of a multi-label table against its truth, as indicator matrices."""

    index: list[int]  # positions of the usable rows in the table
    truth: np.ndarray  # (rows, classes) bool
    predicted: np.ndarray  # (rows, classes) bool, from the `labels` column
    status: list[str]
    excluded: metrics.Excluded


def usable_sets(results: Table, truth: Truth) -> UsableSets:
    """Rows with a prediction and a truth list within the spec; the others are counted in `excluded`.

    `reviewed` rows (the label is a person's, issue 10) are no machine prediction: excluded and counted.
    """
    known = set(results.classes)
    frame = results.frame
    index, truths, status = [], [], []
    excluded = metrics.Exclusions()
    for i, (stat, names) in enumerate(zip(frame["status"], truth.labels, strict=True)):
        names = label_list(names) if not isinstance(names, list) else names
        if stat == "error":
            excluded.add("error")
        elif stat == "reviewed":
            excluded.add("reviewed")
        elif names is None:
            excluded.add("no_truth")
        elif unknown := [n for n in names if n not in known]:
            excluded.add("unknown_truth", unknown)
        else:
            index.append(i)
            truths.append(names)
            status.append(str(stat))
    predicted = indicator((frame["labels"].iat[i] for i in index), results.classes)
    return UsableSets(index, indicator(truths, results.classes), predicted, status, excluded.done())


@dataclass(frozen=True)
class Averages:
    """Micro, macro, weighted and samples precision/recall/F1, and the per-class arrays they come from."""

    values: dict[str, float]  # {micro,macro,weighted,samples}_{precision,recall,f1}
    per_class: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # precision, recall, f1, support


def averages(y: np.ndarray, p: np.ndarray) -> Averages:
    """Per-class, micro, macro, weighted and samples precision/recall/F1 (scikit-learn, zero_division=0)."""
    tp, predicted, support = (y & p).sum(0).astype(float), p.sum(0).astype(float), y.sum(0).astype(float)
    precision, recall, f1 = metrics.prf(tp, predicted, support)
    micro = [float(v[0]) for v in metrics.prf(tp.sum(keepdims=True), predicted.sum(keepdims=True),
                                      support.sum(keepdims=True))]
    weights = support / support.sum() if support.sum() else np.zeros_like(support)
    per_row = metrics.prf((y & p).sum(1).astype(float), p.sum(1).astype(float), y.sum(1).astype(float))
    out: dict[str, float] = {}
    for name, values in (("micro", micro), ("macro", [float(v.mean()) if len(v) else 0.0 for v in
                                                      (precision, recall, f1)]),
                         ("weighted", [float((v * weights).sum()) for v in (precision, recall, f1)]),
                         ("samples", [float(v.mean()) if len(v) else 0.0 for v in per_row])):
        out.update({f"{name}_precision": values[0], f"{name}_recall": values[1], f"{name}_f1": values[2]})
    return Averages(out, (precision, recall, f1, support))


@dataclass(frozen=True)
class Cardinality(Record):
    """Labels per image on average, in the truth and predicted."""

    truth: float
    predicted: float


@dataclass(frozen=True)
class AcceptedSets(metrics.Accepted):
    """metrics.Accepted rows of a multi-label table; `precision` is over their labels, and how many sets are exact."""

    subset_accuracy: float | None = None


@dataclass(frozen=True)
class SetEvaluation(Record):
    """`autolabel eval` of a multi-label table (its `--json` keys are the field names)."""

    n: int
    truth: str
    multi_label: bool
    subset_accuracy: float
    hamming_loss: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    samples_precision: float
    samples_recall: float
    samples_f1: float
    label_cardinality: Cardinality
    per_class: dict[str, metrics.ClassMetrics]
    accepted: AcceptedSets
    review_share: float
    excluded: metrics.Excluded

    confusion: ClassVar[None] = None  # label sets have no confusion matrix: the report shows per-class metrics

    def summary(self) -> tuple[str, ...]:
        """The headline numbers under the per-class table."""
        acc, ex = self.accepted, self.excluded
        return (f"n {self.n}  subset accuracy {percent(self.subset_accuracy)}  "
                f"micro F1 {percent(self.micro_f1)} (P {percent(self.micro_precision)}, "
                f"R {percent(self.micro_recall)})  macro F1 {percent(self.macro_f1)}  "
                f"Hamming loss {self.hamming_loss:.4f}\n"
                f"accepted {acc.n} (coverage {percent(acc.coverage)}, label precision {percent(acc.precision)}, "
                f"complete and exact label sets {percent(acc.subset_accuracy)}), "
                f"review share {percent(self.review_share)}\n"
                f"excluded {ex.total}: {ex.error} error rows, {ex.reviewed} reviewed, {ex.no_truth} without "
                f"truth, {ex.unknown_truth} with a truth outside the spec",)

    def headline(self) -> str:
        """The report's one sentence of numbers."""
        return (f"micro F1 {self.micro_f1:.3f} (precision {self.micro_precision:.3f}, recall "
                f"{self.micro_recall:.3f}), subset accuracy {self.subset_accuracy:.3f} on {self.n} rows, coverage "
                f"{self.accepted.coverage:.3f}, accepted label precision {(self.accepted.precision or 0):.3f}")


def evaluate(results: Table, truth: Truth) -> SetEvaluation:
    """Multi-label metrics: subset accuracy, Hamming loss, micro/macro/weighted/samples P/R/F1, per class, and
    the same on accepted rows; equal to scikit-learn's multilabel metrics."""
    rows = usable_sets(results, truth)
    y, p, n = rows.truth, rows.predicted, len(rows.index)
    found = averages(y, p)
    accepted = np.asarray([s == "accepted" for s in rows.status], dtype=bool)
    ya, pa_ = y[accepted], p[accepted]
    return SetEvaluation(
        n=n, truth=truth.source, multi_label=True,
        subset_accuracy=float((y == p).all(axis=1).mean()) if n else 0.0,
        hamming_loss=float((y != p).mean()) if y.size else 0.0,
        **found.values,
        label_cardinality=Cardinality(float(y.sum(1).mean()) if n else 0.0, float(p.sum(1).mean()) if n else 0.0),
        per_class=metrics.class_metrics(results.classes, *found.per_class),
        accepted=AcceptedSets(int(accepted.sum()), float(accepted.mean()) if n else 0.0,
                              float((ya & pa_).sum() / pa_.sum()) if pa_.sum() else None,
                              float((ya == pa_).all(axis=1).mean()) if len(ya) else None),
        review_share=float(1 - accepted.mean()) if n else 0.0, excluded=rows.excluded,
    )


def _threshold(scores: np.ndarray, positive: np.ndarray, target: float, governed: np.ndarray) -> Threshold:
    """metrics.best_threshold over (image, class) decisions, plus recall; a score is a label when ≥ t.

    `governed`: the scores the threshold decides on the whole table (labelled or not), see metrics.best_threshold.
    """
    found = metrics.best_threshold(scores, np.ones(len(scores), dtype=bool), positive, target,
                           governed[np.isfinite(governed)])
    if found.threshold is None:
        return replace(found, positives=int(positive.sum()))
    threshold = max(0.0, found.threshold)  # -inf: a class --top-k left out of every row
    recall = float((positive & (scores >= threshold)).sum() / positive.sum()) if positive.sum() else 0.0
    return replace(found, threshold=threshold, recall=recall, positives=int(positive.sum()))


@dataclass(frozen=True)
class SetCalibration(Record):
    """`autolabel calibrate` of a multi-label table: thresholds on (image, class) decisions."""

    target_precision: float
    interval_method: str
    multi_label: bool
    decision: str
    rows: int
    excluded: metrics.Excluded
    overall: Threshold
    per_class: dict[str, Threshold] | None = None  # None: not asked for (--per-class)

    scope: ClassVar[str] = "labels"  # what the precision is over
    share_name: ClassVar[str] = "recall"  # the share of true labels a threshold keeps

    def share(self, found: Threshold) -> float | None:
        """What a threshold keeps: the share of true labels."""
        return found.recall

    def as_json(self) -> dict[str, Any]:
        """`global` for `overall`; `per_class` only when asked for."""
        return metrics.calibration_json(self)


def calibrate(results: Table, truth: Truth, target: float, per_class: bool = False,
              min_class_rows: int = 20) -> SetCalibration:
    """Thresholds whose labels reach `target` precision: one over every (image, class) decision, and with
    `per_class` one per class (a class needs `min_class_rows` labelled images that have it)."""
    if not 0.0 < target <= 1.0:
        raise UsageError(f"--target-precision must be in (0, 1], got {target}")
    rows = usable_sets(results, truth)
    n = len(rows.index)
    if n < metrics.MIN_CALIBRATION_ROWS:
        ex = rows.excluded
        raise UsageError(
            f"only {n} labelled rows usable for calibration (need at least {metrics.MIN_CALIBRATION_ROWS}); excluded: "
            f"{ex.error} error, {ex.reviewed} reviewed, {ex.no_truth} without truth, "
            f"{ex.unknown_truth} with a truth outside the spec"
        )
    scores = score_matrix(results, rows.index)
    governed = score_matrix(results, np.flatnonzero((results.frame["status"] != "error").to_numpy()))
    missing = np.isinf(scores).sum(axis=0)
    by_class = None
    if per_class:
        by_class = {}
        for j, c in enumerate(results.classes):
            support = int(rows.truth[:, j].sum())
            if support < min_class_rows:
                by_class[c] = Threshold(None, n, positives=support, reason=f"only {support} labelled images have "
                                                                          f"it (need {min_class_rows}): no "
                                                                          "threshold set")
                continue
            found = _threshold(scores[:, j], rows.truth[:, j], target, governed[:, j])
            # a class --top-k dropped from some rows: run with a larger --top-k
            by_class[c] = replace(found, rows_without_score=int(missing[j]) or None)
    return SetCalibration(
        target, "Wilson score interval, 95%", True,
        "a class is a label when its score ≥ the threshold; precision over (image, class) labels", n, rows.excluded,
        _threshold(scores.ravel(), rows.truth.ravel(), target, governed.ravel()), by_class)


@dataclass(frozen=True)
class SetFlips(Record):
    """Rows whose label set gained or lost a class."""

    total: int
    added: int
    removed: int


@dataclass(frozen=True)
class SetDiff(metrics.Diff):
    """`autolabel diff` by label set (either table may be single-label: its set is {label})."""

    flips_column: ClassVar[str] = "rows changed"  # the distribution table's last column

    def as_json(self) -> dict[str, Any]:
        """The diff's JSON object, marked as a comparison by label set."""
        return {"multi_label": True, **super().as_json()}


def _by_path(results: Table) -> dict[str, tuple[frozenset[str], str]]:
    """Each path's label set (by the table's own task) and status; a path listed twice keeps its first row."""
    rows: dict[str, tuple[frozenset[str], str]] = {}
    sets = results.task.label_sets(results.frame)
    for path, labels, status in zip(results.frame["path"], sets, results.frame["status"], strict=True):
        rows.setdefault(str(path), (labels, str(status)))
    return rows


def diff(old: Table, new: Table) -> SetDiff:
    """Compare two runs row by row (matched on `path`) by label set; either may be single-label ({label})."""
    a, b = _by_path(old), _by_path(new)
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

    transitions: dict[str, int] = {}
    for p in matched:
        if a[p][1] != b[p][1]:
            key = f"{a[p][1]}->{b[p][1]}"
            transitions[key] = transitions.get(key, 0) + 1
    return SetDiff(
        matched=len(matched), only_old=len(a) - len(matched), only_new=len(b) - len(matched),
        compared=len(compared), flips=len(changed), flip_rate=len(changed) / len(compared) if compared else 0.0,
        flips_by_class={c: SetFlips(v["added"] + v["removed"], v["added"], v["removed"])
                        for c, v in by_class.items() if v["added"] or v["removed"]},
        distribution={c: metrics.Shift(members(a, c), members(b, c), members(b, c) - members(a, c)) for c in by_class},
        newly_errored=sum(a[p][1] != "error" and b[p][1] == "error" for p in matched),
        recovered=sum(a[p][1] == "error" and b[p][1] != "error" for p in matched),
        status_changes=dict(sorted(transitions.items())),
        reviewed=metrics.ReviewedRows(sum(a[p][1] == "reviewed" for p in matched),
                              sum(b[p][1] == "reviewed" for p in matched),
                              sum(b[p][1] == "reviewed" and a[p][1] != "error" and a[p][0] != b[p][0]
                                  for p in matched)),
    )


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def _cuts(scores: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """The per-class thresholds for a (rows, classes) score matrix (0.5 when unknown)."""
    k = scores.shape[1]
    return np.full(k, 0.5) if thresholds is None else np.asarray(thresholds, np.float64)[:k]


class MultiLabels(metrics.Measures):
    """A set of names per image (`multi_label: true`): a `labels` list cell, every class decided on its own,
    label-set metrics."""

    name = "multi-label"
    multiple = True
    fields: tuple[pa.Field, ...] = (LABELS,)
    label_type = pa.list_(pa.string())
    score_caption = "score histogram (every image)"

    def default_top_k(self, classes: int) -> int:
        """--top-k when not given: every class (calibration needs each score)."""
        return classes

    def settings(self, spec: Any) -> dict[str, Any]:
        """What this task adds to the settings that decide a row's content."""
        return {"multi_label": True, "review_band": spec.review_band}

    def extra(self, cells: dict[str, Any]) -> dict[str, Any]:
        """Cells only label-set tables carry (the `labels` column, its scores): all of them."""
        return dict(cells)

    def parse(self, value: Any) -> list[str] | None:
        """A truth or reviewed cell: a list (Parquet), a JSON array (CSV) or one name; None when empty."""
        return label_list(value)

    def label(self, value: Any) -> tuple[str, ...] | None:
        """A reviewed or example cell as a label: a tuple of names (empty: none of the classes), or None."""
        names = label_list(value)
        return None if names is None else tuple(names)

    def names(self, label: Any) -> tuple[str, ...] | None:
        """The names a label holds (None: no label)."""
        return None if label is None else tuple(label)

    def has_review(self, value: Any) -> bool:
        """Whether a `reviewed_label` cell holds a person's labels (`[]` in CSV: none of the classes)."""
        if isinstance(value, list | np.ndarray):
            return len(value) > 0
        return label_list(value) is not None

    def row_label(self, frame: pd.DataFrame, i: int) -> tuple[str, ...]:
        """The labels a row carries."""
        return tuple(frame["labels"].iloc[i])

    def cell(self, values: Sequence[Any]) -> list[Any]:
        """One cell from what a person chose: every choice."""
        return list(values)

    def tagged(self, every: list[str], last: str | None) -> list[str]:
        """A review from a tool that shows the model's tags beside a person's (CVAT): every tag the image kept."""
        return list(dict.fromkeys(every))

    def combine(self, before: Any, label: Any) -> tuple[Any, bool]:
        """Two labels given for one image: a spec's per-class examples (one name each) add up; else the last wins
        (True when it differs)."""
        if isinstance(label, str):
            kept = () if before is None else (before,) if isinstance(before, str) else tuple(before)
            return tuple(dict.fromkeys([*kept, label])), False
        return label, before is not None and before != label

    def targets(self, labels: Sequence[Any], columns: Sequence[str]) -> np.ndarray:
        """Reviewed labels as the planner takes them: (rows, columns) bool (no row set: not reviewed)."""
        out = np.zeros((len(labels), len(columns)), bool)
        index = {c: j for j, c in enumerate(columns)}
        for i, names in enumerate(labels):
            for name in names or ():
                out[i, index[name]] = True
        return out

    def text_cell(self, value: Any) -> Any:
        """A `reviewed_label` cell as a CSV writes it: a JSON array, empty when not reviewed."""
        return None if value is None else json.dumps(list(value), ensure_ascii=False)

    def read_columns(self, frame: pd.DataFrame, path: Path) -> None:
        """The `labels` column of a table read back, as lists."""
        if "labels" not in frame.columns:
            raise SourceError(f"{path}: the spec is multi-label but the table has no 'labels' column; pass the "
                              "label spec it was labelled with (--labels)")
        frame["labels"] = [label_list(v) or [] for v in frame["labels"]]

    def export_cells(self, ok: pd.DataFrame, i: int, thresholds: dict[str, float]) -> dict[str, tuple]:
        """What an export writes of row `i` of `ok`: its labels with their scores (None where --top-k left one
        out), and the model's own labels (every class whose score reaches its threshold: a reviewed row's
        `labels` are the person's)."""
        scores = dict(zip(ok["top_labels"].iat[i], ok["top_scores"].iat[i], strict=True))
        return {"labels": tuple((str(c), float(scores[c]) if c in scores else None) for c in ok["labels"].iat[i]),
                "model_labels": tuple(str(c) for c, s in scores.items() if s >= thresholds.get(c, 0.5))}

    def shown(self, frame: pd.DataFrame) -> pd.Series:
        """The label cell the report's editor shows and reads back: the list as a JSON array."""
        return frame["labels"].map(lambda v: json.dumps(list(v), ensure_ascii=False))

    def label_sets(self, frame: pd.DataFrame) -> list[frozenset[str]]:
        """Each row's labels as a set."""
        return [frozenset(v) for v in frame["labels"]]

    def decided(self, scores: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
        """(rows, classes) bool: every class whose score reaches its threshold."""
        return scores >= _cuts(scores, thresholds)[None, :]

    def sureness(self, scores: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
        """How sure each row is: the smallest distance of a class's log-odds to its threshold's."""
        p = np.asarray(scores, np.float64)
        return np.abs(_log_odds(p) - _log_odds(_cuts(p, thresholds))[None, :]).min(axis=1)

    def agrees(self, scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None) -> bool:
        """Whether the decisions from `scores` match the reviewed labels on at least half of the (row, class)
        pairs."""
        return float(np.mean((scores >= _cuts(scores, thresholds)) == labels.astype(bool))) >= 0.5

    def knows(self, loo_zero_shot: float, columns: int, uninformed: float) -> bool:
        """Whether zero-shot knows the classes: a leave-one-out micro-F1 of one half."""
        return loo_zero_shot >= 0.5


    def joined(self, other: Any) -> MultiLabels:
        """The task two tables are compared under: by label set when either is multi-label."""
        return self

    def class_rows(self, table: Table, ok: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
        """Per class, the rows whose `labels` hold it (its own score as `score`, best first), and its score on
        every row (where its threshold cuts is visible)."""
        scores = score_matrix(table, list(ok.index))  # ok keeps the positions of the full table
        rows = {}
        for j, c in enumerate(table.classes):
            mask = np.asarray([c in labels for labels in ok["labels"]], dtype=bool)
            rows[c] = ok[mask].assign(score=scores[mask, j]).sort_values("score", ascending=False)
        return rows, {c: scores[:, j] for j, c in enumerate(table.classes)}

    def mismatches(self, frame: pd.DataFrame, truth: Truth, classes: Sequence[str]) -> list[tuple[str, str]]:
        """Rows whose label set differs from the truth, most confident first: (path, caption)."""
        wrong = []
        for i, (path, labels, status, conf) in enumerate(frame[["path", "labels", "status", "confidence"]]
                                                         .itertuples(index=False)):
            given = label_list(truth.labels[i]) if not isinstance(truth.labels[i], list) else truth.labels[i]
            if status not in ("error", "reviewed") and given is not None and set(given) != set(labels):
                wrong.append((-float(conf), str(path), f"{path} · truth [{', '.join(given)}] → [{', '.join(labels)}]"))
        return [(p, caption) for _, p, caption in sorted(wrong)]

    def label_counts(self, ok: pd.DataFrame) -> pd.Series | None:
        """How many images got 0, 1, 2, … labels."""
        return pd.Series([len(v) for v in ok["labels"]], dtype=int).value_counts().sort_index()

    def merge_reviews(self, frame: pd.DataFrame, keys: list[str], reviewed: dict[str, Any]) -> tuple[int, int]:
        """Put a tool's reviews into `reviewed_label` (lists) / `reviewed_by_human` (earlier reviews of rows it does
        not mention kept); returns (rows whose set differs from `labels`, earlier reviews replaced)."""
        previous = frame["reviewed_label"] if "reviewed_label" in frame else [None] * len(frame)
        replaced = sum(k in reviewed and label_list(prev) is not None and set(label_list(prev)) != set(reviewed[k])
                       for k, prev in zip(keys, previous, strict=True))
        frame["reviewed_label"] = pd.Series([list(reviewed[k]) if k in reviewed else label_list(prev)
                                             for k, prev in zip(keys, previous, strict=True)],
                                            index=frame.index, dtype=object)
        frame["reviewed_by_human"] = [v is not None for v in frame["reviewed_label"]]
        changed = sum(v is not None and set(v) != set(labels) for v, labels in zip(frame["reviewed_label"],
                                                                                   frame["labels"], strict=True))
        return changed, replaced


MULTI = MultiLabels()
