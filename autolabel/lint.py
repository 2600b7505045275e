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


def pair_separation(own: np.ndarray, other_class: np.ndarray, scale: float) -> float:
    """Mean over a class's prompt embeddings of the two-class softmax probability of their own class.

    Each prompt is scored like an image against its own class (the mean of the class's *other* prompts,
    when it has several, so a prompt does not vote for itself) and against the other class's embedding,
    at the model's own temperature: sigmoid(scale · (cos(p, own) − cos(p, other))). The logit bias
    cancels between two classes. 0.5: the model cannot tell them apart; 1: always.
    """
    own = _unit(np.asarray(own, np.float64))
    n = len(own)
    centre = _unit(own.sum(axis=0) - own) if n > 1 else np.repeat(_unit(own.mean(axis=0))[None], n, axis=0)
    gap = (own * centre).sum(axis=1) - own @ _unit(np.asarray(other_class, np.float64))
    return float(np.mean(1.0 / (1.0 + np.exp(-scale * gap))))


def _confusable(spec: LabelSpec, vectors: list[np.ndarray], scale: float) -> list[LintWarning]:
    means = [_unit(np.asarray(v, np.float64).mean(axis=0)) for v in vectors]
    out = []
    names = spec.class_names
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            score = min(pair_separation(vectors[a], means[b], scale), pair_separation(vectors[b], means[a], scale))
            if score < SEPARABLE:
                out.append(LintWarning(
                    "confusable",
                    f"classes '{names[a]}' and '{names[b]}' are too close for the model to separate: their own "
                    f"prompts pick the right one of the two only {100 * score:.0f}% of the time (cosine of the class "
                    f"embeddings {float(means[a] @ means[b]):.3f}); merge them, or reword one",
                    classes=(names[a], names[b])))
    return out


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


def lint_spec(spec: LabelSpec, model: Any, encode: Callable[[Sequence[str]], np.ndarray]) -> list[LintWarning]:
    """Every warning for a spec: normalised duplicates, prompts over the context, confusable class pairs.

    `model` needs `too_long(prompts)`, `context_length` and `logit_scale` (a ZeroShotModel has them);
    `encode` turns prompts into unit embeddings (e.g. the run's cached text encoder).
    """
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
    return warnings + _confusable(spec, vectors, float(model.logit_scale))
