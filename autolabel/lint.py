"""Label-spec lint: classes the model cannot tell apart, prompts over its context, names equal after normalising."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autolabel.spec import LabelSpec

SEPARABLE = 0.9  # a pair passes when each class's prompts give their own class ≥ this probability on average


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


def separation_matrix(vectors: list[np.ndarray], scale: float) -> np.ndarray:
    """`pair_separation` of every class against every other at once: S[a, b] for class a's prompts vs class b.

    One pass over the prompts (prompts × classes), so a spec of thousands of classes is checked in seconds.
    """
    units = [_unit(np.asarray(v, np.float64)) for v in vectors]
    means = np.stack([_unit(u.mean(axis=0)) for u in units])
    rows = []
    for own in units:
        gap = _own_similarity(own)[:, None] - own @ means.T
        rows.append((1.0 / (1.0 + np.exp(-scale * gap))).mean(axis=0))
    return np.stack(rows)


def _confusable(spec: LabelSpec, vectors: list[np.ndarray], scale: float,
                limit: int | None = None) -> tuple[list[LintWarning], int]:
    """The confusable pairs, worst first (at most `limit` of them spelled out), and how many there are."""
    means = np.stack([_unit(np.asarray(v, np.float64).mean(axis=0)) for v in vectors])
    separation = separation_matrix(vectors, scale)
    worst = np.minimum(separation, separation.T)
    names = spec.class_names
    first, second = np.nonzero(np.triu(worst < SEPARABLE, k=1))
    order = np.argsort(worst[first, second], kind="stable")[:limit]
    out = []
    for a, b in zip(first[order], second[order], strict=True):
        score = float(worst[a, b])
        out.append(LintWarning(
            "confusable",
            f"classes '{names[a]}' and '{names[b]}' are too close for the model to separate: their own "
            f"prompts pick the right one of the two only {100 * score:.0f}% of the time (cosine of the class "
            f"embeddings {float(means[a] @ means[b]):.3f}); merge them, or reword one",
            classes=(names[a], names[b])))
    return out, len(first)


def _duplicates(spec: LabelSpec, prompts: list[list[str]]) -> list[LintWarning]:
    out = []
    seen: dict[str, str] = {}
    for cls in spec.classes:
        for name in (cls.name, *cls.synonyms):
            key = normalise(name)
            if key in seen and seen[key] != cls.name:
                out.append(LintWarning("duplicate", f"'{name}' of class '{cls.name}' equals a name of class "
                                                    f"'{seen[key]}' once case and spaces are ignored",
                                       classes=(seen[key], cls.name)))
            seen.setdefault(key, cls.name)
    owner: dict[str, tuple[str, str]] = {}
    for cls, group in zip(spec.classes, prompts, strict=True):
        for prompt in group:
            key = normalise(prompt)
            if key in owner:
                first_class, first = owner[key]
                where = "twice in class" if first_class == cls.name else f"in classes '{first_class}' and"
                out.append(LintWarning("duplicate", f"prompt '{prompt}' appears {where} '{cls.name}' once case and "
                                                    "spaces are ignored" + (
                                                        "" if first_class == cls.name else
                                                        "; the classes share evidence"),
                                       classes=tuple(dict.fromkeys((first_class, cls.name))), prompts=(first, prompt)))
            else:
                owner[key] = (cls.name, prompt)
    return out


@dataclass(frozen=True)
class Lint:
    """A spec's warnings, at most `limit` confusable pairs of them spelled out (worst first), and the rest counted."""

    warnings: tuple[LintWarning, ...]
    omitted: int = 0  # confusable pairs not spelled out


def lint_spec(spec: LabelSpec, model: Any, encode: Callable[[Sequence[str]], np.ndarray]) -> list[LintWarning]:
    """Every warning for a spec: normalised duplicates, prompts over the context, confusable class pairs.

    `model` needs `too_long(prompts)`, `context_length` and `logit_scale` (a ZeroShotModel has them);
    `encode` turns prompts into unit embeddings (e.g. the run's cached text encoder).
    """
    return list(lint(spec, model, encode).warnings)


def lint(spec: LabelSpec, model: Any, encode: Callable[[Sequence[str]], np.ndarray],
         limit: int | None = None) -> Lint:
    """`lint_spec`, spelling out at most `limit` confusable pairs (a run only shows a few)."""
    prompts = [spec.prompts_for(c) for c in spec.classes]
    flat = [p for group in prompts for p in group]
    warnings = _duplicates(spec, prompts)
    for prompt in model.too_long(list(dict.fromkeys(flat))):
        owner = next(c.name for c, group in zip(spec.classes, prompts, strict=True) if prompt in group)
        warnings.append(LintWarning("too_long", f"prompt '{prompt}' of class '{owner}' is longer than the model's "
                                                f"{model.context_length}-token context and will be cut",
                                    classes=(owner,), prompts=(prompt,)))
    embeddings = np.asarray(encode(flat))
    bounds = np.cumsum([0] + [len(g) for g in prompts])
    vectors = [embeddings[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    confusable, total = _confusable(spec, vectors, float(model.logit_scale), limit)
    return Lint(tuple(warnings + confusable), total - len(confusable))
