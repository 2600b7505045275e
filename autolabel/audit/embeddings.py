"""The audit's only use of the runner's stages: image embeddings from the cache (encoding what it lacks), texts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autolabel.cache import EmbeddingCache
from autolabel.pipeline import default_workers, embed, embedding_spaces, prepare, prepared_batches, text_encoder
from autolabel.progress import Reporter
from autolabel.sources import ImageRecord


@dataclass(frozen=True)
class Embedded:
    """Image embeddings of a list of locations: rows in input order, zeros where the image failed."""

    vectors: np.ndarray  # (n, dim) float32, unit rows where ok
    ok: np.ndarray  # (n,) bool
    digests: tuple[str | None, ...]  # content hashes (exact duplicates share one)
    errors: tuple[str | None, ...]
    encoded: int  # how many the cache lacked


def cached_text_encoder(model: Any, cache: EmbeddingCache) -> Callable[[Sequence[str]], np.ndarray]:
    """The model's text encoder behind the cache (prompts seen before are not encoded again)."""
    return text_encoder(model, cache, embedding_spaces(model, True)[1])


def cached_embeddings(locations: Sequence[str], model: Any, cache: EmbeddingCache, draft: bool,
                      reporter: Reporter, batch_size: int = 32, workers: int = 0) -> Embedded:
    """Embeddings of the images: from the cache, the model encoding (and caching) only what it lacks."""
    image_space = embedding_spaces(model, draft)[0]
    records = [ImageRecord(path=loc, location=loc) for loc in locations]
    vectors: list[np.ndarray | None] = []
    digests: list[str | None] = []
    errors: list[str | None] = []
    encoded = 0
    job = lambda r: prepare(r, model.preprocessing, draft, cache, image_space)  # noqa: E731
    reporter.start(len(records), "embedding")
    try:
        for items in prepared_batches(records, job, batch_size, workers or default_workers()):
            encoded += embed(items, model, cache, image_space)
            for item in items:
                vectors.append(item.embedding)
                digests.append(item.digest)
                errors.append(item.error)
            reporter.advance(len(items), 0.0)
    finally:
        reporter.stop()
    ok = np.array([v is not None for v in vectors], dtype=bool)
    dim = next((len(v) for v in vectors if v is not None), 1)
    matrix = np.zeros((len(vectors), dim), np.float32)
    for row in np.flatnonzero(ok):
        matrix[row] = vectors[row]
    return Embedded(matrix, ok, tuple(digests), tuple(errors), encoded)
