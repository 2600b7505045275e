"""Exact and near-duplicate groups: same bytes, or embedding neighbours confirmed on pixels; split leakage."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from autolabel.audit.findings import Finding
from autolabel.audit.neighbours import Neighbours
from autolabel.audit.pixels import PixelRule, Thumbnail, pixel_distances

GROUP_PATHS_SHOWN = 5
PAIRS_CAP = 2000  # candidate pairs of one group checked pair by pair; a larger group is checked against leaders
THUMB_BATCH = 512  # thumbnails made at once (in parallel) and held while their pairs are checked
LEADERS_TRIED = 4  # groups an image of a huge candidate group is compared with (by their leaders)
LEADERS_KEPT = 2048  # leader thumbnails held at once in a huge group (~100 kB each)


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


def _edge(a: int, b: int, distance: float, cropped: bool, cosine: float) -> Edge:
    what = "one a crop of the other" if cropped else "re-encoded, resized or retouched"
    return Edge(a, b, 1.0 - distance / 2, f"near-duplicate ({what}; pixel distance {distance:.2f}, "
                                          f"embedding cosine {cosine:.4f})")


def candidate_groups(pairs: np.ndarray) -> list[np.ndarray]:
    """The candidate pairs split by connected group of images (union-find), in order of each group's first row."""
    if not len(pairs):
        return []
    groups = _Groups(int(pairs.max()) + 1)
    for a, b in pairs.tolist():
        groups.join(a, b)
    roots = np.array([groups.find(a) for a in pairs[:, 0].tolist()])
    order = np.argsort(roots, kind="stable")
    cuts = np.flatnonzero(np.diff(roots[order])) + 1
    return np.split(pairs[order], cuts)


def confirmed_edges(pairs: np.ndarray, similarity: Callable[[int, int], float],
                    thumbnail: Callable[[int], np.ndarray | None], rule: DuplicateRule,
                    workers: int = 4) -> list[Edge]:
    """The candidate pairs whose pixels match, in bounded memory: one connected group of candidates at a time.

    Groups of up to PAIRS_CAP candidate pairs (every group of an ordinary dataset) are checked pair by
    pair, a few groups together so thumbnails are made in parallel (each image once) and released after:
    thumbnails of THUMB_BATCH images and one group at most are held. A larger group — thousands of copies
    of a few pictures, or a model that puts a whole class above the candidate cosine — is checked against
    representatives instead (`_by_leaders`).
    """
    edges: list[Edge] = []
    batch: list[np.ndarray] = []
    held = 0  # images of the batch
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for group in candidate_groups(pairs):
            if len(group) > PAIRS_CAP:
                edges.extend(_by_leaders(group, similarity, thumbnail, rule, pool))
                continue
            batch.append(group)
            held += len(np.unique(group))
            if held >= THUMB_BATCH:
                edges.extend(_every_pair(np.concatenate(batch), similarity, thumbnail, rule, pool))
                batch, held = [], 0
        if batch:
            edges.extend(_every_pair(np.concatenate(batch), similarity, thumbnail, rule, pool))
    return edges


def _every_pair(pairs: np.ndarray, similarity: Callable[[int, int], float],
                thumbnail: Callable[[int], np.ndarray | None], rule: DuplicateRule,
                pool: ThreadPoolExecutor) -> list[Edge]:
    """Each candidate pair checked on pixels (thumbnails made in parallel, each image once)."""
    rows = sorted({int(r) for r in pairs.ravel()})
    thumbs = dict(zip(rows, pool.map(_viewed(thumbnail), rows), strict=True))
    readable = [(a, b) for a, b in pairs.tolist() if thumbs[a] is not None and thumbs[b] is not None]
    found = pixel_distances([(thumbs[a], thumbs[b]) for a, b in readable], rule.pixels)
    return [_edge(a, b, distance, cropped, similarity(a, b))
            for (a, b), (distance, cropped) in zip(readable, found, strict=True) if distance <= 1.0]


class _Leaders:
    """Groups of a huge candidate group, each with its leader (its first image) and the leader's thumbnail."""

    def __init__(self, size: int, thumbnail: Callable[[int], np.ndarray | None]) -> None:
        self.groups = _Groups(size)
        self.leader: dict[int, int] = {}  # group root → leader row
        self.kept: OrderedDict[int, Thumbnail] = OrderedDict()  # leader thumbnails, least recently used first
        self.thumbnail = _viewed(thumbnail)

    def lead(self, row: int, thumb: Thumbnail) -> None:
        self.leader[self.groups.find(row)] = row
        self._keep(row, thumb)

    def leaders_of(self, candidates: list[int], row: int, skip: set[int]) -> list[int]:
        """The leaders of the candidates' groups (not `row`'s own, none in `skip`), in the candidates' order."""
        out: list[int] = []
        mine = self.groups.find(row)
        for other in candidates:
            root = self.groups.find(other)
            leader = self.leader.get(root)
            if root != mine and leader is not None and leader not in skip and leader not in out:
                out.append(leader)
        return out

    def join(self, row: int, leader: int) -> None:
        a, b = self.groups.find(row), self.groups.find(leader)
        if a != b:
            leaders = [r for r in (self.leader.pop(a, None), self.leader.pop(b, None)) if r is not None]
            self.groups.join(a, b)
            self.leader[self.groups.find(a)] = min(leaders)

    def thumb(self, row: int) -> Thumbnail:
        if row in self.kept:
            self.kept.move_to_end(row)
            return self.kept[row]
        thumb = self.thumbnail(row)
        assert thumb is not None  # it was readable when it became a leader
        self._keep(row, thumb)
        return thumb

    def _keep(self, row: int, thumb: Thumbnail) -> None:
        self.kept[row] = thumb
        if len(self.kept) > LEADERS_KEPT:
            self.kept.popitem(last=False)


def _by_leaders(pairs: np.ndarray, similarity: Callable[[int, int], float],
                thumbnail: Callable[[int], np.ndarray | None], rule: DuplicateRule,
                pool: ThreadPoolExecutor) -> list[Edge]:
    """A huge candidate group, THUMB_BATCH images at a time (row order): each image is compared with the
    leaders (first images) of the groups its earlier candidates are in — at most LEADERS_TRIED in all, the
    most similar candidate's first — and joins each that matches; one that matches none, once none of its
    earlier candidates is undecided, leads a new group. Each round checks every undecided image of the
    batch against the leaders there are at once (vectorised). Pixel checks ≤ LEADERS_TRIED per image;
    thumbnails held: one batch and up to LEADERS_KEPT leaders.
    """
    pairs = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]  # by later row: each image's earlier candidates
    rows = np.unique(pairs)
    starts, ends = np.searchsorted(pairs[:, 1], rows), np.searchsorted(pairs[:, 1], rows, side="right")
    state, edges = _Leaders(int(rows[-1]) + 1, thumbnail), []
    for first in range(0, len(rows), THUMB_BATCH):
        chunk = rows[first : first + THUMB_BATCH].tolist()
        pending = {row: (thumb, sorted(pairs[starts[first + n] : ends[first + n], 0].tolist(),
                                       key=lambda e, row=row: (-similarity(e, row), e)))
                   for n, (row, thumb) in enumerate(zip(chunk, pool.map(_viewed(thumbnail), chunk), strict=True))
                   if thumb is not None}
        tried: dict[int, set[int]] = {row: set() for row in pending}
        while pending:
            tries, settled = [], []
            for row, (thumb, earlier) in pending.items():
                leaders = state.leaders_of(earlier, row, tried[row])[: LEADERS_TRIED - len(tried[row])]
                tried[row].update(leaders)
                tries += [(row, leader, thumb) for leader in leaders]
                if not leaders and not any(e in pending for e in earlier):
                    settled.append(row)
            found = pixel_distances([(state.thumb(leader), thumb) for _, leader, thumb in tries], rule.pixels)
            for (row, leader, _), (distance, cropped) in zip(tries, found, strict=True):
                if distance <= 1.0:
                    edges.append(_edge(leader, row, distance, cropped, similarity(leader, row)))
                    state.join(row, leader)
                    pending.pop(row, None)
            for row in settled:
                state.lead(row, pending.pop(row)[0])
    return edges


def _viewed(thumbnail: Callable[[int], np.ndarray | None]) -> Callable[[int], Thumbnail | None]:
    def viewed(row: int) -> Thumbnail | None:
        integral = thumbnail(row)
        return None if integral is None else Thumbnail.of(integral)

    return viewed


def candidate_pairs(neighbours: Neighbours, rows: np.ndarray, rule: DuplicateRule) -> np.ndarray:
    """Neighbour pairs over the rule's similarity, as rows of the full table (neighbours index into `rows`)."""
    pairs = neighbours.pairs(rule.candidate_similarity)
    return rows[pairs] if len(pairs) else pairs


def _group_name(number: int, rows: list[int], paths: Sequence[str]) -> str:
    shown = ", ".join(paths[r] for r in rows[:GROUP_PATHS_SHOWN])
    more = f" and {len(rows) - GROUP_PATHS_SHOWN} more" if len(rows) > GROUP_PATHS_SHOWN else ""
    return f"group {number} ({len(rows)} images): {shown}{more}"


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
    named = {root: _group_name(numbered[root], sorted(set(rows)), paths) for root, rows in members.items()}
    out = []
    for e in sorted(kept, key=lambda e: (numbered[groups.find(e.a)], min(e.a, e.b), max(e.a, e.b))):
        root = groups.find(e.a)
        a, b, group = min(e.a, e.b), max(e.a, e.b), named[root]
        out.append(Finding("duplicate", paths[a], e.score, f"{e.how} · {group}", other_path=paths[b],
                           group=numbered[root]))
        if splits is not None and None not in (splits[a], splits[b]) and splits[a] != splits[b]:
            out.append(Finding("leakage", paths[a], e.score,
                               f"the same picture in split '{splits[a]}' and split '{splits[b]}' ({e.how}) · {group}",
                               other_path=paths[b], group=numbered[root]))
    return out
