"""Exact and near-duplicate groups: same bytes, or embedding neighbours confirmed on pixels; split leakage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from autolabel.audit.findings import Finding
from autolabel.audit.neighbours import Neighbours
from autolabel.audit.pixels import PixelRule, pixel_distance

GROUP_PATHS_SHOWN = 5


@dataclass(frozen=True)
class DuplicateRule:
    """Which embedding neighbours are candidates, and when pixels confirm them."""

    candidate_similarity: float = 0.90  # cosine; near-duplicates of real photos score ≥ 0.95 in CLIP models
    pixels: PixelRule = PixelRule()


@dataclass(frozen=True)
class Edge:
    """Two rows showing the same picture."""

    a: int
    b: int
    score: float  # 1.0 exact; 1 − distance/2 for pixel matches (> 0.5)
    how: str


class _Groups:
    """Union-find over rows; `join` is True when it connected two groups (the edge is kept)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def exact_edges(digests: Sequence[str | None]) -> list[Edge]:
    """Each row whose bytes equal an earlier row's, joined to the first row with those bytes."""
    first: dict[str, int] = {}
    edges = []
    for row, digest in enumerate(digests):
        if digest is None:
            continue
        if digest in first:
            edges.append(Edge(first[digest], row, 1.0, "exact copy (same bytes)"))
        else:
            first[digest] = row
    return edges


def confirmed_edges(pairs: np.ndarray, similarity: Callable[[int, int], float],
                    thumbnail: Callable[[int], np.ndarray | None], rule: DuplicateRule,
                    workers: int = 4) -> list[Edge]:
    """The candidate pairs whose pixels match (thumbnails made in parallel, each image once)."""
    rows = sorted({int(r) for r in pairs.ravel()})
    with ThreadPoolExecutor(max_workers=workers) as pool:
        thumbs = dict(zip(rows, pool.map(thumbnail, rows), strict=True))
    edges = []
    for a, b in pairs.tolist():
        ta, tb = thumbs[a], thumbs[b]
        if ta is None or tb is None:
            continue
        distance, cropped = pixel_distance(ta, tb, rule.pixels)
        if distance <= 1.0:
            what = "one a crop of the other" if cropped else "re-encoded, resized or retouched"
            edges.append(Edge(a, b, 1.0 - distance / 2, f"near-duplicate ({what}; pixel distance {distance:.2f}, "
                                                         f"embedding cosine {similarity(a, b):.4f})"))
    return edges


def candidate_pairs(neighbours: Neighbours, rows: np.ndarray, rule: DuplicateRule) -> np.ndarray:
    """Neighbour pairs over the rule's similarity, as rows of the full table (neighbours index into `rows`)."""
    pairs = neighbours.pairs(rule.candidate_similarity)
    return rows[pairs] if len(pairs) else pairs


def duplicate_findings(paths: Sequence[str], edges: Sequence[Edge], splits: Sequence[str | None] | None = None
                       ) -> list[Finding]:
    """Groups from the edges (strongest first, one spanning edge per joined image), as findings.

    Each kept edge is one `duplicate` row (path: the earlier image, other_path: the later); its detail
    names the whole group. With splits, kept edges whose images sit in different splits are also
    `leakage` rows.
    """
    groups = _Groups(len(paths))
    kept = [e for e in sorted(edges, key=lambda e: (-e.score, e.a, e.b)) if groups.join(e.a, e.b)]
    members: dict[int, list[int]] = {}
    for e in kept:
        for row in (e.a, e.b):
            members.setdefault(groups.find(row), []).append(row)
    numbered = {root: n for n, root in enumerate(sorted(members), start=1)}
    out = []
    for e in sorted(kept, key=lambda e: (numbered[groups.find(e.a)], min(e.a, e.b), max(e.a, e.b))):
        root = groups.find(e.a)
        rows = sorted(set(members[root]))
        shown = ", ".join(paths[r] for r in rows[:GROUP_PATHS_SHOWN])
        more = f" and {len(rows) - GROUP_PATHS_SHOWN} more" if len(rows) > GROUP_PATHS_SHOWN else ""
        a, b = min(e.a, e.b), max(e.a, e.b)
        group = f"group {numbered[root]} ({len(rows)} images): {shown}{more}"
        out.append(Finding("duplicate", paths[a], e.score, f"{e.how} · {group}", other_path=paths[b],
                           group=numbered[root]))
        if splits is not None and None not in (splits[a], splits[b]) and splits[a] != splits[b]:
            out.append(Finding("leakage", paths[a], e.score,
                               f"the same picture in split '{splits[a]}' and split '{splits[b]}' ({e.how}) · {group}",
                               other_path=paths[b], group=numbered[root]))
    return out
