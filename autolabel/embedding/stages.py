"""The model-side stages: prepare (cache lookup or decode) and embed, the text encoder behind the cache, the Model."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from autolabel.core import storage
from autolabel.core.records import ImageRecord, printable_path
from autolabel.embedding.cache import EmbeddingCache, content_hash
from autolabel.embedding.decode import DecodeError, ModelInputs, Preprocessing, open_image, read_bytes, stack


class Model(Protocol):
    """What the stages need of a model: ZeroShotModel, or a fake with the same members in tests."""

    name: str
    fingerprint: str
    preprocessing: Preprocessing
    context_length: int
    device: Any  # str() gives "cpu", "cuda:0", "mps"

    @property
    def precision(self) -> str: ...  # e.g. "float32"

    @property
    def logit_scale(self) -> float: ...

    @property
    def logit_bias(self) -> float: ...

    def encode_text(self, prompts: Sequence[str]) -> Any: ...  # (n, dim) array-like, L2-normalised

    def encode_images(self, batch: ModelInputs) -> Any: ...  # (n, dim) array-like, L2-normalised

    def too_long(self, prompts: Sequence[str]) -> list[str]: ...

    def vocabulary(self) -> list[str]: ...  # tokenizer tokens in id order

    def describe(self) -> dict[str, Any]: ...


def pairwise_sigmoid(model: Model) -> bool:
    """Whether the model was trained with a sigmoid per image–text pair (SigLIP, SigLIP 2), not a softmax."""
    return str(model.describe().get("type", "")).startswith("siglip")


@dataclass
class Item:
    """One record on its way through a batch: model inputs, or a cached embedding, or an error."""

    record: ImageRecord
    inputs: ModelInputs | None = None
    embedding: np.ndarray | None = None
    error: str | None = None
    digest: str | None = None  # content hash, when the cache is on
    file_key: tuple[str, int, int] | None = None  # (absolute path, size, mtime_ns) for the cache's file index
    cached: bool = False


def embedding_spaces(model: Model, draft: bool) -> tuple[str, str]:
    """Cache namespaces: (image, text). Images also depend on the preprocessing and on draft decoding."""
    base = f"{model.fingerprint}:{model.precision}"
    return f"{base}:{model.preprocessing.fingerprint()}:{'draft' if draft else 'full'}", f"{base}:text"


@dataclass(frozen=True)
class Prepare:
    """Stage 1 (a decode worker's job): the cached embedding if the cache has this content, else model inputs."""

    preprocessing: Preprocessing
    draft: bool = True
    cache: EmbeddingCache | None = None
    space: str = ""
    read: Callable[[str], bytes] = read_bytes  # `autolabel serve` reads Label Studio's URLs with its credentials

    def __call__(self, record: ImageRecord) -> Item:
        if record.error:
            return Item(record, error=record.error)
        try:
            digest = file_key = None
            if self.cache is not None:
                hit, file_key = self._indexed(record)
                if hit is not None:
                    return hit
            data = self.read(record.location)
            if self.cache is not None:
                digest = content_hash(data)
                vec = self.cache.get_image(digest, self.space)
                if vec is not None:  # same bytes seen under another name or date
                    return Item(record, embedding=vec, digest=digest, file_key=file_key, cached=True)
            image = open_image(data, 2 * self.preprocessing.input_size if self.draft else None)
            return Item(record, inputs=self.preprocessing(image), digest=digest, file_key=file_key)
        except DecodeError as exc:
            return Item(record, error=str(exc))
        except Exception as exc:  # a decoder bug must not stop a run of millions
            return Item(record, error=f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")

    def _indexed(self, record: ImageRecord) -> tuple[Item | None, tuple[str, int, int] | None]:
        """A hit through the file index (no read at all), and the file's (path, size, mtime) key."""
        if storage.is_url(record.location) or self.cache is None:
            return None, None  # objects are found by content hash only
        location = os.path.abspath(record.location)
        try:
            st = os.stat(location)
        except OSError:
            return None, None  # read_bytes reports it properly
        file_key = (printable_path(location), st.st_size, st.st_mtime_ns)
        digest = self.cache.known_hash(*file_key)
        vec = self.cache.get_image(digest, self.space) if digest else None
        return (Item(record, embedding=vec, digest=digest, cached=True) if vec is not None else None), file_key


@dataclass(frozen=True)
class Embed:
    """Stage 2: one model call for the batch's images the cache did not have; stores what it computed."""

    model: Model
    cache: EmbeddingCache | None = None
    space: str = ""

    def __call__(self, items: list[Item]) -> int:
        """Fill in the missing embeddings in place; returns how many were encoded."""
        todo = [it for it in items if it.inputs is not None]
        if todo:
            vectors = np.asarray(self.model.encode_images(stack([it.inputs for it in todo])))  # type: ignore[misc]
            for it, vec in zip(todo, vectors, strict=True):
                it.embedding, it.inputs = vec, None
        if self.cache is not None:
            new = [(it.digest, it.embedding) for it in todo if it.digest]
            files = [(*it.file_key, it.digest) for it in items
                     if it.file_key and it.digest and it.embedding is not None]
            if new or files:
                self.cache.put_images(self.space, new, files)  # type: ignore[arg-type]
            self.cache.touch_images(self.space, [it.digest for it in items if it.cached and it.digest])  # type: ignore[misc]
        return len(todo)


def text_encoder(model: Model, cache: EmbeddingCache | None, space: str):  # -> TextEncoder
    """The model's text encoder behind the cache: only prompts never seen with this model are encoded, and
    one encoder never encodes a prompt twice (it remembers, with the cache off too)."""
    seen: dict[str, np.ndarray] = {}

    def encode(prompts: Sequence[str]) -> np.ndarray:
        wanted = [p for p in dict.fromkeys(prompts) if p not in seen]
        if wanted and cache is not None:
            seen.update(cache.get_texts(space, wanted))
        missing = [p for p in wanted if p not in seen]
        if missing:
            fresh = dict(zip(missing, np.asarray(model.encode_text(missing)), strict=True))
            if cache is not None:
                cache.put_texts(space, fresh)
            seen.update(fresh)
        return np.stack([seen[p] for p in prompts])

    return encode
