"""Review priority of a project's unlabelled tasks: typical images of the regions no example covers yet come first.

A person's first labels teach the adapter most when they are typical of a region of the embedding space and
far from everything already labelled (TypiClust, Hacohen et al. 2022: typical picks beat uncertain or outlying
ones at tiny budgets; k-center picks outliers). Greedy: each next task maximises
`typicality × distance to the nearest example or earlier pick × (1 + uncertainty)`, where typicality is the
inverse mean distance to its nearest neighbours (junk and one-off images are atypical and come late) and
uncertainty is 1 − the classifier's confidence (it only matters once regions are covered, where it breaks
ties towards the images the adapted classifier still doubts).
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 20  # typicality: mean distance to this many nearest neighbours
REFERENCE = 2048  # … among at most this many pool images (a fixed, evenly spaced subset)
GREEDY = 512  # tasks ranked greedily; the rest follow by typicality × distance to the examples


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def typicality(pool: np.ndarray) -> np.ndarray:
    """1 / mean cosine distance to the nearest neighbours in the pool (the image itself left out)."""
    n = len(pool)
    if n < 2:
        return np.ones(n)
    step = max(1, n // REFERENCE)
    reference = np.arange(0, n, step)[:REFERENCE]
    distance = 1.0 - pool @ pool[reference].T
    distance[reference, np.arange(len(reference))] = np.inf  # not its own neighbour
    k = max(1, min(NEIGHBOURS, len(reference) - 1))
    nearest = np.partition(distance, k - 1, axis=1)[:, :k]
    return 1.0 / np.maximum(nearest.mean(axis=1), 1e-6)


def review_order(pool: np.ndarray, examples: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Indices of the pool (unit or not, (n, dim)), best to review first; `examples` (m, dim) are labelled
    images, `confidence` (n,) the classifier's confidence in its label for each pool image. Deterministic."""
    n = len(pool)
    if n == 0:
        return np.zeros(0, np.int64)
    pool = _unit(pool)
    typical = typicality(pool)
    typical = typical / typical.max()
    weight = typical * (1.0 + (1.0 - np.clip(np.asarray(confidence, np.float64), 0.0, 1.0)))
    # nothing covered yet: every distance is the largest, and typicality alone picks the first
    nearest = (1.0 - pool @ _unit(examples).T).min(axis=1) if len(examples) else np.full(n, 2.0)
    nearest = np.maximum(nearest, 0.0)
    order: list[int] = []
    taken = np.zeros(n, bool)
    for _ in range(min(n, GREEDY)):
        value = np.where(taken, -np.inf, weight * nearest)
        best = int(np.argmax(value))  # first index on ties: stable
        order.append(best)
        taken[best] = True
        nearest = np.minimum(nearest, np.maximum(1.0 - pool @ pool[best], 0.0))
    rest = np.flatnonzero(~taken)
    rest = rest[np.argsort(-(weight * nearest)[rest], kind="stable")]
    return np.concatenate([np.asarray(order, np.int64), rest])


def scores(order: np.ndarray) -> np.ndarray:
    """Prediction scores from an order: the first task gets 0, the last just under 1 (ascending = review first)."""
    n = len(order)
    out = np.empty(n)
    out[order] = np.arange(n) / max(n, 1)
    return np.round(out, 6)
