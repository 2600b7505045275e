"""A model session: the checkpoint known at once from its files, the model (torch, transformers) on first need, and
what every command shares with it, built once: the embedding cache, the decode setting, the stages, the text encoder."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autolabel.core import precision as precisions
from autolabel.core.config import CacheConfig, ModelConfig
from autolabel.core.errors import ModelError, UsageError
from autolabel.core.records import ImageRecord
from autolabel.embedding import checkpoint as checkpoints
from autolabel.embedding.batches import default_workers, embedded_batches
from autolabel.embedding.cache import EmbeddingCache, default_cache_dir
from autolabel.embedding.decode import ModelInputs, Preprocessing
from autolabel.embedding.stages import Embed, Prepare, embedding_spaces, text_encoder

if TYPE_CHECKING:
    from autolabel.core.progress import Reporter
    from autolabel.table.results import Results

_FACTS = ("type", "context_length", "logit_scale", "logit_bias")
_DELEGATED = ("model", "tokenizer", "dtype", "pads_to_max_length", "token_counts", "parity")


class _Fact:
    """A member of LazyModel that only the weights decide: from the cache's facts when an earlier run stored them,
    else from the loaded model."""

    def __init__(self, key: str, kind: Callable[[Any], Any]) -> None:
        self.key, self.kind = key, kind

    def __get__(self, model: LazyModel | None, owner: type) -> Any:
        return self if model is None else self.kind(model._fact(self.key))


class LazyModel:
    """A zero-shot model with the members the stages use (`stages.Model`), loaded only when first needed.

    Known without torch: the name, fingerprint and preprocessing (from the checkpoint's files), the device and
    precision (from the options and the CPU). What only the weights know (logit scale and bias, text context,
    prompt token counts, the vocabulary) comes from the embedding cache when an earlier run stored it.
    Anything else (encoding an image or a prompt the cache lacks) loads the model once, here; `get()` does it
    explicitly. So a re-run that the cache answers completely imports neither torch nor transformers.

    Thread-safe: decode workers and the main thread may ask at once; the model loads once.
    """

    def __init__(self, name: str, device: str = "auto", precision: str = "auto", cache: EmbeddingCache | None = None,
                 on_load: Callable[[str], None] | None = None, work_dir: str | Path | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        if precision not in precisions.CHOICES:
            raise UsageError(f"--precision: unknown '{precision}'; use {', '.join(precisions.CHOICES)}")
        precisions.require_runtime(precision)
        if precision == "int8" and device not in ("auto", "cpu"):
            raise UsageError(f"--precision int8 runs on the CPU (ONNX Runtime); use --device cpu, not {device}")
        self.name = name
        self.requested_device = "cpu" if precision == "int8" else device
        self.requested_precision = precision
        self.cache = cache
        self.on_load = on_load
        self.warn = warn  # e.g. that a damaged int8 export is made again
        self.work_dir = work_dir  # where an int8 export is kept (None: the cache's folder, else a temp one)
        self._lock = threading.RLock()
        self._model: Any = None
        self._checkpoint: checkpoints.Checkpoint | None = None
        self._preprocessing: Preprocessing | None = None
        self._device: Any = None
        self._facts: dict[str, Any] | None = None

    # --- known without the weights --------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """Whether the model itself has been loaded."""
        return self._model is not None

    @property
    def checkpoint(self) -> checkpoints.Checkpoint:
        """Where the model's files are (a folder, or the Hub id's snapshot in the HF cache), found once."""
        if self._checkpoint is None:
            self._checkpoint = checkpoints.locate(self.name)
        return self._checkpoint

    @property
    def fingerprint(self) -> str:
        """The weights' identity: a hash of a local folder's files, or the Hub snapshot's commit."""
        return self.checkpoint.fingerprint or self.get().fingerprint

    @property
    def preprocessing(self) -> Preprocessing:
        """The checkpoint's image preprocessing, read from its preprocessor_config.json."""
        if self._preprocessing is None:
            folder = self.checkpoint.folder
            if self._model is not None or folder is None:
                self._preprocessing = self.get().preprocessing
            else:
                self._preprocessing = Preprocessing.from_config(checkpoints.preprocessor_config(str(folder)),
                                                                f"{self.name}: preprocessor config")
        return self._preprocessing

    @property
    def device(self) -> Any:
        """Where the model runs: "cpu" when knowable without torch, else torch's choice (torch only, no model)."""
        if self._device is None:
            light = precisions.light_device(self.requested_device)
            if light is None:
                from autolabel.embedding.model import pick_device

                self._device = pick_device(self.requested_device)
            else:
                self._device = light
        return self._device

    @property
    def precision_choice(self) -> str:
        """The precision this run uses (fp32, fp16, bf16, int8): `auto` resolved for this device and CPU."""
        return precisions.resolve(self.requested_precision, str(self.device).split(":")[0])

    @property
    def precision(self) -> str:
        """The weights' dtype as a word, e.g. "float32"."""
        return precisions.NAMES[self.precision_choice]

    # --- known from the cache, else from the weights ----------------------------------------------------
    def _space(self) -> str:
        return f"{self.fingerprint}:{self.precision}"

    def _fact(self, key: str) -> Any:
        if self._model is None and self._facts is None and self.cache is not None:
            facts = self.cache.get_facts(self._space())
            self._facts = facts if facts is not None and all(k in facts for k in _FACTS) else None
        if self._model is None and self._facts is not None and key in self._facts:
            return self._facts[key]
        return self._model_facts().get(key)

    def _model_facts(self) -> dict[str, Any]:
        return facts_of(self.get())

    model_type = _Fact("type", str)  # clip, siglip, siglip2, …
    context_length = _Fact("context_length", int)  # the text tower's context, in tokens
    logit_scale = _Fact("logit_scale", float)  # exp(logit_scale): the temperature applied to cosine similarities
    logit_bias = _Fact("logit_bias", float)  # the model's logit bias (SigLIP), else 0

    def too_long(self, prompts: Sequence[str]) -> list[str]:
        """Prompts whose tokens exceed the model's text context (token counts cached per prompt)."""
        space = f"{self.fingerprint}:tokens"
        counts = {p: int(v[0]) for p, v in self.cache.get_texts(space, prompts).items()} if self.cache else {}
        missing = [p for p in dict.fromkeys(prompts) if p not in counts]
        if missing:
            fresh = dict(zip(missing, self.get().token_counts(missing), strict=True))
            if self.cache is not None:
                self.cache.put_texts(space, {p: np.array([n], np.float32) for p, n in fresh.items()})
            counts.update(fresh)
        limit = self.context_length
        return [p for p in prompts if counts[p] > limit]

    def vocabulary(self) -> list[str]:
        """The tokenizer's tokens in id order (cached with the model's facts once asked for)."""
        space = f"{self.fingerprint}:vocabulary"
        if self._model is None and self.cache is not None:
            found = self.cache.get_facts(space)
            if found is not None and isinstance(found.get("tokens"), list):
                return [str(t) for t in found["tokens"]]
        tokens = self.get().vocabulary()
        if self.cache is not None:
            self.cache.put_facts(space, {"tokens": tokens})
        return tokens

    def describe(self) -> dict[str, Any]:
        """Run-metadata view of the model (the loaded model's own, plus how the precision was chosen)."""
        return {
            **checkpoints.model_metadata(self),
            **({"int8": self._fact("int8")} if self.precision_choice == "int8" else {}),
            "precision_choice": precisions.explain(self.requested_precision, self.precision_choice,
                                                   str(self.device).split(":")[0]),
        }

    # --- the weights ------------------------------------------------------------------------------------
    def encode_text(self, prompts: Sequence[str]) -> Any:
        """L2-normalised embeddings of the prompts (loads the model)."""
        return self.get().encode_text(prompts)

    def encode_images(self, batch: ModelInputs) -> Any:
        """L2-normalised embeddings of a stacked batch of decoded images (loads the model)."""
        return self.get().encode_images(batch)

    def get(self) -> Any:
        """The loaded model (a ZeroShotModel, or its ONNX Runtime int8 twin), loading it the first time."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> Any:
        if self.checkpoint.folder is None and not checkpoints.hub_offline():
            checkpoints.check_hub_reachable(self.name)  # before torch's import: an offline machine fails at once
        if self.on_load is not None:
            self.on_load(self.name)
        from autolabel.embedding.model import ZeroShotModel

        choice = self.precision_choice
        base = ZeroShotModel.load(self.name, device=str(self.device), precision="fp32" if choice == "int8" else choice,
                                  checkpoint=self.checkpoint)
        if self._checkpoint is not None and self._checkpoint.fingerprint not in (None, base.fingerprint):
            raise ModelError(f"model '{self.name}' changed while loading; run again")
        model = base
        if choice == "int8":
            from autolabel.embedding.int8 import Int8Model

            model = Int8Model.build(base, self._export_dir(), self.warn)
        self._checkpoint = checkpoints.Checkpoint(self.name, self.checkpoint.folder, model.fingerprint,
                                                  self.checkpoint.from_hub)
        if self.cache is not None:
            self.cache.put_facts(f"{model.fingerprint}:{self.precision}", facts_of(model))
        return model

    def _export_dir(self) -> Path | None:
        if self.work_dir is not None:
            return Path(self.work_dir)
        return self.cache.folder / "onnx" if self.cache is not None else None

    def __getattr__(self, name: str) -> Any:
        # The loaded model's other members: asking for one loads it (only these, so a probe never does).
        if name in _DELEGATED:
            return getattr(self.get(), name)
        raise AttributeError(f"'LazyModel' object has no attribute '{name}'")


def facts_of(model: Any) -> dict[str, Any]:
    """What a loaded model's weights decide besides embeddings, as the cache keeps it (and int8's parity check)."""
    facts = {"type": model.model_type, "context_length": model.context_length,
             "logit_scale": model.logit_scale, "logit_bias": model.logit_bias}
    parity = getattr(model, "parity", None)
    return {**facts, "int8": parity} if isinstance(parity, dict) else facts


def model_name(option: str | None, spec_model: str | None) -> str:
    """--model, else the spec's `model:`, else the default model; a local folder as an absolute path, so that the
    table's metadata names it from wherever a later command (queue, audit) runs."""
    name = option or spec_model or checkpoints.DEFAULT_MODEL
    return os.path.abspath(name) if os.path.isdir(name) else name


def open_cache(config: CacheConfig, warn: Callable[[str], None] | None = None) -> EmbeddingCache | None:
    """The embedding cache the config names, opened (created if need be), or None with `no_cache`: the one place a
    cache is opened."""
    if config.no_cache:
        return None
    return EmbeddingCache(config.cache_dir or default_cache_dir(), warn=warn)


RECORDED_PRECISIONS = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}  # a table's model dtype → --precision


@dataclass(frozen=True)
class Embedded:
    """Image embeddings of a list of locations: rows in input order, zeros where the image failed."""

    vectors: np.ndarray  # (n, dim) float32, unit rows where ok
    ok: np.ndarray  # (n,) bool
    digests: tuple[str | None, ...]  # content hashes (exact duplicates share one)
    errors: tuple[str | None, ...]
    encoded: int  # how many the cache lacked


class Session:
    """One model with its embedding cache and decode setting: what `run`, `Labeler`, `audit`, `lint`, `queue` and
    `serve` each build once. The model loads lazily (see LazyModel); the cache spaces, the prepare and embed stages
    and the text encoder are built on first use, once."""

    def __init__(self, model: Any, cache: EmbeddingCache | None, draft: bool = True) -> None:
        self.model = model  # a LazyModel, a loaded ZeroShotModel, or a fake with the same members
        self.cache = cache
        self.draft = draft

    @classmethod
    def open(cls, model: ModelConfig, cache: CacheConfig, draft: bool = True, spec_model: str | None = None,
             warn: Callable[[str], None] | None = None, on_load: Callable[[str], None] | None = None) -> Session:
        """The session the configs describe: the cache opened (unless off), the model named by --model, else the
        spec's `model:`, else the default, not loaded yet."""
        store = open_cache(cache, warn)
        try:
            lazy = LazyModel(model_name(model.model, spec_model), model.device, model.precision, store, on_load,
                             warn=warn)
        except BaseException:
            if store is not None:
                store.close()
            raise
        return cls(lazy, store, draft)

    @classmethod
    def for_table(cls, results: Results, model: str | None, device: str, cache: CacheConfig,
                  reporter: Reporter) -> Session:
        """The session of the run that labelled a table (its model, or `model`, at its precision and decode setting),
        for the commands that embed a table's images (audit, queue); warns when the weights differ."""
        recorded = results.metadata.get("model") or {}
        spec_model = results.spec.model_location() if results.spec else None
        if not (model or recorded.get("id") or spec_model):
            raise UsageError(f"{results.path}: the table does not record its model; pass --model")
        config = ModelConfig(model or recorded.get("id"), device,
                             RECORDED_PRECISIONS.get(str(recorded.get("precision", "")), "auto"))
        session = cls.open(config, cache, bool(results.metadata.get("draft", True)), spec_model, reporter.warn,
                           on_load=lambda name: reporter.info(f"loading model {name}"))
        try:
            lazy = session.model
            if recorded.get("fingerprint") and recorded["fingerprint"] != lazy.fingerprint:
                reporter.warn(f"model {lazy.name} differs from the one that labelled {results.path.name} (fingerprint "
                              f"{lazy.fingerprint} vs {recorded['fingerprint']}); every image is embedded again")
        except BaseException:
            session.close()
            raise
        return session

    def sharing_model(self, cache: EmbeddingCache | None, draft: bool) -> Session:
        """A session with this one's model (loaded once) over another cache and decode setting: a run that
        `Labeler.label_to` starts keeps its own cache, as the CLI's does."""
        return Session(self.model, cache, draft)

    @cached_property
    def spaces(self) -> tuple[str, str]:
        """The cache namespaces (image, text) of this model, precision, preprocessing and decode setting."""
        return embedding_spaces(self.model, self.draft)

    @cached_property
    def encode(self) -> Callable[[Sequence[str]], np.ndarray]:
        """Prompts → embeddings through the cache (it remembers what it encoded)."""
        return text_encoder(self.model, self.cache, self.spaces[1])

    @cached_property
    def prepare(self) -> Prepare:
        """Stage 1: a record's cached embedding, else its model inputs (decoded as this session decodes)."""
        return Prepare(self.model.preprocessing, self.draft, self.cache, self.spaces[0])

    @cached_property
    def embed(self) -> Embed:
        """Stage 2: one model call for what a batch lacks, stored in the cache."""
        return Embed(self.model, self.cache, self.spaces[0])

    @property
    def on_cpu(self) -> bool:
        """Whether the model runs on the CPU (then fewer decode threads: the model needs the cores)."""
        return str(self.model.device).split(":")[0] == "cpu"

    def embed_images(self, locations: Sequence[str], reporter: Reporter, batch_size: int = 32,
                     workers: int = 0) -> Embedded:
        """Embeddings of the images: from the cache, the model encoding (and caching) only what it lacks."""
        records = [ImageRecord(path=loc, location=loc, row=i) for i, loc in enumerate(locations)]
        vectors: list[np.ndarray | None] = []
        digests: list[str | None] = []
        errors: list[str | None] = []
        encoded = 0
        reporter.start(len(records), "embedding")
        started = time.perf_counter()
        try:
            for items, fresh in embedded_batches(records, self.prepare, self.embed, batch_size,
                                                 workers or default_workers(self.on_cpu)):
                encoded += fresh
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

    def close(self) -> None:
        """Close the embedding cache (the model is freed with the object)."""
        if self.cache is not None:
            self.cache.close()
