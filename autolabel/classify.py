"""Prompt ensembling into a class matrix, probabilities, top-k, margin and the accept/review decision."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from autolabel.spec import LabelSpec

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


@dataclass(frozen=True)
class Classifier:
    """Class matrix plus the model's temperature/bias and the spec's acceptance rules."""

    class_names: tuple[str, ...]
    matrix: np.ndarray  # (classes, dim), unit rows
    scale: float
    bias: float
    thresholds: np.ndarray  # per class
    min_margin: float
    top_k: int

    @classmethod
    def build(
        cls, spec: LabelSpec, encode: TextEncoder, scale: float, bias: float = 0.0, top_k: int = 3
    ) -> Classifier:
        """Encode every class's prompts once (one flat batch) and ensemble them."""
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
        )

    def probabilities(self, image_embeddings: np.ndarray) -> np.ndarray:
        """Softmax over classes of scale·cos + bias, (images, classes), float64."""
        image = _unit(np.asarray(image_embeddings, np.float64))
        logits = self.scale * image @ self.matrix.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def decide(self, probabilities: np.ndarray) -> list[Prediction]:
        """Top-k, margin and accepted/review status for each row of probabilities."""
        order = np.argsort(-probabilities, axis=1, kind="stable")
        out = []
        for row, idx in zip(probabilities, order, strict=True):
            best, second = row[idx[0]], row[idx[1]]
            margin = float(best - second)
            accepted = best >= self.thresholds[idx[0]] and margin >= self.min_margin
            top = idx[: self.top_k]
            out.append(
                Prediction(
                    label=self.class_names[idx[0]],
                    confidence=float(best),
                    margin=margin,
                    status="accepted" if accepted else "review",
                    top_labels=[self.class_names[i] for i in top],
                    top_scores=[float(row[i]) for i in top],
                )
            )
        return out

    def classify(self, image_embeddings: np.ndarray) -> list[Prediction]:
        """Embeddings → decisions."""
        return self.decide(self.probabilities(image_embeddings))
