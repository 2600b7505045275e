"""The run: wires sources → decode (parallel workers) → model → classify → writer, in input order."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from autolabel import __version__
from autolabel.classify import Classifier, Prediction
from autolabel.decode import DecodeError, ModelInputs, Preprocessing, open_image, read_bytes, stack
from autolabel.errors import TooManyErrors, UsageError
from autolabel.progress import Reporter
from autolabel.sources import ImageRecord, open_source
from autolabel.spec import LabelSpec, load_spec
from autolabel.writers import TableWriter, full_schema, output_format

Decoded = ModelInputs | str  # model inputs, or the one-line reason the image failed


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
    workers: int = 0  # 0: one per CPU core, at most 8
    top_k: int = 3
    threshold: float | None = None
    max_errors: int | None = None
    summary_json: str | None = None
    path_column: str | None = None
    quiet: bool = False
    draft: bool = True


@dataclass
class RunResult:
    """What a finished run wrote and counted."""

    out: Path
    summary: dict[str, Any] = field(default_factory=dict)


def default_workers() -> int:
    """Decode threads: one per available core, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def decode_record(record: ImageRecord, preprocessing: Preprocessing, draft: bool = True) -> Decoded:
    """Read, decode and preprocess one image; any failure becomes its one-line reason."""
    if record.error:
        return record.error
    try:
        image = open_image(read_bytes(record.location), 2 * preprocessing.input_size if draft else None)
        return preprocessing(image)
    except DecodeError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must not stop a run of millions
        return f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def decoded_batches(
    records: Iterable[ImageRecord],
    decode: Callable[[ImageRecord], Decoded],
    batch_size: int,
    workers: int,
    prefetch: int = 2,
) -> Iterator[list[tuple[ImageRecord, Decoded]]]:
    """Input-ordered batches, decoded by a thread pool that works `prefetch` batches ahead of the consumer."""
    it = iter(records)
    pending: deque[list[tuple[ImageRecord, Future[Decoded]]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autolabel-decode") as pool:

        def submit() -> None:
            chunk = list(islice(it, batch_size))
            if chunk:
                pending.append([(r, pool.submit(decode, r)) for r in chunk])

        for _ in range(prefetch + 1):
            submit()
        try:
            while pending:
                chunk = pending.popleft()
                submit()
                yield [(r, f.result()) for r, f in chunk]
        finally:
            for chunk in pending:
                for _, f in chunk:
                    f.cancel()


def prediction_columns(
    batch: list[tuple[ImageRecord, Decoded]], predictions: dict[int, Prediction], extra_names: list[str]
) -> dict[str, list[Any]]:
    """Rows (in batch order) as output columns; error rows have nulls and empty lists."""
    cols: dict[str, list[Any]] = {
        name: [] for name in ("path", "label", "confidence", "margin", "status", "top_labels", "top_scores", "error")
    }
    for name in extra_names:
        cols[name] = []
    for i, (record, decoded) in enumerate(batch):
        pred = predictions.get(i)
        cols["path"].append(record.path)
        cols["label"].append(pred.label if pred else None)
        cols["confidence"].append(pred.confidence if pred else None)
        cols["margin"].append(pred.margin if pred else None)
        cols["status"].append(pred.status if pred else "error")
        cols["top_labels"].append(pred.top_labels if pred else [])
        cols["top_scores"].append(pred.top_scores if pred else [])
        cols["error"].append(None if pred else str(decoded))
        for name, value in zip(extra_names, record.extra, strict=True):
            cols[name].append(value)
    return cols


class Tally:
    """Counts per class and status, for the summary and the metadata."""

    def __init__(self, class_names: Iterable[str]) -> None:
        self.classes = {name: {"images": 0, "accepted": 0, "review": 0} for name in class_names}
        self.status = {"accepted": 0, "review": 0, "error": 0}
        self.images = 0

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
            "seconds": round(seconds, 3),
            "images_per_second": round(self.images / seconds, 3) if seconds > 0 else 0.0,
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
    if config.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {config.batch_size}")
    if config.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {config.top_k}")
    if config.workers < 0:
        raise UsageError(f"--workers must be 0 (auto) or more, got {config.workers}")
    if config.max_errors is not None and config.max_errors < 0:
        raise UsageError(f"--max-errors must be 0 or more, got {config.max_errors}")


def run(
    config: RunConfig,
    *,
    stdin: TextIO | None = None,
    reporter: Reporter | None = None,
    model: Any = None,
) -> RunResult:
    """Label every image of config.source and write config.out; returns the summary.

    `model` may be passed in (a loaded ZeroShotModel, or a fake with the same methods) to skip loading.
    """
    from autolabel.model import DEFAULT_MODEL, ZeroShotModel

    reporter = reporter or Reporter(quiet=config.quiet)
    _check_config(config)
    spec = load_spec(config.labels).with_threshold(config.threshold)
    source = open_source(config.source, config.path_column, stdin)
    if model is None:
        name = config.model or spec.model_location() or DEFAULT_MODEL
        reporter.info(f"loading model {name}")
        model = ZeroShotModel.load(name, device=config.device, precision=config.precision)
    all_prompts = [p for c in spec.classes for p in spec.prompts_for(c)]
    for prompt in model.too_long(all_prompts):
        reporter.warn(f"prompt longer than the model's {model.context_length}-token context, truncated: {prompt!r}")
    classifier = Classifier.build(
        spec, lambda p: model.encode_text(p).numpy(), model.logit_scale, model.logit_bias, config.top_k
    )
    schema = full_schema(source.extra_schema)
    extra_names = schema.names[len(schema.names) - len(source.extra_schema) :]
    workers = config.workers or default_workers()
    tally = Tally(spec.class_names)
    writer = TableWriter(config.out, schema)
    started = time.perf_counter()
    reporter.start(source.count)
    try:
        decode = lambda r: decode_record(r, model.preprocessing, config.draft)  # noqa: E731
        for batch in decoded_batches(source.records, decode, config.batch_size, workers):
            ok = [i for i, (_, d) in enumerate(batch) if not isinstance(d, str)]
            predictions: dict[int, Prediction] = {}
            if ok:
                embeddings = model.encode_images(stack([batch[i][1] for i in ok]))  # type: ignore[misc]
                predictions = dict(zip(ok, classifier.classify(np.asarray(embeddings)), strict=True))
            cols = prediction_columns(batch, predictions, extra_names)
            writer.write(cols)
            tally.add(cols)
            for record, decoded in batch:
                if isinstance(decoded, str):
                    reporter.skip(record.path or "<empty path>", decoded)
            reporter.advance(len(batch), tally.images / max(time.perf_counter() - started, 1e-9))
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
