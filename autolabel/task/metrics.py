"""What the single- and multi-label metrics share: P/R/F1, Wilson intervals, threshold search, the result records."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from autolabel.core.errors import TooManyErrors

MIN_CALIBRATION_ROWS = 30


class Table(Protocol):
    """What the metrics read of a labels table (table.results.Results has it)."""

    path: Path
    frame: pd.DataFrame
    classes: list[str]
    metadata: dict[str, Any]

    @property
    def task(self) -> Any:  # base.Task (base imports the metrics, so it is not named here)
        """The table's task."""

    @property
    def min_margin(self) -> float:
        """The run's min_margin."""


@dataclass(frozen=True)
class Truth:
    """Ground truth aligned to a labels table: `labels` (one per row) and where it came from.

    Single-label: a name or None per row; multi-label: a list of names (cells.label_list) or None.
    """

    labels: list[Any]
    source: str


def _json(value: Any) -> Any:
    if isinstance(value, Record):
        return value.as_json()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


class Record(Mapping[str, Any]):
    """A frozen result that also reads as its JSON object (what `--json` writes, `as_json()`), so scripts and
    tests can index it by the keys CONTRACTS.md documents; code reads its fields."""

    def as_json(self) -> dict[str, Any]:
        """The JSON object: every field in order (nested records and tuples as objects and arrays)."""
        return {f.name: _json(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        return self.as_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_json())

    def __len__(self) -> int:
        return len(self.as_json())


@dataclass(frozen=True, eq=True)
class ClassMetrics(Record):
    """Precision, recall, F1 and support of one class."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, eq=True)
class Accepted(Record):
    """The rows a run accepted: how many, their share, and the precision of their labels (None: none accepted)."""

    n: int
    coverage: float
    precision: float | None


@dataclass(frozen=True, eq=True)
class Excluded(Record):
    """Rows left out of the metrics, by reason."""

    error: int
    reviewed: int
    no_truth: int
    unknown_truth: int
    unknown_truth_labels: dict[str, int]
    total: int


class Exclusions:
    """Counts the rows left out of the metrics while they are read (see Excluded)."""

    def __init__(self) -> None:
        self.counts = {"error": 0, "reviewed": 0, "no_truth": 0, "unknown_truth": 0}
        self.unknown: dict[str, int] = {}

    def add(self, reason: str, unknown: Sequence[str] = ()) -> None:
        """One row left out; `unknown`: the truth labels outside the spec that made it so."""
        self.counts[reason] += 1
        for name in unknown:
            self.unknown[name] = self.unknown.get(name, 0) + 1

    def done(self) -> Excluded:
        """The counts, with their total."""
        c = self.counts
        return Excluded(c["error"], c["reviewed"], c["no_truth"], c["unknown_truth"], self.unknown,
                        sum(c.values()))


@dataclass(frozen=True, eq=True)
class Threshold(Record):
    """A calibrated threshold: the lowest that reaches the target precision, or why there is none.

    `reason` set: too few labelled rows, nothing tried. Else `reachable`: with the precision, its Wilson
    interval, the decisions accepted and their share; or the best precision any cut reached. Multi-label
    thresholds add `recall`, `positives` and `rows_without_score`.
    """

    threshold: float | None
    rows: int
    reachable: bool = False
    best_precision: float | None = None
    precision: float | None = None
    precision_ci95: tuple[float, float] | None = None
    accepted: int | None = None
    coverage: float | None = None
    recall: float | None = None
    positives: int | None = None
    reason: str | None = None
    rows_without_score: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The keys each kind of result has, in the order `calibrate --json` writes them."""
        out: dict[str, Any] = {"threshold": self.threshold}
        if self.reason is None and self.reachable:
            out.update(reachable=True, precision=self.precision, precision_ci95=list(self.precision_ci95 or ()),
                       accepted=self.accepted, coverage=self.coverage)
        elif self.reason is None:
            out.update(reachable=False, best_precision=self.best_precision)
        out["rows"] = self.rows
        for name in ("recall", "positives", "reason", "rows_without_score"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True, eq=True)
class Shift(Record):
    """How many rows carry a class in the old and the new table."""

    old: int
    new: int
    change: int


@dataclass(frozen=True, eq=True)
class ReviewedRows(Record):
    """Rows people labelled, old and new, and how many of the new overrule the old label."""

    old: int
    new: int
    overruled: int


@dataclass(frozen=True)
class Diff(Record):
    """`autolabel diff`: two tables' rows matched by path, what flipped, how each class's count moved."""

    matched: int
    only_old: int
    only_new: int
    compared: int
    flips: int
    flip_rate: float
    flips_by_class: Mapping[str, Record]  # single-label: flips away from a class; multi-label: labels added, removed
    distribution: dict[str, Shift]
    newly_errored: int
    recovered: int
    status_changes: dict[str, int]
    reviewed: ReviewedRows

    flips_column: ClassVar[str] = "flipped away"  # the distribution table's last column


def prf(tp: np.ndarray, pred: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 per class; 0 where undefined (scikit-learn's zero_division=0)."""
    precision = np.divide(tp, pred, out=np.zeros_like(tp, dtype=float), where=pred > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp, dtype=float), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp, dtype=float), where=denom > 0)
    return precision, recall, f1


def class_metrics(classes: list[str], precision: np.ndarray, recall: np.ndarray, f1: np.ndarray,
              support: np.ndarray) -> dict[str, ClassMetrics]:
    """ClassMetrics by class name, in class order."""
    return {c: ClassMetrics(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
            for i, c in enumerate(classes)}


def mean(values: np.ndarray) -> float:
    """The mean, 0 for no values."""
    return float(values.mean()) if len(values) else 0.0


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def shortest_between(low: float, high: float) -> float:
    """The number with the fewest decimals in (low, high]: a threshold that reads well and, with `low` the next
    confidence below `high`, accepts exactly the rows `high` would."""
    exact = Decimal(repr(high))
    for digits in range(18):
        candidate = float(exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_FLOOR))
        if low < candidate <= high:
            return candidate
    return high


def best_threshold(conf: np.ndarray, margin_ok: np.ndarray, correct: np.ndarray, target: float,
                   governed: np.ndarray) -> Threshold:
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
        return Threshold(None, n, best_precision=float(prec[best]) if n else None)
    i = ok[-1]  # the lowest qualifying threshold accepts the most rows
    cut = float(conf[i])
    below = governed[governed < cut]
    return Threshold(shortest_between(float(below.max()) if below.size else 0.0, cut), n, reachable=True,
                     precision=float(prec[i]), precision_ci95=wilson_interval(int(right[i]), int(accepted[i])),
                     accepted=int(accepted[i]), coverage=float(accepted[i] / n))


def spec_with_thresholds(raw: dict[str, Any], calibration: Mapping[str, Any]) -> dict[str, Any]:
    """The label spec as given, with the calibrated global and per-class thresholds filled in exactly.

    `calibration`: calibrate's result, or its JSON object (read by the keys `--json` writes).
    """
    spec = dict(raw)
    if calibration["global"].get("threshold") is not None:
        spec["threshold"] = float(calibration["global"]["threshold"])
    found_per_class = calibration.get("per_class") or {}
    classes = []
    for item in spec.get("classes", []):
        entry = dict(item) if isinstance(item, dict) else {"name": item}
        found = found_per_class.get(str(entry["name"]), {})
        if found.get("threshold") is not None:
            entry["threshold"] = float(found["threshold"])
        classes.append(entry if len(entry) > 1 else entry["name"])
    spec["classes"] = classes
    other = spec.get("other")
    if other is not None:  # the open-set label is calibrated like a class; its threshold lives under `other:`
        entry = dict(other) if isinstance(other, dict) else {"name": other}
        found = found_per_class.get(str(entry["name"]), {})
        if found.get("threshold") is not None:
            entry["threshold"] = float(found["threshold"])
        spec["other"] = entry if len(entry) > 1 else entry["name"]
    return spec


class Comparison(Protocol):
    """What the flip gate reads of a diff (single.Diff, multi.SetDiff)."""

    matched: int
    compared: int
    flip_rate: float


def flip_gate(result: Comparison, max_flip_rate: float) -> None:
    """`diff --max-flip-rate`: TooManyErrors (exit 1) when more labels flipped, or when no row could be compared."""
    if result.compared == 0:
        raise TooManyErrors(f"no rows to compare ({result.matched} paths in both tables, none labelled in both): "
                            "--max-flip-rate cannot pass; check that OLD and NEW label the same images")
    if result.flip_rate > max_flip_rate:
        raise TooManyErrors(f"flip rate {result.flip_rate:.4f} exceeds --max-flip-rate {max_flip_rate}")


def percent(value: float | None) -> str:
    """A share as people read it: 97.5%, or — when there is none."""
    return "—" if value is None else f"{100 * value:.1f}%"


def calibration_json(result: Record) -> dict[str, Any]:
    """A calibration's `--json` object (either task): `global` for its `overall` threshold, `per_class` only when
    asked for."""
    data = Record.as_json(result)
    data["global"] = data.pop("overall")
    per = data.pop("per_class")
    return {**data, **({"per_class": per} if per is not None else {})}


class Measures:
    """A task's `autolabel eval`, `calibrate` and `diff`: the functions of the module that defines the task, looked
    up at each call."""

    def _module(self) -> Any:
        return sys.modules[type(self).__module__]

    def evaluate(self, table: Table, truth: Truth) -> Record:
        """`autolabel eval`."""
        return self._module().evaluate(table, truth)

    def calibrate(self, table: Table, truth: Truth, target: float, per_class: bool = False,
                  min_class_rows: int = 20) -> Record:
        """`autolabel calibrate`."""
        return self._module().calibrate(table, truth, target, per_class, min_class_rows)

    def diff(self, old: Table, new: Table) -> Record:
        """`autolabel diff`."""
        return self._module().diff(old, new)
