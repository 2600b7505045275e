"""Label issues by confident learning: given labels the model confidently contradicts, worst first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelIssue:
    """A row whose given label the model confidently contradicts."""

    row: int
    given: int  # class index of the given label
    suggested: int  # the class it confidently belongs to instead
    score: float  # (1 − normalised margin) / 2 in [0, 1]: higher = more surely wrong
    self_confidence: float  # the model's probability of the given label


def class_thresholds(probabilities: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Per class j: the mean probability of j over the rows labelled j (∞ for a class nobody was given)."""
    classes = probabilities.shape[1]
    thresholds = np.full(classes, np.inf)
    for j in range(classes):
        rows = given == j
        if rows.any():
            thresholds[j] = probabilities[rows, j].mean()
    return thresholds


def find_label_issues(probabilities: np.ndarray, given: Sequence[int] | np.ndarray) -> list[LabelIssue]:
    """Rows whose given label the model contradicts, by confident learning's per-class thresholds.

    `given` holds each row's class index (-1: no label, skipped). Class j's threshold t_j is the mean
    self-confidence of the rows labelled j. A row labelled i is an issue when

    - it is confidently another class: p(j) ≥ t_j for some j ≠ i that is the most probable of the classes
      over their thresholds (the off-diagonal of the confident joint, Northcutt et al., 2021), or
    - its label is not confidently supported, p(i) < t_i, and the model's best class is another one
      (this catches what the first rule misses when probabilities saturate near 1, as they do for
      small, sharp models, and half of a class's rows sit just under its mean).

    Issues are ranked by the normalised margin p(i) − max p(other), lowest first; `suggested` is the
    confident class, else the model's best.
    """
    probs = np.asarray(probabilities, np.float64)
    labels = np.asarray(given, np.int64)
    thresholds = class_thresholds(probs, labels)
    issues = []
    for row in np.flatnonzero(labels >= 0):
        p, i = probs[row], int(labels[row])
        confident = np.flatnonzero(p >= thresholds)
        best = int(np.argmax(p))
        confident_class = int(confident[np.argmax(p[confident])]) if len(confident) else i
        if confident_class != i:
            suggested = confident_class
        elif p[i] < thresholds[i] and best != i:
            suggested = best
        else:
            continue
        margin = p[i] - np.delete(p, i).max()
        issues.append(LabelIssue(row=int(row), given=i, suggested=suggested, score=float((1 - margin) / 2),
                                 self_confidence=float(p[i])))
    return sorted(issues, key=lambda x: (-x.score, x.row))
