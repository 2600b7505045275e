"""The run: wires sources → decode (parallel workers) → model → classify → writer, in input order."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from autolabel import __version__, storage
from autolabel.cache import EmbeddingCache, content_hash, default_cache_dir
from autolabel.classify import Classifier, Prediction
from autolabel.decode import DecodeError, ModelInputs, Preprocessing, open_image, read_bytes, stack
from autolabel.errors import TooManyErrors, UsageError
from autolabel.progress import Reporter
from autolabel.sources import ImageRecord, open_source
from autolabel.spec import LabelSpec, load_spec
from autolabel.writers import OUTPUT_SCHEMA, TableWriter, full_schema, output_format

RESULT_COLUMNS = tuple(OUTPUT_SCHEMA.names[1:])  # everything after `path`


@dataclass(frozen=True)
class RunConfig:
    """Everything `autolabel run` needs."""

    source: str
    labels: str
    out: str
    model: str | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 32
    workers: int = 0  # 0: one per CPU core, at most 32
    top_k: int = 3
    threshold: float | None = None
    max_errors: int | None = None
    summary_json: str | None = None
    path_column: str | None = None
    quiet: bool = False
    draft: bool = True
    cache_dir: str | None = None
    no_cache: bool = False
    engine: str = "local"  # or "ray"
    ray_address: str | None = None
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0


@dataclass
class RunResult:
    """What a finished run wrote and counted."""

    out: Path
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Item:
    """One record on its way through the run: model inputs, or a cached embedding, or an error."""

    record: ImageRecord
    inputs: ModelInputs | None = None
    embedding: np.ndarray | None = None
    error: str | None = None
    digest: str | None = None  # content hash, when the cache is on
    file_key: tuple[str, int, int] | None = None  # (absolute path, size, mtime_ns) for the cache's file index
    cached: bool = False


def default_workers() -> int:
    """Decode threads: one per available core, at most 32 (a GPU eats thousands of images a second)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(32, cores))


def _cached(record: ImageRecord, cache: EmbeddingCache, space: str) -> tuple[Item | None, tuple | None]:
    """A hit through the file index (no read at all), and the file's (path, size, mtime) key."""
    if storage.is_url(record.location):
        return None, None  # objects are found by content hash only
    location = os.path.abspath(record.location)
    try:
        st = os.stat(location)
    except OSError:
        return None, None  # read_bytes reports it properly
    file_key = (location, st.st_size, st.st_mtime_ns)
    digest = cache.known_hash(*file_key)
    vec = cache.get_image(digest, space) if digest else None
    return (Item(record, embedding=vec, digest=digest, cached=True) if vec is not None else None), file_key


def prepare(
    record: ImageRecord,
    preprocessing: Preprocessing,
    draft: bool = True,
    cache: EmbeddingCache | None = None,
    space: str = "",
) -> Item:
    """Worker job: the cached embedding if the cache has this content, else model inputs, else the error."""
    if record.error:
        return Item(record, error=record.error)
    try:
        digest = file_key = None
        if cache is not None:
            hit, file_key = _cached(record, cache, space)
            if hit is not None:
                return hit
        data = read_bytes(record.location)
        if cache is not None:
            digest = content_hash(data)
            vec = cache.get_image(digest, space)
            if vec is not None:  # same bytes seen under another name or date
                return Item(record, embedding=vec, digest=digest, file_key=file_key, cached=True)
        image = open_image(data, 2 * preprocessing.input_size if draft else None)
        return Item(record, inputs=preprocessing(image), digest=digest, file_key=file_key)
    except DecodeError as exc:
        return Item(record, error=str(exc))
    except Exception as exc:  # a decoder bug must not stop a run of millions
        return Item(record, error=f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")


def prepared_batches(
    records: Iterable[ImageRecord],
    job: Callable[[ImageRecord], Item],
    batch_size: int,
    workers: int,
    prefetch: int = 2,
) -> Iterator[list[Item]]:
    """Input-ordered batches, prepared by a thread pool that works `prefetch` batches ahead of the consumer."""
    it = iter(records)
    pending: deque[list[Future[Item]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autolabel-decode") as pool:

        def submit() -> None:
            chunk = list(islice(it, batch_size))
            if chunk:
                pending.append([pool.submit(job, r) for r in chunk])

        for _ in range(prefetch + 1):
            submit()
        try:
            while pending:
                chunk = pending.popleft()
                submit()
                yield [f.result() for f in chunk]
        finally:
            for chunk in pending:
                for f in chunk:
                    f.cancel()


def embed(items: list[Item], model: Any, cache: EmbeddingCache | None, space: str) -> int:
    """Fill in the embeddings the cache did not have (one model call) and store them; returns how many."""
    todo = [it for it in items if it.inputs is not None]
    if todo:
        vectors = np.asarray(model.encode_images(stack([it.inputs for it in todo])))  # type: ignore[misc]
        for it, vec in zip(todo, vectors, strict=True):
            it.embedding, it.inputs = vec, None
    if cache is not None:
        new = [(it.digest, it.embedding) for it in todo if it.digest]
        files = [(*it.file_key, it.digest) for it in items if it.file_key and it.digest and it.embedding is not None]
        if new or files:
            cache.put_images(space, new, files)  # type: ignore[arg-type]
        cache.touch_images(space, [it.digest for it in items if it.cached and it.digest])  # type: ignore[misc]
    return len(todo)


def local_batches(
    records: Iterable[ImageRecord],
    model: Any,
    classifier: Classifier,
    cache: EmbeddingCache | None,
    space: str,
    config: RunConfig,
    tally: Tally,
) -> Iterator[tuple[list[Item], dict[int, Prediction]]]:
    """This machine's engine: decode threads feeding batched model calls; yields each batch's predictions."""
    job = lambda r: prepare(r, model.preprocessing, config.draft, cache, space)  # noqa: E731
    for items in prepared_batches(records, job, config.batch_size, config.workers or default_workers()):
        tally.encoded += embed(items, model, cache, space)
        ok = [i for i, it in enumerate(items) if it.embedding is not None]
        predictions: dict[int, Prediction] = {}
        if ok:
            vectors = np.stack([items[i].embedding for i in ok])  # type: ignore[misc]
            predictions = dict(zip(ok, classifier.classify(vectors), strict=True))
        yield items, predictions


def text_encoder(model: Any, cache: EmbeddingCache | None, space: str) -> Callable[[Sequence[str]], np.ndarray]:
    """The model's text encoder behind the cache: only prompts never seen with this model are encoded."""

    def encode(prompts: Sequence[str]) -> np.ndarray:
        known = cache.get_texts(space, prompts) if cache is not None else {}
        missing = [p for p in dict.fromkeys(prompts) if p not in known]
        if missing:
            fresh = dict(zip(missing, np.asarray(model.encode_text(missing)), strict=True))
            if cache is not None:
                cache.put_texts(space, fresh)
            known.update(fresh)
        return np.stack([known[p] for p in prompts])

    return encode


def prediction_row(pred: Prediction | None, error: str | None) -> dict[str, Any]:
    """The contract's result columns for one image (nulls and empty lists on error)."""
    return {
        "label": pred.label if pred else None,
        "confidence": pred.confidence if pred else None,
        "margin": pred.margin if pred else None,
        "status": pred.status if pred else "error",
        "top_labels": pred.top_labels if pred else [],
        "top_scores": pred.top_scores if pred else [],
        "error": None if pred else error,
    }


def prediction_columns(items: list[Item], predictions: dict[int, Prediction], extra_names: list[str]) -> dict:
    """Rows (in batch order) as output columns, then the pass-through columns."""
    cols: dict[str, list[Any]] = {name: [] for name in ("path", *RESULT_COLUMNS, *extra_names)}
    for i, item in enumerate(items):
        cols["path"].append(item.record.path)
        for name, value in prediction_row(predictions.get(i), item.error).items():
            cols[name].append(value)
        for name, value in zip(extra_names, item.record.extra, strict=True):
            cols[name].append(value)
    return cols


class Tally:
    """Counts per class and status, for the summary and the metadata."""

    def __init__(self, class_names: Iterable[str]) -> None:
        self.classes = {name: {"images": 0, "accepted": 0, "review": 0} for name in class_names}
        self.status = {"accepted": 0, "review": 0, "error": 0}
        self.images = 0
        self.encoded = 0
        self.actors: set[str] = set()  # Ray actors that did model work

    def add(self, cols: dict[str, list[Any]]) -> None:
        """Count a written batch."""
        for label, status in zip(cols["label"], cols["status"], strict=True):
            self.images += 1
            self.status[status] += 1
            if label is not None:
                self.classes[label]["images"] += 1
                self.classes[label][status] += 1

    def summary(self, seconds: float) -> dict[str, Any]:
        """The summary dict (also written by --summary-json)."""
        return {
            "images": self.images,
            "status": dict(self.status),
            "classes": {k: dict(v) for k, v in self.classes.items()},
            "encoded": self.encoded,
            "cached": self.images - self.status["error"] - self.encoded,
            "seconds": round(seconds, 3),
            "images_per_second": round(self.images / seconds, 3) if seconds > 0 else 0.0,
            **({"ray": {"actors_used": len(self.actors)}} if self.actors else {}),
        }


def run_metadata(spec: LabelSpec, classifier: Classifier, model_info: dict[str, Any], config: RunConfig) -> dict:
    """Everything needed to interpret (and reproduce) the output, stored in the Parquet schema metadata."""
    return {
        "tool": "autolabel",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": config.source,
        "model": model_info,
        "spec": dict(spec.raw),
        "spec_path": spec.source,
        "classes": list(spec.class_names),
        "prompts": {c.name: spec.prompts_for(c) for c in spec.classes},
        "threshold": spec.threshold,
        "thresholds": dict(zip(spec.class_names, classifier.thresholds.tolist(), strict=True)),
        "min_margin": spec.min_margin,
        "top_k": classifier.top_k,
    }


def _check_config(config: RunConfig) -> None:
    output_format(config.out)
    if config.engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, got {config.engine}")
    if config.actors < 1 or config.cpus_per_actor <= 0 or config.gpus_per_actor < 0:
        raise UsageError("--actors must be ≥ 1, --cpus-per-actor > 0 and --gpus-per-actor ≥ 0")
    if config.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {config.batch_size}")
    if config.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {config.top_k}")
    if config.workers < 0:
        raise UsageError(f"--workers must be 0 (auto) or more, got {config.workers}")
    if config.max_errors is not None and config.max_errors < 0:
        raise UsageError(f"--max-errors must be 0 or more, got {config.max_errors}")


def embedding_spaces(model: Any, draft: bool) -> tuple[str, str]:
    """Cache namespaces: (image, text). Images also depend on the preprocessing and on draft decoding."""
    base = f"{model.fingerprint}:{str(model.dtype).replace('torch.', '')}"
    return f"{base}:{model.preprocessing.fingerprint()}:{'draft' if draft else 'full'}", f"{base}:text"


def run(
    config: RunConfig,
    *,
    stdin: TextIO | None = None,
    reporter: Reporter | None = None,
    model: Any = None,
) -> RunResult:
    """Label every image of config.source and write config.out; returns the summary.

    `model` may be passed in (a loaded ZeroShotModel, or a fake with the same methods) to skip loading.
    With the cache on, every embedding is stored as soon as it is computed, so an interrupted run
    re-run with the same arguments computes nothing twice.
    """
    from autolabel.model import DEFAULT_MODEL, ZeroShotModel

    reporter = reporter or Reporter(quiet=config.quiet)
    _check_config(config)
    if config.engine == "ray":
        from autolabel.ray_engine import preflight

        preflight(config)  # fail fast, before any model is loaded
    spec = load_spec(config.labels).with_threshold(config.threshold)
    source = open_source(config.source, config.path_column, stdin)
    if model is None:
        name = config.model or spec.model_location() or DEFAULT_MODEL
        reporter.info(f"loading model {name}")
        model = ZeroShotModel.load(name, device=config.device, precision=config.precision)
    cache = None if config.no_cache else EmbeddingCache(config.cache_dir or default_cache_dir(), warn=reporter.warn)
    image_space, text_space = embedding_spaces(model, config.draft)
    all_prompts = [p for c in spec.classes for p in spec.prompts_for(c)]
    for prompt in model.too_long(all_prompts):
        reporter.warn(f"prompt longer than the model's {model.context_length}-token context, truncated: {prompt!r}")
    classifier = Classifier.build(
        spec, text_encoder(model, cache, text_space), model.logit_scale, model.logit_bias, config.top_k
    )
    schema = full_schema(source.extra_schema)
    extra_names = schema.names[len(schema.names) - len(source.extra_schema) :]
    tally = Tally(spec.class_names)
    writer = TableWriter(config.out, schema)
    started = time.perf_counter()
    reporter.start(source.count)
    try:
        if config.engine == "ray":
            from autolabel.ray_engine import ray_batches

            batches = ray_batches(list(source.records), model, classifier, config, tally)
        else:
            batches = local_batches(source.records, model, classifier, cache, image_space, config, tally)
        for items, predictions in batches:
            cols = prediction_columns(items, predictions, extra_names)
            writer.write(cols)
            tally.add(cols)
            for item in items:
                if item.error is not None:
                    reporter.skip(item.record.path or "<empty path>", item.error)
            reporter.advance(len(items), tally.images / max(time.perf_counter() - started, 1e-9))
        seconds = time.perf_counter() - started
        summary = tally.summary(seconds)
        summary["model"] = model.describe()
        meta = run_metadata(spec, classifier, summary["model"], config)
        meta["counts"] = {"images": summary["images"], "status": summary["status"], "classes": summary["classes"]}
        meta["timings"] = {"seconds": summary["seconds"], "images_per_second": summary["images_per_second"]}
        out = writer.commit(meta)
    except BaseException:
        writer.abort()
        raise
    finally:
        reporter.stop()
        if cache is not None:
            cache.close()
    summary.update(
        out=str(out), classes_order=list(spec.class_names), threshold=spec.threshold,
        thresholds=meta["thresholds"], min_margin=spec.min_margin,
    )
    if config.summary_json:
        Path(config.summary_json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    reporter.summary(summary, str(out))
    errors = summary["status"]["error"]
    if config.max_errors is not None and errors > config.max_errors:
        raise TooManyErrors(f"{errors} images failed, more than --max-errors {config.max_errors}; output kept in {out}")
    return RunResult(out=out, summary=summary)
