"""The run: check everything checkable before the model loads, then compose stages, an engine and a sink."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa

from autolabel.classifier import openset
from autolabel.classifier.classify import Classifier
from autolabel.core import storage
from autolabel.core.config import RunConfig
from autolabel.core.errors import SourceError, TooManyErrors, UsageError
from autolabel.core.fileio import check_output_file, json_with, same_file, write_text
from autolabel.core.progress import Reporter
from autolabel.core.records import Counts, ImageRecord
from autolabel.core.spec import LabelSpec, load_spec
from autolabel.core.version import __version__
from autolabel.embedding.session import Session, open_cache
from autolabel.embedding.stages import Model, pairwise_sigmoid
from autolabel.labelling.decide import STATUSES, Decide
from autolabel.labelling.engines.base import Batch, Engine, Stages
from autolabel.labelling.output import FileSink, ShardSink, is_folder_output
from autolabel.labelling.sources import Source, open_source
from autolabel.learn.examples import SOFTENED, Example, Learned, collect, learn
from autolabel.table.schema import full_schema
from autolabel.task import task_for


@dataclass(frozen=True)
class Job:
    """What `plan` checked and opened before any model is loaded."""

    spec: LabelSpec
    source: Source
    records: Iterator[ImageRecord]
    sink: FileSink | ShardSink
    schema: pa.Schema
    session: Session  # the model (not loaded yet), the cache (local engine), the decode setting
    key: str  # what must match for a re-run to keep an earlier run's shards
    examples: tuple[Example, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    """What a finished run wrote and counted (`--summary-json` writes `to_dict()`)."""

    out: str
    images: int
    status: dict[str, int]
    classes: dict[str, dict[str, int]]
    encoded: int
    cached: int
    resumed: int
    seconds: float
    images_per_second: float
    model: dict[str, Any]
    classes_order: list[str]
    threshold: float
    thresholds: dict[str, float]
    min_margin: float
    learned: dict[str, Any] = field(default_factory=dict)
    ray_actors: int | None = None
    scoring: dict[str, Any] = field(default_factory=dict)  # Classifier.scoring(): multi-label only

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as `--summary-json` writes it."""
        data = asdict(self)
        actors = data.pop("ray_actors")
        return {**data.pop("scoring"), **data,
                **({"ray": {"actors_used": actors}} if actors is not None else {})}


@dataclass(frozen=True)
class RunResult:
    """Where the table went, and its summary."""

    out: str
    summary: RunSummary = field(repr=False)


def run(config: RunConfig, *, stdin: TextIO | None = None, reporter: Reporter | None = None,
        session: Session | None = None, spec: LabelSpec | None = None) -> RunResult:
    """Label every image of config.source and write config.output; an interrupted run re-run resumes.

    `session` (a Labeler's: its model, loaded once, over this run's cache; or one holding a loaded ZeroShotModel or
    a fake with the same members) and `spec` may be passed in, else they are built from config.
    """
    reporter = reporter or Reporter(quiet=config.quiet, verbose=config.verbose)
    job = plan(config, stdin, reporter, spec, session)
    model = job.session.model
    try:
        job.sink.check_model(model.describe())
        stages, learned = build_stages(job, config, reporter)
        meta = run_metadata(job, learned, model, config)
        engine = build_engine(config, job, stages, meta)
        counts, started = Counts(), time.perf_counter()
        start_progress(reporter, job.source)
        for batch in engine.batches(job.sink.pending(job.records)):
            job.sink.write(batch)
            counts += batch.counts
            report_batch(reporter, batch, counts, started)
        summary = summarize(job, counts, time.perf_counter() - started, model, learned)
        out = job.sink.commit({**meta, "counts": {"images": summary.images, "status": summary.status,
                                                  "classes": summary.classes},
                               "timings": {"seconds": summary.seconds,
                                           "images_per_second": summary.images_per_second}})
    except BaseException:
        job.sink.abort()
        raise
    finally:
        reporter.stop()
        job.session.close()
    return finish(config, job, summary, out, reporter)


def plan(config: RunConfig, stdin: TextIO | None = None, reporter: Reporter | None = None,
         spec: LabelSpec | None = None, session: Session | None = None) -> Job:
    """Everything that can fail without the model, checked up front: spec, SOURCE, outputs, cache, engine; the
    run's session (`session`'s model over this run's cache, else the one the configs describe)."""
    spec = (spec or load_spec(config.labels)).with_threshold(config.classify.threshold)
    source = open_source(config.source, config.path_column, stdin)
    out = config.output.out
    for given, what in ((config.labels, "the label spec"), (config.source, "SOURCE"),
                        *((e, "an --examples table") for e in config.examples)):
        if not storage.is_url(out) and same_file(out, given):
            raise UsageError(f"--out {out} is {what}; choose another output file so nothing you wrote is replaced")
    schema = full_schema(source.extra_schema, task_for(spec))
    examples = tuple(collect(spec, config.examples, config.examples_column,
                             reporter.warn if reporter else lambda message: None, source.images_root))
    settings = job_settings(spec, source, config, examples)
    key = _digest(settings)
    sink: FileSink | ShardSink = (ShardSink(out, schema, key, config.output.shard_size, config.output.overwrite,
                                            settings)
                                  if is_folder_output(out) else FileSink(out, schema, config.output.overwrite))
    if config.output.summary_json:
        summary = config.output.summary_json
        for folder, what in ((out if is_folder_output(out) else None, "--out"),
                             (config.model.model, "the model's folder"), (spec.model_location(), "the model's folder")):
            if folder and not storage.is_url(summary) and _inside(summary, folder):
                raise UsageError(f"--summary-json {summary}: is inside {what} ({folder}); write it elsewhere")
        check_output_file(summary, "--summary-json", (out, config.labels, config.source, *config.examples),
                          json_with("images", "status", "out"))
    if config.engine.engine == "ray":
        from autolabel.labelling.engines.ray import preflight

        preflight(config.engine)
    first, records = peek(source.records)
    if first is None:
        raise SourceError(f"{config.source}: no images found ({source.description}); image files end in "
                          ".jpg .jpeg .png .webp .bmp .gif .tif .tiff")
    sink.check()  # last: a folder --out is locked from here until commit or abort
    try:
        opened = run_session(config, spec, reporter, session)
    except BaseException:
        sink.abort()
        raise
    return Job(spec, source, records, sink, schema, opened, key, examples)


def peek(records: Iterable[ImageRecord]) -> tuple[ImageRecord | None, Iterator[ImageRecord]]:
    """The first record (None if there is none) and an iterator that still yields it."""
    it = iter(records)
    first = next(it, None)
    if first is None:
        return None, iter(())

    def chained() -> Iterator[ImageRecord]:
        yield first
        yield from it

    return first, chained()


def job_settings(spec: LabelSpec, source: Source, config: RunConfig,
                 examples: tuple[Example, ...] = ()) -> dict[str, str]:
    """A digest per setting that decides a row's content (the model's weights are checked once loaded)."""
    task = task_for(spec)
    settings = {
        "other": spec.other.name if spec.other else None, "examples": [(e.location, e.label) for e in examples],
        "prompts": {c.name: spec.prompts_for(c) for c in spec.classes}, "thresholds": spec.thresholds(),
        "min_margin": spec.min_margin, "top_k": config.classify.top_k_for(task.default_top_k(len(spec.classes))),
        "model": config.model.model or spec.model,
        "precision": config.model.precision, "draft": not config.decode.full_decode, "source": source.identity,
        "path_column": config.path_column, "shard_size": config.output.shard_size,
        **task.settings(spec),
    }
    return {name: _digest(value) for name, value in settings.items()}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_session(config: RunConfig, spec: LabelSpec, reporter: Reporter | None = None,
                given: Session | None = None) -> Session:
    """The run's session: its cache (the local engine's; Ray's workers use none), its decode setting, and the model of
    `given`, else the checkpoint --model, the spec's `model:` or the default names (loaded on the first cache miss)."""
    cache = config.cache if config.engine.engine == "local" else replace(config.cache, no_cache=True)
    warn = reporter.warn if reporter else None
    draft = not config.decode.full_decode
    if given is not None:
        return given.sharing_model(open_cache(cache, warn), draft)
    on_load = (lambda name: reporter.info(f"loading model {name}")) if reporter else None
    return Session.open(config.model, cache, draft, spec.model_location(), warn, on_load)


def build_stages(job: Job, config: RunConfig, reporter: Reporter) -> tuple[Stages, Learned]:
    """The run's stages (see `stages_for`); the spec's lint warnings are printed once, and what was learnt."""
    from autolabel.classifier.lint import lint

    found = lint(job.spec, job.session.model, job.session.encode)  # bounded: the worst pairs and a count
    extra_names = tuple(job.schema.names[len(job.schema.names) - len(job.source.extra_schema):])
    stages, learned = stages_for(job.spec, job.session, job.examples,
                                 top_k=config.classify.top_k_for(task_for(job.spec).default_top_k(len(job.spec.classes))),
                                 extra_names=extra_names, warn=reporter.warn)
    if learned.fit is not None and learned.fit.used:  # the examples separate what the prompts could not
        found = found.without("confusable")
    reporter.lint(found, job.spec.source)
    if learned.fit is not None:
        softened = learned.fit.used and learned.fit.temperature >= SOFTENED
        (reporter.warn if softened or learned.hard_only else reporter.info)(learned.summary_line())
    return stages, learned


def stages_for(spec: LabelSpec, session: Session, examples: Sequence[Example], *, top_k: int,
               extra_names: tuple[str, ...] = (),
               warn: Callable[[str], None] = lambda message: None) -> tuple[Stages, Learned]:
    """Encode the class prompts (through the session's cache), mine `other`'s negative concepts, learn from the
    examples; the session's prepare and embed stages, and the decide stage of the classifier that comes out."""
    model, encode = session.model, session.encode
    classifier = Classifier.build(spec, encode, model.logit_scale, model.logit_bias, top_k,
                                  pairwise_sigmoid=pairwise_sigmoid(model))
    if spec.other is not None:
        negatives = openset.mine(spec, classifier.matrix, openset.vocabulary_words(model.vocabulary()), encode)
        classifier = classifier.with_parts(negatives=negatives.matrix)
        if not negatives.words and not any(e.label == spec.other.name for e in examples):
            warn(f"other: no word of the model's vocabulary is far enough from your classes to stand for "
                 f"'{spec.other.name}', so no image will get it; give a few examples labelled '{spec.other.name}' "
                 "(--examples) to teach it")
    learned = learn(examples, classifier, session.prepare, session.embed, warn)
    return Stages(session.prepare, session.embed, Decide(learned.classifier, extra_names, learned.reviewed)), learned


def build_engine(config: RunConfig, job: Job, stages: Stages, meta: dict[str, Any]) -> Engine:
    """The local engine, or Ray's; for a folder --out, Ray's workers write the shards themselves."""
    parts = job.sink.prepare(meta) if isinstance(job.sink, ShardSink) else None
    if config.engine.engine == "ray":
        from autolabel.labelling.engines.ray import RayEngine

        name = job.session.model.name
        where = Path(name)
        name = str(where.absolute()) if where.is_dir() else name  # workers may start elsewhere
        return RayEngine(config.engine, replace(config.model, model=name), job.session.draft, stages.decide, parts,
                         config.output.shard_size if parts is not None else 0)
    from autolabel.labelling.engines.local import LocalEngine

    return LocalEngine(stages, config.engine.batch_size, config.decode.workers, job.session.on_cpu)


def run_metadata(job: Job, learned: Learned, model: Model, config: RunConfig) -> dict[str, Any]:
    """Everything needed to interpret (and reproduce) the output, stored with it."""
    spec, classifier = job.spec, learned.classifier
    return {
        "tool": "autolabel",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": job.source.identity,
        "images_root": job.source.images_root,
        "model": model.describe(),
        "draft": not config.decode.full_decode,
        "spec": dict(spec.raw),
        "spec_path": str(Path(spec.source).absolute()),
        "classes": list(spec.class_names),
        "other": {"name": spec.other.name, "negative_concepts": len(classifier.negatives)
                  if classifier.negatives is not None else 0} if spec.other else None,
        "prompts": {c.name: spec.prompts_for(c) for c in spec.classes},
        "threshold": spec.threshold,
        "thresholds": dict(zip(spec.label_names, classifier.thresholds.tolist(), strict=True)),
        "min_margin": spec.min_margin,
        "top_k": classifier.top_k,
        "learned": learned.describe(),
        **classifier.scoring(),
    }


def start_progress(reporter: Reporter, source: Source) -> None:
    """The bar, with the number of images when known (a folder's is counted beside the run)."""
    reporter.start(source.count)
    if reporter.show_bar and source.count is None and source.counter is not None:
        threading.Thread(target=lambda: reporter.set_total(source.counter()), daemon=True).start()  # type: ignore[misc]


def report_batch(reporter: Reporter, batch: Batch, counts: Counts, started: float) -> None:
    """Skip lines for the batch's failed images, and the bar."""
    for path, reason in batch.errors:
        reporter.skip(path, reason)
    reporter.advance(len(batch.rows), counts.images / max(time.perf_counter() - started, 1e-9))


def summarize(job: Job, counts: Counts, seconds: float, model: Model, learned: Learned) -> RunSummary:
    """This run's counts plus those of the shards it kept (and the examples it had to encode)."""
    resumed = sum((s.counts for s in job.sink.resumed), Counts())
    total = counts + resumed
    status = {s: total.status.get(s, 0) for s in STATUSES}
    classes = {c: {"images": total.classes.get(c, {}).get("images", 0),
                   **{s: total.classes.get(c, {}).get(s, 0) for s in STATUSES if s != "error"}}
               for c in job.spec.label_names}
    return RunSummary(
        out="", images=total.images, status=status, classes=classes, encoded=counts.encoded + learned.encoded,
        cached=counts.images - counts.status.get("error", 0) - counts.encoded, resumed=resumed.images,
        seconds=round(seconds, 3), images_per_second=round(counts.images / seconds, 3) if seconds > 0 else 0.0,
        model=model.describe(), classes_order=list(job.spec.class_names), threshold=job.spec.threshold,
        thresholds=dict(zip(job.spec.label_names, learned.classifier.thresholds.tolist(), strict=True)),
        min_margin=job.spec.min_margin, learned=learned.describe(),
        ray_actors=len(counts.actors) if counts.actors else None,
        scoring=learned.classifier.scoring(),
    )


def finish(config: RunConfig, job: Job, summary: RunSummary, out: str, reporter: Reporter) -> RunResult:
    """Write --summary-json, print the summary, apply --max-errors."""
    summary = RunSummary(**{**asdict(summary), "out": out})
    reporter.warn_group("file names are not valid UTF-8; their `path` keeps the bytes as \\x escapes",
                        job.source.renamed)
    if config.output.summary_json:
        write_text(config.output.summary_json, json.dumps(summary.to_dict(), indent=2) + "\n")
    reporter.skips_done()
    reporter.summary(summary.to_dict(), out)
    errors = summary.status["error"]
    if config.output.max_errors is not None and errors > config.output.max_errors:
        raise TooManyErrors(f"{errors} images failed, more than --max-errors {config.output.max_errors}; "
                            f"output kept in {out}")
    return RunResult(out=out, summary=summary)


def _inside(path: str, folder: str) -> bool:
    """True when `path` would be written inside the local folder `folder` (one this run creates, too)."""
    if storage.is_url(folder):
        return False
    real = os.path.realpath(os.path.expanduser(folder))
    return os.path.realpath(os.path.expanduser(path)).startswith(real.rstrip(os.sep) + os.sep)
