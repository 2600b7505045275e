"""The third stage: embeddings → the classifier's decisions → the contract's columns of a batch, and their counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from autolabel.classifier.classify import Classifier, Prediction
from autolabel.core.records import Counts, identity
from autolabel.embedding.stages import Item
from autolabel.table.schema import output_schema
from autolabel.task import SINGLE, Task

STATUSES = ("accepted", "review", "reviewed", "error")


def prediction_row(pred: Prediction | None, error: str | None, task: Task = SINGLE) -> dict[str, Any]:
    """The contract's result columns for one image (nulls and empty lists on error)."""
    return {
        "label": pred.label if pred else None,
        **task.extra({"labels": pred.labels if pred else []}),
        "confidence": pred.confidence if pred else None,
        "margin": pred.margin if pred else None,
        "status": pred.status if pred else "error",
        "top_labels": pred.top_labels if pred else [],
        "top_scores": pred.top_scores if pred else [],
        "error": None if pred else error,
    }


def reviewed_prediction(pred: Prediction, human: str | Sequence[str]) -> Prediction:
    """A prediction with a person's label(s) and status `reviewed`; confidence and top-k stay the model's.

    Multi-label (a list): `labels` is the person's list, ordered by the model's scores, and `label` its first
    (the model's best class when the person chose none).
    """
    if isinstance(human, str):
        return replace(pred, label=human, status="reviewed")
    rank = {name: i for i, name in enumerate(pred.top_labels)}
    labels = sorted(human, key=lambda name: rank.get(name, len(rank)))
    return replace(pred, label=labels[0] if labels else pred.label, labels=labels, status="reviewed")


@dataclass(frozen=True)
class Decide:
    """Stage 3: embeddings → decisions → the output columns of a batch (contract columns, then pass-through).

    An image people already labelled (it is among the reviewed examples) keeps their label with status
    `reviewed`; its confidence and top-k stay the model's.
    """

    classifier: Classifier
    extra_names: tuple[str, ...] = ()
    reviewed: Mapping[str, Any] = field(default_factory=dict)  # identity(location) → human label (multi: a list)

    def __call__(self, items: list[Item], encoded: int, actor: str | None = None) -> tuple[dict[str, list], Counts]:
        ok = [i for i, it in enumerate(items) if it.embedding is not None]
        predictions: dict[int, Prediction] = {}
        if ok:
            vectors = np.stack([items[i].embedding for i in ok])  # type: ignore[misc]
            predictions = dict(zip(ok, self.classifier.classify(vectors), strict=True))
        if self.reviewed:
            for i, pred in predictions.items():
                human = self.reviewed.get(identity(items[i].record.location))
                if human is not None:
                    predictions[i] = reviewed_prediction(pred, human)
        task = self.classifier.task
        columns: dict[str, list[Any]] = {name: [] for name in (*output_schema(task).names, *self.extra_names)}
        for i, item in enumerate(items):
            columns["path"].append(item.record.path)
            for name, value in prediction_row(predictions.get(i), item.error, task).items():
                columns[name].append(value)
            for name, value in zip(self.extra_names, item.record.extra, strict=True):
                columns[name].append(value)
        return columns, Counts.of(columns, encoded, [actor] if actor and ok else [])
