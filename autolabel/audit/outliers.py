"""Outliers: images far from all others in embedding space (mean cosine distance to their k nearest)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SPREAD = 1e-3  # the interquartile range is floored at this (cosine distance), for sets of near-identical images


@dataclass(frozen=True)
class Outlier:
    """A row far from the rest: its kNN distance, and how many interquartile ranges it lies above Q3."""

    row: int
    distance: float
    iqrs_above_q3: float


def knn_distance(similarities: np.ndarray, k: int) -> np.ndarray:
    """1 − mean similarity to the k nearest neighbours (rows sorted best first; missing ones ignored)."""
    sims = np.asarray(similarities, np.float64)[:, :k]
    finite = np.isfinite(sims)
    counts = finite.sum(axis=1)
    total = np.where(finite, sims, 0.0).sum(axis=1)
    return np.where(counts > 0, 1.0 - total / np.maximum(counts, 1), np.nan)


def find_outliers(distances: np.ndarray, fence: float = 3.0) -> list[Outlier]:
    """Rows beyond Tukey's fence, Q3 + fence·IQR of all distances (3: "far out"), farthest first.

    A fence on the upper quartiles suits these distances, which are skewed to the right: a symmetric
    rule around the median would flag the ordinary long tail.
    """
    d = np.asarray(distances, np.float64)
    valid = np.isfinite(d)
    if valid.sum() < 4:
        return []
    q1, q3 = np.percentile(d[valid], [25, 75])
    spread = max(q3 - q1, MIN_SPREAD)
    rows = np.flatnonzero(valid & (d > q3 + fence * spread))
    found = (Outlier(int(r), float(d[r]), float((d[r] - q3) / spread)) for r in rows)
    return sorted(found, key=lambda o: (-o.distance, o.row))
