"""The audit's only use of the runner's stages: image embeddings from the cache (encoding what it lacks), texts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autolabel.core.progress import Reporter
from autolabel.embedding.cache import EmbeddingCache
from autolabel.embedding.stages import Embed, Prepare, embedding_spaces, text_encoder
from autolabel.labelling.engines.local import default_workers, prepared_batches
from autolabel.labelling.sources import ImageRecord


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
    records = [ImageRecord(path=loc, location=loc, row=i) for i, loc in enumerate(locations)]
    vectors: list[np.ndarray | None] = []
    digests: list[str | None] = []
    errors: list[str | None] = []
    encoded = 0
    prepare, embed = Prepare(model.preprocessing, draft, cache, image_space), Embed(model, cache, image_space)
    on_cpu = str(getattr(model, "device", "cpu")).startswith("cpu")
    reporter.start(len(records), "embedding")
    started = time.perf_counter()
    try:
        for items in prepared_batches(records, prepare, batch_size, workers or default_workers(on_cpu)):
            encoded += embed(items)
            for item in items:
                vectors.append(item.embedding)
                digests.append(item.digest)
                errors.append(item.error)
            reporter.advance(len(items), len(vectors) / max(time.perf_counter() - started, 1e-9))
    finally:
        reporter.stop()
    ok = np.array([v is not None for v in vectors], dtype=bool)
    dim = next((len(v) for v in vectors if v is not None), 1)
    matrix = np.zeros((len(vectors), dim), np.float32)
    for row in np.flatnonzero(ok):
        matrix[row] = vectors[row]
    return Embedded(matrix, ok, tuple(digests), tuple(errors), encoded)
