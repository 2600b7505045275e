"""The single-label task: one name per image; accuracy, confusion and calibration metrics, run-to-run diffs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from autolabel.core.errors import UsageError
from autolabel.task.cells import clean
from autolabel.task.metrics import (
    MIN_CALIBRATION_ROWS,
    Accepted,
    ClassMetrics,
    Diff,
    Excluded,
    Exclusions,
    Measures,
    Record,
    ReviewedRows,
    Shift,
    Table,
    Threshold,
    Truth,
    best_threshold,
    calibration_json,
    class_metrics,
    mean,
    percent,
    prf,
)


@dataclass(frozen=True)
class Usable:
    """The rows a metric can score and the reasons the others were excluded."""

    index: list[int]  # positions of the usable rows in the table
    y_true: list[str]
    y_pred: list[str]
    top: list[list[str]]
    status: list[str]
    excluded: Excluded


def usable_rows(results: Table, truth: Truth) -> Usable:
    """Rows with a prediction and a truth among the spec's classes; every other row is counted in `excluded`."""
    known = set(results.classes)
    index, y_true, y_pred, top, status = [], [], [], [], []
    excluded = Exclusions()
    frame = results.frame
    columns = zip(frame["label"], frame["top_labels"], frame["status"], truth.labels, strict=True)
    for i, (label, tops, stat, truth_label) in enumerate(columns):
        if stat == "error" or clean(label) is None:
            excluded.add("error")
        elif stat == "reviewed":  # a person's label, not the machine's: counted, never scored
            excluded.add("reviewed")
        elif truth_label is None:
            excluded.add("no_truth")
        elif truth_label not in known:
            excluded.add("unknown_truth", [truth_label])
        else:
            index.append(i)
            y_true.append(truth_label)
            y_pred.append(str(label))
            top.append(list(tops))
            status.append(stat)
    return Usable(index, y_true, y_pred, top, status, excluded.done())


@dataclass(frozen=True)
class Confusion(Record):
    """Rows: truth; columns: predicted; both in class order."""

    labels: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Confused(Record):
    """One off-diagonal cell of the confusion matrix."""

    truth: str
    predicted: str
    count: int


@dataclass(frozen=True)
class Evaluation(Record):
    """`autolabel eval` of a single-label table (its `--json` keys are the field names)."""

    n: int
    truth: str
    accuracy: float
    top_k: int
    top_k_accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    per_class: dict[str, ClassMetrics]
    confusion: Confusion
    most_confused: tuple[Confused, ...]
    accepted: Accepted
    review_share: float
    excluded: Excluded

    def summary(self) -> tuple[str, ...]:
        """The headline numbers under the per-class table, one paragraph each."""
        acc, ex = self.accepted, self.excluded
        lines = (f"n {self.n}  accuracy {percent(self.accuracy)}  top-{self.top_k} {percent(self.top_k_accuracy)}"
                 f"  macro F1 {percent(self.macro_f1)}  weighted F1 {percent(self.weighted_f1)}\n"
                 f"accepted {acc.n} (coverage {percent(acc.coverage)}, precision {percent(acc.precision)}), "
                 f"review share {percent(self.review_share)}\n"
                 f"excluded {ex.total}: {ex.error} error rows, {ex.reviewed} reviewed by people, "
                 f"{ex.no_truth} without truth, {ex.unknown_truth} with a truth outside the spec")
        if not self.most_confused:
            return (lines,)
        pairs = ", ".join(f"{p.truth}→{p.predicted} ({p.count})" for p in self.most_confused[:5])
        return lines, f"most confused: {pairs}"

    def headline(self) -> str:
        """The report's one sentence of numbers."""
        return (f"accuracy {self.accuracy:.3f} on {self.n} rows, macro F1 {self.macro_f1:.3f}, coverage "
                f"{self.accepted.coverage:.3f}, accepted precision {(self.accepted.precision or 0):.3f}")


def evaluate(results: Table, truth: Truth) -> Evaluation:
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
    precision, recall, f1 = prf(tp, predicted, support)
    weights = support / support.sum() if support.sum() else np.zeros(k)
    # Macro: over the classes the sample has (in truth or predicted), as scikit-learn averages by default;
    # a class absent from both would count as 0 and drag every small reviewed sample down.
    present = (support > 0) | (predicted > 0)
    accepted = [i for i, s in enumerate(rows.status) if s == "accepted"]
    accepted_correct = sum(rows.y_true[i] == rows.y_pred[i] for i in accepted)
    pairs = [(classes[i], classes[j], int(confusion[i, j])) for i in range(k) for j in range(k)
             if i != j and confusion[i, j] > 0]
    pairs.sort(key=lambda x: (-x[2], x[0], x[1]))
    # `top_labels` never lists the `other` label: a row labelled it counts by its label
    in_top = [t in tops or t == p for t, p, tops in zip(rows.y_true, rows.y_pred, rows.top, strict=True)]
    return Evaluation(
        n=n, truth=truth.source, accuracy=float(tp.sum() / n) if n else 0.0,
        top_k=max((len(t) for t in rows.top), default=0), top_k_accuracy=float(np.mean(in_top)) if n else 0.0,
        macro_precision=mean(precision[present]), macro_recall=mean(recall[present]), macro_f1=mean(f1[present]),
        weighted_precision=float((precision * weights).sum()), weighted_recall=float((recall * weights).sum()),
        weighted_f1=float((f1 * weights).sum()), per_class=class_metrics(classes, precision, recall, f1, support),
        confusion=Confusion(tuple(classes), tuple(tuple(int(v) for v in row) for row in confusion)),
        most_confused=tuple(Confused(a, b, c) for a, b, c in pairs[:10]),
        accepted=Accepted(len(accepted), len(accepted) / n if n else 0.0,
                          accepted_correct / len(accepted) if accepted else None),
        review_share=(n - len(accepted)) / n if n else 0.0, excluded=rows.excluded,
    )


@dataclass(frozen=True)
class Calibration(Record):
    """`autolabel calibrate` of a single-label table: thresholds on accepted rows (`global`, and `per_class`)."""

    target_precision: float
    interval_method: str
    min_margin: float
    rows: int
    excluded: Excluded
    overall: Threshold
    per_class: dict[str, Threshold] | None = None  # None: not asked for (--per-class)

    scope: ClassVar[str] = "accepted rows"  # what the precision is over
    share_name: ClassVar[str] = "coverage"  # the share a threshold keeps

    def share(self, found: Threshold) -> float | None:
        """What a threshold keeps: the share of rows it accepts."""
        return found.coverage

    def as_json(self) -> dict[str, Any]:
        """`global` for `overall`; `per_class` only when asked for."""
        return calibration_json(self)


def calibrate(results: Table, truth: Truth, target: float, per_class: bool = False,
              min_class_rows: int = 20) -> Calibration:
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
            f"excluded: {rows.excluded.error} error, {rows.excluded.no_truth} without truth, "
            f"{rows.excluded.unknown_truth} with a truth outside the spec"
        )
    conf = results.frame["confidence"].to_numpy(dtype=float)[rows.index]
    margin_ok = results.frame["margin"].to_numpy(dtype=float)[rows.index] >= results.min_margin
    pred = np.asarray(rows.y_pred)
    correct = pred == np.asarray(rows.y_true)
    decided = results.frame[(results.frame["status"] != "error") & results.frame["confidence"].notna()]
    governed_conf = decided["confidence"].to_numpy(dtype=float)
    governed_label = decided["label"].astype(str).to_numpy()
    by_class = None
    if per_class:
        by_class = {}
        for c in results.classes:
            mask = pred == c
            if mask.sum() < min_class_rows:
                by_class[c] = Threshold(None, int(mask.sum()), reason=f"only {int(mask.sum())} labelled rows (need "
                                                                       f"{min_class_rows}): no threshold set")
            else:
                by_class[c] = best_threshold(conf[mask], margin_ok[mask], correct[mask], target,
                                             governed_conf[governed_label == c])
    return Calibration(target, "Wilson score interval, 95%", results.min_margin, n, rows.excluded,
                       best_threshold(conf, margin_ok, correct, target, governed_conf), by_class)


@dataclass(frozen=True)
class Flips(Record):
    """Rows whose label flipped away from a class, in all and to each new label."""

    total: int
    to: dict[str, int]


def diff(old: Table, new: Table) -> Diff:
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
    transitions = merged.groupby(["status_old", "status_new"]).size()
    return Diff(
        matched=len(merged), only_old=int(len(a) - len(merged)), only_new=int(len(b) - len(merged)),
        compared=compared, flips=int(flipped.sum()),
        flip_rate=float(flipped.sum() / compared) if compared else 0.0,
        flips_by_class={c: Flips(sum(v.values()), v) for c, v in sorted(flips_by_class.items())},
        distribution={c: Shift(int(count_old.get(c, 0)), int(count_new.get(c, 0)),
                               int(count_new.get(c, 0) - count_old.get(c, 0))) for c in classes},
        newly_errored=int(((merged.status_old != "error") & (merged.status_new == "error")).sum()),
        recovered=int(((merged.status_old == "error") & (merged.status_new != "error")).sum()),
        status_changes={f"{o}->{n}": int(v) for (o, n), v in transitions.items() if o != n},
        reviewed=ReviewedRows(int((merged["status_old"] == "reviewed").sum()), int(reviewed_new.sum()),
                              int((reviewed_new & (merged["status_old"] != "error")
                                   & (merged["label_old"] != merged["label_new"])).sum())),
    )


class SingleLabel(Measures):
    """One name per image (the spec's default): a `label` cell, softmax decisions, accuracy and confusion."""

    name = "single-label"
    multiple = False
    fields: tuple[pa.Field, ...] = ()
    label_type = pa.string()
    score_caption = "confidence histogram"

    def default_top_k(self, classes: int) -> int:
        """--top-k when not given: the three best classes."""
        return 3

    def settings(self, spec: Any) -> dict[str, Any]:
        """What this task adds to the settings that decide a row's content (none)."""
        return {}

    def extra(self, cells: dict[str, Any]) -> dict[str, Any]:
        """Cells only label-set tables carry (none here)."""
        return {}

    def parse(self, value: Any) -> str | None:
        """A truth or reviewed cell: the name, or None."""
        return clean(value)

    def label(self, value: Any) -> str | None:
        """A reviewed or example cell as a label: the name, or None."""
        return clean(value)

    def names(self, label: Any) -> tuple[str, ...] | None:
        """The names a label holds (None: no label)."""
        return None if label is None else (label,)

    def has_review(self, value: Any) -> bool:
        """Whether a `reviewed_label` cell holds a person's label."""
        if isinstance(value, list | np.ndarray):
            return len(value) > 0
        return isinstance(value, str) and bool(value.strip())

    def row_label(self, frame: pd.DataFrame, i: int) -> str:
        """The label a row carries."""
        return frame["label"].iloc[i]

    def cell(self, values: Sequence[Any]) -> Any:
        """One cell from what a person chose: the first choice (None: none)."""
        return values[0] if len(values) else None

    def tagged(self, every: list[str], last: str | None) -> str | None:
        """A review from a tool that shows the model's tags beside a person's (CVAT): the person's last tag."""
        return last

    def combine(self, before: Any, label: Any) -> tuple[Any, bool]:
        """Two labels given for one image: the last one wins; True when they differ."""
        return label, before is not None and before != label

    def targets(self, labels: Sequence[Any], columns: Sequence[str]) -> np.ndarray:
        """Reviewed labels as the planner takes them: each row's column index (-1: not reviewed)."""
        order = list(columns)
        return np.asarray([-1 if label is None else order.index(label) for label in labels], np.int64)

    def text_cell(self, value: Any) -> Any:
        """A `reviewed_label` cell as a CSV writes it."""
        return value

    def read_columns(self, frame: pd.DataFrame, path: Path) -> None:
        """Check and parse the columns this task adds to a table read back (none)."""

    def export_cells(self, ok: pd.DataFrame, i: int, thresholds: dict[str, float]) -> dict[str, tuple]:
        """What an export writes of row `i` of `ok`: its one label with its confidence, and the model's label."""
        label, tops = ok["label"].iat[i], ok["top_labels"].iat[i]
        return {"labels": ((str(label), float(ok["confidence"].iat[i])),),
                "model_labels": (str(tops[0]) if len(tops) else str(label),)}

    def shown(self, frame: pd.DataFrame) -> pd.Series:
        """The label cell the report's editor shows and reads back."""
        return frame["label"]

    def label_sets(self, frame: pd.DataFrame) -> list[frozenset[str]]:
        """Each row's labels as a set ({label}; none on error rows), as a multi-label diff compares them."""
        return [frozenset([v]) if isinstance(v, str) else frozenset() for v in frame["label"]]

    def decided(self, scores: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
        """(rows, classes) bool: the best class of each row."""
        return np.eye(scores.shape[1], dtype=bool)[scores.argmax(axis=1)]

    def sureness(self, scores: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
        """How sure each row is: best − second probability."""
        p = np.asarray(scores, np.float64)
        if p.shape[1] < 2:
            return np.ones(len(p))
        top = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return top[:, 1] - top[:, 0]

    def agrees(self, scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None) -> bool:
        """Whether the scores' best class is the reviewed one on at least half of the rows with a known label."""
        known = labels >= 0
        return bool(known.any()) and float(np.mean(scores[known].argmax(axis=1) == labels[known])) >= 0.5

    def knows(self, loo_zero_shot: float, columns: int, uninformed: float) -> bool:
        """Whether zero-shot knows the classes: right on more than `uninformed` × chance and half of the examples."""
        return loo_zero_shot > max(uninformed / columns, 0.5)


    def joined(self, other: Any) -> Any:
        """The task two tables are compared under: the other's (single-label with single-label stays so)."""
        return other

    def class_rows(self, table: Table, ok: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
        """Per class, the rows labelled with it (their confidence as `score`, best first), and those scores."""
        rows = {c: ok[ok["label"] == c] for c in table.classes}
        rows = {c: r.assign(score=r["confidence"]).sort_values("score", ascending=False) for c, r in rows.items()}
        return rows, {c: r["score"].to_numpy(dtype=float) for c, r in rows.items()}

    def mismatches(self, frame: pd.DataFrame, truth: Truth, classes: Sequence[str]) -> list[tuple[str, str]]:
        """Rows whose label is not the truth, most confident first: (path, caption)."""
        truth_col = np.asarray(truth.labels, dtype=object)
        known = set(classes)
        wrong = [i for i in range(len(frame)) if frame.at[i, "status"] != "error" and truth_col[i] is not None
                 and truth_col[i] in known and truth_col[i] != frame.at[i, "label"]]
        return [(frame.at[i, "path"], f"truth {truth_col[i]} → {frame.at[i, 'label']} {frame.at[i, 'confidence']:.2f}")
                for i in sorted(wrong, key=lambda i: -frame.at[i, "confidence"])]

    def label_counts(self, ok: pd.DataFrame) -> pd.Series | None:
        """How many images got 0, 1, 2, … labels (None: always one)."""
        return None

    def merge_reviews(self, frame: pd.DataFrame, keys: list[str], reviewed: dict[str, Any]) -> tuple[int, int]:
        """Put a tool's reviews into `reviewed_label` / `reviewed_by_human` (earlier reviews of rows it does not
        mention kept); returns (rows whose review differs from the label, earlier reviews replaced)."""
        previous = frame["reviewed_label"] if "reviewed_label" in frame else [None] * len(frame)
        replaced = sum(k in reviewed and isinstance(prev, str) and prev != reviewed[k]
                       for k, prev in zip(keys, previous, strict=True))
        frame["reviewed_label"] = [reviewed.get(k, prev if isinstance(prev, str) else None)
                                   for k, prev in zip(keys, previous, strict=True)]
        frame["reviewed_by_human"] = frame["reviewed_label"].notna()
        changed = int(((frame["reviewed_label"].notna()) & (frame["reviewed_label"] != frame["label"])).sum())
        return changed, replaced


SINGLE = SingleLabel()
