"""The review planner: which rows people should review next, best first (pure numpy over cached embeddings).

Cold start (no reviewed rows): coverage with typical images, as TypiClust (Hacohen et al., "Active learning on
a budget", ICML 2022): k-means over the image embeddings with k = budget, the most typical image of each cluster
(typicality = 1 / mean cosine distance to its nearest neighbours in the cluster), ordered by greedy facility
location (each next image adds the most similarity of the data to its nearest pick), so that every prefix is
spread over the data rather than all in its largest class. At tiny budgets typical images teach more than
uncertain or outlying ones (outliers are often junk, and plain uncertainty on a CLIP model follows its class
imbalance).

With reviewed rows, k = reviewed + budget and the order mixes four reasons, slot by slot (`MIX`):
  coverage   the most typical image of a cluster no reviewed row is in (most representative first);
  balance    the most typical image predicted as the class with the fewest reviewed examples;
  uncertain  the smallest margin of the adapted classifier (multi-label: the log-odds of some class nearest
             its threshold's), at most one per cluster while others are left;
  disagree   zero-shot and adapter pick different classes, largest change first (only when zero-shot is right
             on at least half of the reviewed rows: otherwise the text knows nothing and every row disagrees).
A reason with nothing left gives its slot to the next. Every unreviewed row gets a place; `priority` maps the
place into [0, 1) (lower = review first, so Label Studio's ascending sort shows the best first); reviewed rows
get 1.0. Deterministic: a fixed seed, stable sorts, ties by row index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from autolabel.task import Task, resolve

OVERCLUSTER = 1  # k-means' k = reviewed + this × budget. 2 (the budget's rows the most representative of twice
# as many typical images) helps a queue reviewed to its end (demo, --budget 24: 95.4% → 100%) but costs the
# first rows of a longer one their rare classes (hard world, first 12 of --budget 24: 98.1% → 90.1%)
MAX_CLUSTERS = 1024  # k-means' k at most: larger budgets fill the rest from the same clusters, round robin
NEIGHBOURS = 20  # typicality: mean distance to this many nearest cluster members (TypiClust's choice)
REFERENCES = 256  # … searched among at most this many members of the cluster (a seeded sample)
MIN_CLUSTER = 3  # smaller clusters are outliers: planned after every larger one
FIT_SAMPLE, FIT_SAMPLE_PER_CLUSTER = 20_000, 16  # k-means fits on max(20,000, 16 k) rows at most …
INIT_SAMPLE = 4096  # … seeded by k-means++ on max(4,096, 3 k) of them
ITERATIONS = 12  # Lloyd steps at most (on the sample; the centres hardly move after ~10)
_CHUNK = 8192
ORDER_SAMPLE = 4096  # the first picks are ordered by how much of a sample of this many rows they represent …
ORDERED = 256  # … for at most this many picks (later ones keep the cluster order)
ATYPICAL = 0.25  # rows less typical than this share of the candidates come last among uncertain ones
MIX = ("balance", "coverage", "uncertain", "coverage", "disagree", "uncertain")  # slot reasons, cycled
REASONS = ("coverage", "balance", "uncertain", "disagree")


@dataclass(frozen=True)
class Plan:
    """Every unreviewed row in review order, why it is there, and a priority per row (lower = sooner)."""

    order: np.ndarray  # (m,) int64 row indices, best first (m = unreviewed rows)
    reasons: tuple[str, ...]  # one per entry of `order`
    priority: np.ndarray  # (n,) float64 in [0, 1]: position in `order` / m; reviewed rows 1.0
    clusters: int  # k-means clusters used

    def head(self, budget: int) -> tuple[np.ndarray, tuple[str, ...]]:
        """The first `budget` rows and their reasons."""
        return self.order[:budget], self.reasons[:budget]


def kmeans(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Cluster index of every row: k-means++ seeds and Lloyd iterations on seeded samples, then every row
    assigned to its nearest center (the centers of 100,000 images are as good from a sample, for a tenth)."""
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    fit = _sample(x, FIT_SAMPLE_PER_CLUSTER * k, FIT_SAMPLE, rng)
    with threadpool_limits(limits=1, user_api="blas"):  # k small products: BLAS threads only get in the way
        centers = _plus_plus(_sample(fit, 3 * k, INIT_SAMPLE, rng), k, rng)
    labels = np.full(len(fit), -1, np.int64)
    for _ in range(ITERATIONS):
        new = _assign(fit, centers)
        changed = int((new != labels).sum())
        labels = new
        present, sums, counts = _sums(fit, labels, k)
        centers[present] = sums / counts[:, None]
        if changed <= len(fit) // 1000:
            break
    return _assign(x, centers)


def _sums(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clusters that have rows, the sum of their rows and their sizes."""
    counts = np.bincount(labels, minlength=k)
    present = np.flatnonzero(counts)
    grouped = x[np.argsort(labels, kind="stable")]
    starts = np.r_[0, np.cumsum(counts[present])[:-1]]
    if len(present) <= 128:  # reduceat is slow on few long runs
        ends = np.r_[starts[1:], len(x)]
        return present, np.stack([grouped[a:b].sum(axis=0) for a, b in zip(starts, ends, strict=True)]), counts[present]
    return present, np.add.reduceat(grouped, starts, axis=0), counts[present]


def _sample(x: np.ndarray, wanted: int, least: int, rng: np.random.Generator) -> np.ndarray:
    """x itself when small, else a seeded sample of max(wanted, least) rows (in row order)."""
    size = max(wanted, least)
    return x if len(x) <= size else x[np.sort(rng.choice(len(x), size, replace=False))]


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, 2007; 2 + log k candidates a step, as scikit-learn's)."""
    norms = (x.astype(np.float64) ** 2).sum(axis=1)
    centers = np.empty((k, x.shape[1]), np.float32)
    first = int(rng.integers(len(x)))
    centers[0] = x[first]
    best = np.maximum(norms + norms[first] - 2.0 * (x @ x[first]), 0.0)
    tries = 2 + int(np.log(k))
    for i in range(1, k):
        total = float(best.sum())
        if total <= 0:
            picks = rng.integers(len(x), size=tries)
        else:
            picks = np.minimum(np.searchsorted(np.cumsum(best), rng.random(tries) * total), len(x) - 1)
        distance = np.maximum(norms[None, :] + norms[picks][:, None] - 2.0 * (x[picks] @ x.T), 0.0)
        candidates = np.minimum(best[None, :], distance)
        choice = int(np.argmin(candidates.sum(axis=1)))
        centers[i], best = x[picks[choice]], candidates[choice]
    return centers


def _assign(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Nearest center of every row (squared Euclidean, through dot products), chunk by chunk."""
    half_norms = 0.5 * (centers.astype(np.float32) ** 2).sum(axis=1)
    out = np.empty(len(x), np.int64)
    for start in range(0, len(x), _CHUNK):
        scores = x[start:start + _CHUNK] @ centers.T - half_norms
        out[start:start + _CHUNK] = scores.argmax(axis=1)
    return out


def typicality(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """1 / mean cosine distance to the nearest NEIGHBOURS members of the row's cluster (0 for a lone row)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(x), np.float64)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    with threadpool_limits(limits=1, user_api="blas"):
        for members in np.split(order, bounds):
            _typicality_of(x, members, rng, out)
    return out


def _typicality_of(x: np.ndarray, members: np.ndarray, rng: np.random.Generator, out: np.ndarray) -> None:
    if len(members) > 1:
        refs = members if len(members) <= REFERENCES else np.sort(rng.choice(members, REFERENCES, replace=False))
        k = min(NEIGHBOURS, len(refs) - 1)
        for start in range(0, len(members), _CHUNK):
            rows = members[start:start + _CHUNK]
            distance = 1.0 - x[rows] @ x[refs].T
            distance[rows[:, None] == refs[None, :]] = np.inf  # not a neighbour of itself
            nearest = np.partition(distance, k - 1, axis=1)[:, :k]
            out[rows] = 1.0 / (np.maximum(nearest.mean(axis=1), 0.0) + 1e-6)


def margins(probabilities: np.ndarray, multi_label: bool, thresholds: np.ndarray | None) -> np.ndarray:
    """How sure each row is: best − second probability; multi-label: the smallest |log-odds − threshold's|."""
    return resolve(multi_label).sureness(probabilities, thresholds)


def _class_counts(review_labels: np.ndarray | None, reviewed: np.ndarray, k: int) -> np.ndarray:
    """Reviewed examples per class (multi-label: rows that have it); unknown labels (-1) count for none."""
    if review_labels is None:
        return np.zeros(k, np.int64)
    labels = np.asarray(review_labels)
    if labels.ndim == 2:
        return labels[reviewed].astype(bool).sum(axis=0).astype(np.int64)[:k]
    given = labels[reviewed]
    given = given[(given >= 0) & (given < k)]
    return np.bincount(given, minlength=k).astype(np.int64)


def _zero_shot_informative(zero_shot: np.ndarray, review_labels: np.ndarray | None, reviewed: np.ndarray,
                           task: Task, thresholds: np.ndarray | None) -> bool:
    """Whether zero-shot is right on at least half of the reviewed rows (so its disagreement means something)."""
    if review_labels is None or not reviewed.any():
        return False
    return task.agrees(zero_shot[reviewed], np.asarray(review_labels)[reviewed], thresholds)


def _validate(embeddings: np.ndarray, zero_shot: np.ndarray, adapted: np.ndarray | None, reviewed: np.ndarray,
              budget: int) -> None:
    n = len(embeddings)
    if zero_shot.shape[0] != n or reviewed.shape != (n,) or (adapted is not None and adapted.shape != zero_shot.shape):
        raise ValueError("plan: embeddings, zero_shot, adapted and reviewed must have one row per image")
    if budget < 0:
        raise ValueError(f"plan: budget must be ≥ 0, got {budget}")


def plan(embeddings: np.ndarray, zero_shot: np.ndarray, adapted: np.ndarray | None, reviewed: np.ndarray,
         review_labels: np.ndarray | None, budget: int, multi_label: bool = False,
         thresholds: np.ndarray | None = None, seed: int = 0) -> Plan:
    """The review order of every unreviewed row (see the module docstring).

    `embeddings` (n, d) unit rows; `zero_shot`, `adapted` (n, k) probabilities (multi-label: per-class scores;
    `adapted` None when nothing was learnt); `reviewed` (n,) bool; `review_labels` the reviewed rows' class
    index ((n,) int, -1 unknown) or multi-label classes ((n, k) bool), None when unknown; `thresholds` (k,) the
    multi-label per-class thresholds. The first `budget` rows are the plan proper; k-means uses k = reviewed +
    budget clusters (at most MAX_CLUSTERS).
    """
    x = np.ascontiguousarray(embeddings, np.float32)
    zero_shot = np.asarray(zero_shot, np.float64)
    reviewed = np.asarray(reviewed, bool)
    _validate(x, zero_shot, adapted, reviewed, budget)
    n = len(x)
    candidates = np.flatnonzero(~reviewed)
    if not len(candidates):
        return Plan(np.zeros(0, np.int64), (), np.ones(n), 0)
    k = min(MAX_CLUSTERS, len(candidates), int(reviewed.sum()) + OVERCLUSTER * max(1, budget))
    clusters = kmeans(x, k, seed)
    typical = typicality(x, clusters, seed)
    if not reviewed.any():
        order = _coverage_order(clusters, typical, candidates, reviewed)
        firsts = int(len(np.unique(clusters[candidates])))  # one typical row per cluster, then the rest
        order[:firsts] = representative_order(x, order[:firsts], reviewed, seed)
        reasons = ("coverage",) * len(order)
    else:
        current = zero_shot if adapted is None else np.asarray(adapted, np.float64)
        order, reasons = _mixed_order(x, clusters, typical, candidates, reviewed, zero_shot, current, review_labels,
                                      resolve(multi_label), thresholds, budget)
    priority = np.ones(n, np.float64)
    priority[order] = np.arange(len(order)) / len(order)
    return Plan(order, tuple(reasons), priority, int(clusters.max()) + 1)


def _cluster_rank(clusters: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Rank of every cluster: uncovered before covered, clusters of MIN_CLUSTER or more first, larger first."""
    sizes = np.bincount(clusters)
    ids = np.arange(len(sizes))
    order = np.lexsort((ids, -sizes, sizes < MIN_CLUSTER, covered[ids] if len(covered) else np.zeros(len(ids))))
    rank = np.empty(len(sizes), np.int64)
    rank[order] = np.arange(len(sizes))
    return rank


def _coverage_order(clusters: np.ndarray, typical: np.ndarray, candidates: np.ndarray,
                    reviewed: np.ndarray) -> np.ndarray:
    """Round robin over clusters (uncovered, large ones first): each cluster's most typical row, then its next."""
    covered = np.zeros(int(clusters.max()) + 1, bool)
    covered[clusters[reviewed]] = True
    rank = _cluster_rank(clusters, covered)[clusters[candidates]]
    by_typicality = np.lexsort((candidates, -typical[candidates], rank))
    ranks = rank[by_typicality]
    starts = np.flatnonzero(np.r_[True, ranks[1:] != ranks[:-1]])
    within = np.arange(len(ranks)) - np.repeat(starts, np.diff(np.r_[starts, len(ranks)]))  # place in its cluster
    return candidates[by_typicality[np.lexsort((ranks, within))]]


def representative_order(x: np.ndarray, picks: np.ndarray, known: np.ndarray, seed: int = 0) -> np.ndarray:
    """`picks` reordered so that every prefix represents the data best: greedy facility location (each next pick
    adds the most similarity, (1 + cos) / 2, of a row sample to its nearest pick or `known` row), so the first
    few of a large budget are spread over the whole data instead of all in its largest class."""
    head = np.asarray(picks[:ORDERED])
    if len(head) < 2:
        return np.asarray(picks)
    rng = np.random.default_rng(seed)
    sample = x[np.sort(rng.choice(len(x), min(len(x), ORDER_SAMPLE), replace=False))]
    with threadpool_limits(limits=1, user_api="blas"):
        gain_of = 0.5 * (1.0 + sample @ x[head].T)
        best = (0.5 * (1.0 + sample @ x[known].T)).max(axis=1) if known.any() else np.zeros(len(sample), np.float32)
    left = np.ones(len(head), bool)
    out = []
    for _ in range(len(head)):
        gains = np.maximum(gain_of - best[:, None], 0.0).sum(axis=0)
        gains[~left] = -1.0
        choice = int(np.argmax(gains))
        out.append(choice)
        left[choice] = False
        best = np.maximum(best, gain_of[:, choice])
    return np.concatenate([head[out], np.asarray(picks[ORDERED:])])


class _Mixer:
    """The slot-by-slot choice of the first `budget` rows once some rows are reviewed."""

    def __init__(self, x: np.ndarray, clusters: np.ndarray, typical: np.ndarray, candidates: np.ndarray,
                 reviewed: np.ndarray, predicted: np.ndarray, sureness: np.ndarray, counts: np.ndarray) -> None:
        self.clusters, self.typical, self.predicted = clusters, typical, predicted
        self.covered = np.zeros(int(clusters.max()) + 1, bool)
        self.covered[clusters[reviewed]] = True
        self.taken = np.zeros(len(clusters), bool)
        self.eligible = ~reviewed
        self.counts = counts.astype(np.float64).copy()
        firsts = [int(r) for r in _coverage_order(clusters, typical, candidates, reviewed)
                  if not self.covered[clusters[r]]][: int((~self.covered).sum())]
        self.coverage = representative_order(x, np.asarray(firsts, np.int64), reviewed).tolist()
        self.by_sureness = candidates[np.lexsort((candidates, sureness[candidates]))]
        # Uncertain and disagreeing rows are asked among the typical ones first: outliers (junk, a person skips
        # it) are uncertain too, and cost a review each (hard world, round 2: 6 of 12 rows junk without this).
        self.atypical = typical < np.quantile(typical[candidates], ATYPICAL)
        self.uncertain_clusters: set[int] = set()
        self.cursor = {"coverage": 0, "uncertain": 0, "disagree": 0}

    def take(self, row: int) -> int:
        self.taken[row] = True
        self.covered[self.clusters[row]] = True
        for c in np.flatnonzero(self.predicted[row]):
            self.counts[c] += 1
        return row

    def next_coverage(self) -> int | None:
        while self.cursor["coverage"] < len(self.coverage):
            row = self.coverage[self.cursor["coverage"]]
            self.cursor["coverage"] += 1
            if not self.taken[row] and not self.covered[self.clusters[row]]:
                return self.take(row)
        return None

    def next_balance(self) -> int | None:
        """The most typical row predicted as the class that lags most (fewest examples, planned ones counted)."""
        lagging = np.flatnonzero(self.counts < self.counts.max())
        for c in lagging[np.argsort(self.counts[lagging], kind="stable")]:
            pool = np.flatnonzero(self.predicted[:, c] & ~self.taken & self.eligible)
            if len(pool):
                best = pool[np.lexsort((pool, -self.typical[pool], self.covered[self.clusters[pool]]))][0]
                return self.take(int(best))
        return None

    def next_from(self, name: str, ranked: np.ndarray) -> int | None:
        """The next row of a ranked list, at most one per cluster while rows of other clusters are left."""
        start = self.cursor[name]
        for spread in (True, False):
            for i in range(start, len(ranked)):
                row = int(ranked[i])
                if self.taken[row] or (spread and int(self.clusters[row]) in self.uncertain_clusters):
                    continue
                self.uncertain_clusters.add(int(self.clusters[row]))
                return self.take(row)
        self.cursor[name] = len(ranked)
        return None


def _typical_first(ranked: np.ndarray, atypical: np.ndarray) -> np.ndarray:
    """`ranked` with its atypical rows moved to the end (each part keeps its order)."""
    return np.concatenate([ranked[~atypical[ranked]], ranked[atypical[ranked]]])


def _mixed_order(x: np.ndarray, clusters: np.ndarray, typical: np.ndarray, candidates: np.ndarray, reviewed: np.ndarray,
                 zero_shot: np.ndarray, current: np.ndarray, review_labels: np.ndarray | None, task: Task,
                 thresholds: np.ndarray | None, budget: int) -> tuple[np.ndarray, list[str]]:
    """The first `budget` rows by MIX, then every other unreviewed row by uncertainty."""
    k = current.shape[1]
    predicted = task.decided(current, thresholds)
    sureness = task.sureness(current, thresholds)
    mixer = _Mixer(x, clusters, typical, candidates, reviewed, predicted, sureness,
                   _class_counts(review_labels, reviewed, k))
    ranked = {"uncertain": _typical_first(mixer.by_sureness, mixer.atypical), "disagree": np.zeros(0, np.int64)}
    if _zero_shot_informative(zero_shot, review_labels, reviewed, task, thresholds):
        zs_predicted = task.decided(zero_shot, thresholds)
        change = np.abs(current - zero_shot).sum(axis=1)
        differ = candidates[(zs_predicted[candidates] != predicted[candidates]).any(axis=1)]
        ranked["disagree"] = _typical_first(differ[np.lexsort((differ, -change[differ]))], mixer.atypical)
    order: list[int] = []
    reasons: list[str] = []
    slot = 0
    while len(order) < min(budget, len(candidates)):
        for offset in range(len(MIX)):
            name = MIX[(slot + offset) % len(MIX)]
            row = (mixer.next_coverage() if name == "coverage" else mixer.next_balance() if name == "balance"
                   else mixer.next_from(name, ranked[name]))
            if row is not None:
                order.append(row)
                reasons.append(name)
                break
        slot += 1
    rest = mixer.by_sureness[~mixer.taken[mixer.by_sureness]]
    return np.asarray(order + rest.tolist(), np.int64), reasons + ["uncertain"] * len(rest)
