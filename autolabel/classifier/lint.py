"""Label-spec lint: classes the model cannot tell apart, prompts over its context, names equal after normalising."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autolabel.core.spec import LabelSpec

SEPARABLE = 0.9  # a pair passes when each class's prompts give their own class ≥ this probability on average
SHOWN = 100  # warnings of each kind spelled out by default (worst confusable pairs first); the rest are counted
BUSIEST = 5  # classes named in the summary, those with the most confusable partners
TILE_PROMPTS = 2048  # prompts per block of classes: a tile holds at most this × TILE_CLASSES floats
TILE_CLASSES = 512


@dataclass(frozen=True)
class LintWarning:
    """One problem of a label spec: `kind` is confusable, too_long or duplicate."""

    kind: str
    message: str
    classes: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()


def normalise(text: str) -> str:
    """Case-folded, whitespace collapsed, trailing punctuation dropped: how near-identical names are compared."""
    return re.sub(r"\s+", " ", text.casefold()).strip().rstrip(".!?,;: ")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _own_similarity(own: np.ndarray) -> np.ndarray:
    """Each prompt's cosine to its own class: the mean of the class's *other* prompts (or the class itself)."""
    n = len(own)
    centre = _unit(own.sum(axis=0) - own) if n > 1 else np.repeat(_unit(own.mean(axis=0))[None], n, axis=0)
    return (own * centre).sum(axis=1)


def pair_separation(own: np.ndarray, other_class: np.ndarray, scale: float) -> float:
    """Mean over a class's prompt embeddings of the two-class softmax probability of their own class.

    Each prompt is scored like an image against its own class (the mean of the class's *other* prompts,
    when it has several, so a prompt does not vote for itself) and against the other class's embedding,
    at the model's own temperature: sigmoid(scale · (cos(p, own) − cos(p, other))). The logit bias
    cancels between two classes. 0.5: the model cannot tell them apart; 1: always.
    """
    own = _unit(np.asarray(own, np.float64))
    gap = _own_similarity(own) - own @ _unit(np.asarray(other_class, np.float64))
    return float(np.mean(1.0 / (1.0 + np.exp(-scale * gap))))


class _Classes:
    """The spec's prompt embeddings by class, with what every block of the separation matrix needs."""

    def __init__(self, vectors: Sequence[np.ndarray]) -> None:
        self.vectors = [np.asarray(v) for v in vectors]
        self.sizes = np.array([len(v) for v in self.vectors], np.int64)
        self.own: list[np.ndarray] = []
        means = []
        for v in self.vectors:  # one class at a time: never all prompts in float64 at once
            unit = _unit(np.asarray(v, np.float64))
            self.own.append(_own_similarity(unit))
            means.append(_unit(unit.mean(axis=0)))
        self.means = np.stack(means)

    def blocks(self) -> list[tuple[int, int]]:
        """Consecutive class ranges of ≤ TILE_CLASSES classes and (unless one class has more) ≤ TILE_PROMPTS prompts."""
        out, start, prompts = [], 0, 0
        for c, size in enumerate(self.sizes.tolist()):
            if c > start and (prompts + size > TILE_PROMPTS or c - start >= TILE_CLASSES):
                out.append((start, c))
                start, prompts = c, 0
            prompts += size
        return out + ([(start, len(self.sizes))] if len(self.sizes) else [])

    def separation(self, rows: tuple[int, int], cols: tuple[int, int], scale: float) -> np.ndarray:
        """S[a, b] for classes a in `rows`, b in `cols`: `pair_separation` of a's prompts against class b."""
        a, b = rows
        units = _unit(np.concatenate([np.asarray(v, np.float64) for v in self.vectors[a:b]]))
        own = np.concatenate(self.own[a:b])
        gap = own[:, None] - units @ self.means[cols[0]:cols[1]].T
        starts = np.concatenate([[0], np.cumsum(self.sizes[a:b])[:-1]])
        return np.add.reduceat(1.0 / (1.0 + np.exp(-scale * gap)), starts, axis=0) / self.sizes[a:b, None]


def separation_matrix(vectors: list[np.ndarray], scale: float) -> np.ndarray:
    """`pair_separation` of every class against every other: S[a, b] for class a's prompts vs class b.

    K × K floats: for a small spec (tests, notebooks); `confusable_pairs` works block by block instead.
    """
    classes = _Classes(vectors)
    return classes.separation((0, len(vectors)), (0, len(vectors)), scale)


@dataclass(frozen=True)
class Confusable:
    """Confusable class pairs: how many in all, the worst `len(scores)` of them (worst first), per-class counts."""

    total: int
    first: np.ndarray  # (m,) class index, first < second
    second: np.ndarray  # (m,)
    scores: np.ndarray  # (m,) the weaker side's separation (0.5: a coin flip)
    cosines: np.ndarray  # (m,) cosine of the two class embeddings
    partners: np.ndarray  # (K,) confusable partners of each class
    worst: np.ndarray  # (K,) each class's worst partner (-1: none)
    worst_score: np.ndarray  # (K,)


class _Running:
    """The `keep` worst confusable pairs seen so far (all with keep=None), ties in class order."""

    def __init__(self, keep: int | None) -> None:
        self.keep = keep
        self.parts: list[np.ndarray] = []  # rows of (score, first, second, cosine)

    def offer(self, cand: np.ndarray) -> None:
        self.parts.append(cand)
        if self.keep is not None and sum(len(p) for p in self.parts) > 2 * self.keep + 4096:
            self.parts = [self.result()]

    def result(self) -> np.ndarray:
        rows = np.concatenate(self.parts) if self.parts else np.zeros((0, 4))
        if self.keep is not None and len(rows) > self.keep:
            cut = np.partition(rows[:, 0], self.keep - 1)[self.keep - 1]
            rows = rows[rows[:, 0] <= cut]
        rows = rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]
        return rows[: self.keep] if self.keep is not None else rows


def confusable_pairs(vectors: Sequence[np.ndarray], scale: float, keep: int | None = SHOWN) -> Confusable:
    """Every class pair under SEPARABLE counted, the `keep` worst kept (all with None), one block pair at a time.

    Memory is the prompt embeddings plus one tile of the separation matrix (TILE_PROMPTS × TILE_CLASSES)
    and the pairs kept: never the K × K matrix or a list of all pairs.
    """
    classes = _Classes(vectors)
    k = len(classes.sizes)
    partners = np.zeros(k, np.int64)
    worst, worst_score = np.full(k, -1, np.int64), np.full(k, np.inf)
    running, total = _Running(keep), 0
    blocks = classes.blocks()
    for i, rows in enumerate(blocks):
        for cols in blocks[i:]:
            forward = classes.separation(rows, cols, scale)
            pair = np.minimum(forward, (forward if rows == cols else classes.separation(cols, rows, scale)).T)
            bad = pair < SEPARABLE
            if rows == cols:
                bad &= np.triu(np.ones(bad.shape, bool), k=1)
            if not bad.any():
                continue
            total += int(bad.sum())
            partners[rows[0]:rows[1]] += bad.sum(axis=1)
            partners[cols[0]:cols[1]] += bad.sum(axis=0)
            masked = np.where(bad, pair, np.inf)
            _worse(worst, worst_score, rows, masked, cols[0])
            _worse(worst, worst_score, cols, masked.T, rows[0])
            a, b = np.nonzero(bad)
            cos = np.einsum("ij,ij->i", classes.means[a + rows[0]], classes.means[b + cols[0]])
            running.offer(np.stack([pair[a, b], a + rows[0], b + cols[0], cos], axis=1))
    kept = running.result()
    return Confusable(total, kept[:, 1].astype(np.int64), kept[:, 2].astype(np.int64), kept[:, 0], kept[:, 3],
                      partners, worst, np.where(worst >= 0, worst_score, np.nan))


def _worse(worst: np.ndarray, score: np.ndarray, rows: tuple[int, int], masked: np.ndarray, offset: int) -> None:
    """Update each row class's worst partner from one tile (first column wins ties: blocks come in class order)."""
    best = masked.argmin(axis=1)
    value = masked[np.arange(len(masked)), best]
    better = value < score[rows[0]:rows[1]]
    score[rows[0]:rows[1]][better] = value[better]
    worst[rows[0]:rows[1]][better] = best[better] + offset


def _duplicates(spec: LabelSpec, prompts: list[list[str]]) -> Iterator[LintWarning]:
    seen: dict[str, str] = {}
    for cls in spec.classes:
        for name in (cls.name, *cls.synonyms):
            key = normalise(name)
            if key in seen and seen[key] != cls.name:
                yield LintWarning("duplicate", f"'{name}' of class '{cls.name}' equals a name of class "
                                               f"'{seen[key]}' once case and spaces are ignored",
                                  classes=(seen[key], cls.name))
            seen.setdefault(key, cls.name)
    owner: dict[str, tuple[str, str]] = {}
    for cls, group in zip(spec.classes, prompts, strict=True):
        for prompt in group:
            key = normalise(prompt)
            if key in owner:
                first_class, first = owner[key]
                where = "twice in class" if first_class == cls.name else f"in classes '{first_class}' and"
                yield LintWarning("duplicate", f"prompt '{prompt}' appears {where} '{cls.name}' once case and "
                                               "spaces are ignored" + (
                                                   "" if first_class == cls.name else "; the classes share evidence"),
                                  classes=tuple(dict.fromkeys((first_class, cls.name))), prompts=(first, prompt))
            else:
                owner[key] = (cls.name, prompt)


def _too_long(spec: LabelSpec, prompts: list[list[str]], model: Any) -> Iterator[LintWarning]:
    owner: dict[str, str] = {}
    for cls, group in zip(spec.classes, prompts, strict=True):
        for prompt in group:
            owner.setdefault(prompt, cls.name)
    for prompt in model.too_long(list(owner)):
        yield LintWarning("too_long", f"prompt '{prompt}' of class '{owner[prompt]}' is longer than the model's "
                                      f"{model.context_length}-token context and will be cut",
                          classes=(owner[prompt],), prompts=(prompt,))


def _confusable_warnings(found: Confusable, names: Sequence[str]) -> Iterator[LintWarning]:
    columns = (found.first, found.second, found.scores, found.cosines)
    rows = (row for start in range(0, len(found.first), 8192)  # as Python numbers a slice at a time
            for row in zip(*(c[start : start + 8192].tolist() for c in columns), strict=True))
    for a, b, score, cos in rows:
        yield LintWarning(
            "confusable",
            f"classes '{names[a]}' and '{names[b]}' are too close for the model to separate: their own "
            f"prompts pick the right one of the two only {100 * score:.0f}% of the time (cosine of the class "
            f"embeddings {cos:.3f}); merge them, or reword one",
            classes=(names[a], names[b]))


def _first(warnings: Iterator[LintWarning], limit: int | None) -> tuple[list[LintWarning], int]:
    """The first `limit` warnings (all with None) and how many there were in all."""
    shown, total = [], 0
    for warning in warnings:
        total += 1
        if limit is None or len(shown) < limit:
            shown.append(warning)
    return shown, total


@dataclass(frozen=True)
class Lint:
    """A spec's warnings: each kind's first `limit` spelled out (confusable pairs worst first), and all counted."""

    found: tuple[LintWarning, ...]  # duplicates, then too_long
    pairs: Confusable | None = None  # the confusable pairs spelled out, as arrays (messages made when read)
    names: tuple[str, ...] = ()  # the spec's classes
    totals: Mapping[str, int] = field(default_factory=dict)  # per kind, spelled out or not
    confused: int = 0  # classes with at least one confusable partner
    busiest: tuple[str, ...] = ()  # e.g. "'cat' (12 partners, worst 'kitty' 49%)": those with the most partners

    @property
    def warnings(self) -> tuple[LintWarning, ...]:
        """Every warning spelled out: duplicates, then too_long, then confusable pairs worst first."""
        return tuple(self.each())

    def each(self) -> Iterator[LintWarning]:
        """`warnings`, one at a time (a confusable pair's message is made only when it is reached)."""
        yield from self.found
        if self.pairs is not None:
            yield from _confusable_warnings(self.pairs, self.names)

    def count(self, kind: str | None = None) -> int:
        """Warnings of `kind` (of every kind with None), spelled out or not."""
        return sum(n for k, n in self.totals.items() if kind in (None, k))

    def more(self, kind: str) -> int:
        """Warnings of `kind` counted but not spelled out."""
        spelled = (len(self.pairs.scores) if self.pairs is not None else 0) if kind == "confusable" else sum(
            w.kind == kind for w in self.found)
        return self.count(kind) - spelled

    def without(self, kind: str) -> Lint:
        """This lint with every warning of `kind` dropped (e.g. confusable pairs the examples separate)."""
        pairs = kind == "confusable"
        return Lint(tuple(w for w in self.found if w.kind != kind), None if pairs else self.pairs, self.names,
                    {k: n for k, n in self.totals.items() if k != kind}, 0 if pairs else self.confused,
                    () if pairs else self.busiest)

    def summary(self) -> str:
        """One line on the confusable pairs: how many, how many classes have one, which have the most."""
        return (f"{self.count('confusable'):,} confusable class pairs in all; {self.confused:,} of {len(self.names):,} "
                f"classes have at least one; most partners: {', '.join(self.busiest) or 'none'}")


def lint_spec(spec: LabelSpec, model: Any, encode: Callable[[Sequence[str]], np.ndarray]) -> list[LintWarning]:
    """Every warning for a spec, for a small one: normalised duplicates, over-long prompts, confusable pairs.

    `model` needs `too_long(prompts)`, `context_length` and `logit_scale` (a ZeroShotModel has them);
    `encode` turns prompts into unit embeddings (e.g. the run's cached text encoder).
    """
    return list(lint(spec, model, encode, limit=None).warnings)


def lint(spec: LabelSpec, model: Any, encode: Callable[[Sequence[str]], np.ndarray],
         limit: int | None = SHOWN) -> Lint:
    """A spec's warnings, at most `limit` of each kind spelled out (None: all), the rest counted.

    Bounded for any spec size: the confusable pairs are found one block of the separation matrix at a
    time (`confusable_pairs`), keeping only the `limit` worst (with None, all of them as arrays, 32 bytes
    a pair: their messages are made one at a time by `Lint.each`).
    """
    prompts = [spec.prompts_for(c) for c in spec.classes]
    duplicates, n_duplicates = _first(_duplicates(spec, prompts), limit)
    too_long, n_too_long = _first(_too_long(spec, prompts, model), limit)
    embeddings = np.asarray(encode([p for group in prompts for p in group]))
    bounds = np.cumsum([0] + [len(g) for g in prompts])
    vectors = [embeddings[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    found = confusable_pairs(vectors, float(model.logit_scale), limit)
    names = spec.class_names
    order = np.argsort(-found.partners, kind="stable")[:BUSIEST]
    busiest = tuple(f"'{names[c]}' ({found.partners[c]:,} partners, worst '{names[found.worst[c]]}' "
                    f"{100 * found.worst_score[c]:.0f}%)" for c in order.tolist() if found.partners[c])
    return Lint(tuple(duplicates + too_long), found, tuple(names),
                {"duplicate": n_duplicates, "too_long": n_too_long, "confusable": found.total},
                int((found.partners > 0).sum()), busiest)
