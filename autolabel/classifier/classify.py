"""Prompt ensembling into a class matrix, probabilities, top-k, margin and the accept/review decision.

The logits of an image are `scale · cos(image, class) + bias` per class (the zero-shot classifier). Two
optional parts add to them: an `other` column for images that match none of the classes (its logit is
that of the best negative concept, see openset.py), and an adapter learnt from reviewed examples
(adapt.py). Single-label probabilities are the softmax over all columns; multi-label (`MultiLabel`) scores
every class on its own from the same logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from autolabel.classifier.adapt import Adapter, Fit, fit, fit_multi_label
from autolabel.core.spec import DEFAULT_REVIEW_BAND, LabelSpec
from autolabel.task import Task, resolve

TextEncoder = Callable[[Sequence[str]], np.ndarray]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def ensemble(prompt_embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """CLIP-paper ensembling: per class, L2-normalise each prompt, average, renormalise. → (classes, dim)."""
    return np.stack([_unit(_unit(np.asarray(e, np.float64)).mean(axis=0)) for e in prompt_embeddings])


@dataclass(frozen=True)
class Prediction:
    """The decision for one image."""

    label: str
    confidence: float
    margin: float
    status: str
    top_labels: list[str]
    top_scores: list[float]
    labels: list[str] | None = None  # multi-label only: every class over its threshold, best first


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))  # no overflow at either end


@dataclass(frozen=True)
class MultiLabel:
    """Multi-label decisions: an independent score in [0, 1] per class, every class over its threshold.

    Scores, from the same logits the softmax uses (so whatever adjusts them adjusts both):
    - models trained with a sigmoid per image–text pair (SigLIP, SigLIP 2): their own probability,
      sigmoid(logit_scale · cos + logit_bias);
    - CLIP, trained with a softmax over texts, where a logit is only meaningful next to other logits (adding a
      constant to all of an image's logits changes nothing it was trained on): the softmax probability class c
      would get if every other class had their average logit, sigmoid(l_c − mean_{j≠c} l_j − log(K − 1)).
      One strong class no longer pushes a second present class down (as the softmax does), while an
      image that fits no class better than the others gets 1/K for each.
    A class is uncertain when its log-odds lie within `band` of its threshold's; `margin` is the smallest such
    distance over the classes, and a row is accepted when no class is uncertain.
    """

    pairwise_sigmoid: bool
    band: float = DEFAULT_REVIEW_BAND

    def log_odds(self, logits: np.ndarray) -> np.ndarray:
        """Per-class log-odds (the score before its sigmoid), (images, classes)."""
        logits = np.asarray(logits, np.float64)
        if self.pairwise_sigmoid:
            return logits
        k = logits.shape[1]
        others = (logits.sum(axis=1, keepdims=True) - logits) / (k - 1)
        return logits - others - np.log(k - 1)

    def decide(self, log_odds: np.ndarray, class_names: Sequence[str], thresholds: np.ndarray,
               top_k: int) -> list[Prediction]:
        """Labels over threshold (best first), top-k, distance to the nearest threshold, accepted/review."""
        scores = _sigmoid(log_odds)
        cut = np.log(np.clip(thresholds, 1e-12, 1 - 1e-12)) - np.log1p(-np.clip(thresholds, 1e-12, 1 - 1e-12))
        distance = np.abs(log_odds - cut).min(axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")
        out = []
        for row, idx, margin in zip(scores, order, distance, strict=True):
            top = idx[:top_k]
            out.append(Prediction(
                label=class_names[idx[0]],
                confidence=float(row[idx[0]]),
                margin=float(margin),
                status="accepted" if margin >= self.band else "review",
                top_labels=[class_names[i] for i in top],
                top_scores=[float(row[i]) for i in top],
                labels=[class_names[i] for i in idx if row[i] >= thresholds[i]],
            ))
        return out

    def describe(self) -> dict[str, Any]:
        """How the run scored its classes, for the metadata and the summary."""
        return {"multi_label": True, "review_band": self.band,
                "scores": "model sigmoid" if self.pairwise_sigmoid else "mean-field softmax"}


@dataclass(frozen=True)
class Classifier:
    """Class matrix plus the model's temperature/bias and the spec's acceptance rules."""

    class_names: tuple[str, ...]
    matrix: np.ndarray  # (classes, dim), unit rows
    scale: float
    bias: float
    thresholds: np.ndarray  # per column: the classes, then `other`
    min_margin: float
    top_k: int
    other: str | None = None  # the open-set label, when the spec has one
    negatives: np.ndarray | None = None  # (n, dim) unit rows: concepts that are none of the classes
    adapter: Adapter | None = None
    multi_label: MultiLabel | None = None  # set: every class decided on its own
    guarded: bool = False  # the adapter decides only rows zero-shot sends to review (examples from hard rows only)

    @classmethod
    def build(
        cls, spec: LabelSpec, encode: TextEncoder, scale: float, bias: float = 0.0, top_k: int = 3,
        pairwise_sigmoid: bool = False,
    ) -> Classifier:
        """Encode every class's prompts once (one flat batch) and ensemble them.

        `pairwise_sigmoid`: the model was trained with a sigmoid per image–text pair (SigLIP); multi-label only.
        """
        prompts = [spec.prompts_for(c) for c in spec.classes]
        flat = [p for group in prompts for p in group]
        embeddings = np.asarray(encode(flat))
        bounds = np.cumsum([0] + [len(g) for g in prompts])
        matrix = ensemble([embeddings[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
        return cls(
            class_names=tuple(spec.class_names),
            matrix=matrix,
            scale=scale,
            bias=bias,
            thresholds=np.asarray(spec.thresholds(), np.float64),
            min_margin=spec.min_margin,
            top_k=max(1, min(top_k, len(spec.classes))),
            other=spec.other.name if spec.other is not None else None,
            multi_label=MultiLabel(pairwise_sigmoid, spec.review_band) if spec.multi_label else None,
        )

    @property
    def task(self) -> Task:
        """The task its decisions are for: one label per image, or every class on its own (`multi_label`)."""
        return resolve(self.multi_label is not None)

    def scoring(self) -> dict[str, Any]:
        """How a multi-label classifier scores its classes (MultiLabel.describe), for the run metadata; {} else."""
        return self.multi_label.describe() if self.multi_label is not None else {}

    @property
    def columns(self) -> tuple[str, ...]:
        """The labels the logits are over: the classes, then `other`."""
        return self.class_names + ((self.other,) if self.other is not None else ())

    def with_parts(self, negatives: np.ndarray | None = None, adapter: Adapter | None = None) -> Classifier:
        """A copy with negative concepts and/or an adapter."""
        return replace(self, negatives=negatives if negatives is not None else self.negatives,
                       adapter=adapter if adapter is not None else self.adapter)

    def zero_shot_logits(self, image_embeddings: np.ndarray) -> np.ndarray:
        """scale·cos + bias per class; `other` gets its best negative concept's logit (else the weakest class's)."""
        image = _unit(np.asarray(image_embeddings, np.float64))
        logits = self.scale * image @ self.matrix.T + self.bias
        if self.other is None:
            return logits
        if self.negatives is not None and len(self.negatives):
            other = self.scale * (image @ self.negatives.T).max(axis=1) + self.bias
        else:  # no zero-shot evidence for `other`: as weak as the weakest class
            other = logits.min(axis=1)
        return np.concatenate([logits, other[:, None]], axis=1)

    def logits(self, image_embeddings: np.ndarray) -> np.ndarray:
        """Zero-shot logits plus what the reviewed examples taught (the adapter), (images, columns)."""
        logits = self.zero_shot_logits(image_embeddings)
        if self.adapter is not None:
            logits = (logits + self.adapter.logits(image_embeddings)) / self.adapter.temperature
        return logits

    def probabilities(self, image_embeddings: np.ndarray) -> np.ndarray:
        """Softmax over the columns, (images, columns), float64."""
        logits = self.logits(image_embeddings)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def scores(self, image_embeddings: np.ndarray) -> np.ndarray:
        """Per column, the score decisions rest on: the softmax probability, or (multi-label) each class's own."""
        if self.multi_label is None:
            return self.probabilities(image_embeddings)
        return 1.0 / (1.0 + np.exp(-self.multi_label.log_odds(self.logits(image_embeddings))))

    def fit_examples(self, image_embeddings: np.ndarray, labels: Sequence[Sequence[str]]) -> Fit:
        """Fit an adapter to reviewed examples (`labels`: each example's names; multi-label: a multi-hot one)."""
        columns = list(self.columns)
        zero_shot = self.zero_shot_logits(image_embeddings)
        if self.multi_label is not None:
            label_sets = [[columns.index(name) for name in names] for names in labels]
            return fit_multi_label(image_embeddings, label_sets, zero_shot, self.scale, columns,
                                   self.multi_label.log_odds, self.thresholds)
        indices = np.asarray([columns.index(names[0]) for names in labels])
        other = len(self.class_names) if self.other is not None else None
        return fit(image_embeddings, indices, zero_shot, self.scale, columns, other)

    def decide(self, probabilities: np.ndarray) -> list[Prediction]:
        """Top-k (real classes only), margin and accepted/review status for each row of probabilities."""
        columns = self.columns
        n_classes = len(self.class_names)
        order = np.argsort(-probabilities, axis=1, kind="stable")
        out = []
        for row, idx in zip(probabilities, order, strict=True):
            best, second = row[idx[0]], row[idx[1]]
            margin = float(best - second)
            accepted = best >= self.thresholds[idx[0]] and margin >= self.min_margin
            top = [i for i in idx if i < n_classes][: self.top_k]
            out.append(
                Prediction(
                    label=columns[idx[0]],
                    confidence=float(best),
                    margin=margin,
                    status="accepted" if accepted else "review",
                    top_labels=[columns[i] for i in top],
                    top_scores=[float(row[i]) for i in top],
                )
            )
        return out

    def classify(self, image_embeddings: np.ndarray) -> list[Prediction]:
        """Embeddings → decisions (multi-label: independent per-class scores, see MultiLabel); `guarded`: rows
        zero-shot accepts keep its decision (an adapter fitted on hard rows only is no evidence about them)."""
        predictions = self._classify(image_embeddings)
        if self.adapter is None or not self.guarded:
            return predictions
        plain = replace(self, adapter=None)._classify(image_embeddings)
        return [z if z.status == "accepted" else p for p, z in zip(predictions, plain, strict=True)]

    def _classify(self, image_embeddings: np.ndarray) -> list[Prediction]:
        if self.multi_label is not None:
            return self.multi_label.decide(self.multi_label.log_odds(self.logits(image_embeddings)),
                                           self.class_names, self.thresholds, self.top_k)
        return self.decide(self.probabilities(image_embeddings))
