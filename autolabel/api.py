"""The Python API: `Labeler` loads a model once and labels paths or PIL images into a DataFrame, quietly."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from autolabel.core.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image

    from autolabel.core.config import ModelConfig, RunConfig
    from autolabel.core.progress import Reporter
    from autolabel.core.records import ImageRecord
    from autolabel.core.spec import LabelSpec
    from autolabel.embedding.cache import EmbeddingCache
    from autolabel.embedding.stages import Item, Model
    from autolabel.labelling.engines.base import Stages
    from autolabel.labelling.pipeline import RunResult


_PATH = (str, os.PathLike)
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {  # argument → (the types it takes besides None, in words)
    "model": (_PATH, "a Hub id or a checkpoint folder (str)"), "spec": (_PATH, "a label-spec file path"),
    "threshold": ((int, float), "a number"), "top_k": ((int,), "an int"), "multi_label": ((bool,), "True or False"),
    "device": ((str,), "a str such as 'auto' or 'cpu'"), "precision": ((str,), "a str such as 'auto' or 'fp32'"),
    "cache_dir": (_PATH, "a folder path"), "cache": ((bool,), "True or False"), "batch_size": ((int,), "an int"),
    "workers": ((int,), "an int"), "full_decode": ((bool,), "True or False"),
    "examples_column": ((str,), "a column name (str)"), "progress": ((bool,), "True or False"),
}
_NOT_NONE = ("device", "precision", "cache", "batch_size", "workers", "full_decode", "progress")


def _check_arguments(**given: Any) -> None:
    """Every constructor argument of the type it takes: UsageError naming it (not a TypeError deep inside, or a
    folder named `3`)."""
    for name, (kinds, words) in _KINDS.items():
        value = given[name]
        numeric = name in ("threshold", "top_k", "batch_size", "workers")
        if (value is None and name not in _NOT_NONE) or (isinstance(value, kinds) and
                                                         not (numeric and isinstance(value, bool))):
            continue
        raise UsageError(f"{name}= takes {words}, not {type(value).__name__} {str(value)[:60]!r}")
    items = {"classes": (given["classes"], (str, Mapping), "class names (str) or class mappings"),
             "templates": (given["templates"], (str,), "prompt templates (str) or a shipped set's name"),
             "examples": (given["examples"], _PATH, "table paths")}
    for name, (value, kinds, words) in items.items():
        # classes="cat dog", b"..", {..}: Labeler's own check says how to give them
        if value is None or isinstance(value, (str, os.PathLike)) or (name == "classes" and (
                isinstance(value, bytes) or not isinstance(value, Sequence))):
            continue
        if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
            raise UsageError(f"{name}= takes a list of {words}, not {type(value).__name__} {str(value)[:60]!r}")
        wrong = [v for v in value if not isinstance(v, kinds)] if isinstance(value, Sequence) else []  # keep iterators
        if wrong:
            raise UsageError(f"{name}= takes a list of {words}, not one holding {type(wrong[0]).__name__} {wrong[0]!r}")


class Labeler:
    """Zero-shot labels from Python, with the CLI's exact numbers.

    Give a label spec file (`spec="labels.yaml"`) or the classes inline (`classes=["cat", "dog"]`, optionally
    `templates=[...]` or a shipped set's name). Construction returns at once: the model (and torch) loads on
    first use that the cache cannot answer, once (`labeler.model.get()` loads it now). Nothing is printed unless
    `progress=True`; problems raise `autolabel.AutolabelError` subclasses. Image embeddings of files are
    cached by content as in the CLI (`cache=False` to bypass, `cache_dir` to move it).
    """

    def __init__(self, model: str | None = None, spec: str | os.PathLike[str] | None = None, *,
                 classes: Sequence[str | Mapping[str, Any]] | None = None, templates: Sequence[str] | str | None = None,
                 threshold: float | None = None, top_k: int | None = None, multi_label: bool | None = None,
                 device: str = "auto", precision: str = "auto",
                 cache_dir: str | os.PathLike[str] | None = None, cache: bool = True, batch_size: int = 32,
                 workers: int = 0, full_decode: bool = False,
                 examples: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] = (),
                 examples_column: str | None = None, progress: bool = False) -> None:
        from autolabel.core.config import (
            CacheConfig,
            ClassifyConfig,
            DecodeConfig,
            EngineConfig,
            ModelConfig,
            OutputConfig,
            RunConfig,
        )
        from autolabel.core.spec import load_spec, parse_spec
        from autolabel.embedding.session import Session

        _check_arguments(model=model, spec=spec, classes=classes, templates=templates, threshold=threshold,
                         top_k=top_k, multi_label=multi_label, device=device, precision=precision, cache_dir=cache_dir,
                         cache=cache, batch_size=batch_size, workers=workers, full_decode=full_decode,
                         examples=examples, examples_column=examples_column, progress=progress)
        if (spec is None) == (classes is None):
            raise UsageError("Labeler needs either spec= (a label-spec YAML file) or classes= (a list of names)")
        if isinstance(classes, (str, bytes, Mapping)) or (classes is not None and not isinstance(classes, Iterable)):
            raise UsageError(f"classes= takes a list of class names, e.g. classes=['cat', 'dog'], not "
                             f"{type(classes).__name__} {str(classes)[:60]!r}")
        if isinstance(examples, (str, bytes, os.PathLike)):
            examples = [os.fsdecode(examples)]  # one table, not an iterable of characters
        if spec is not None:
            if templates is not None or multi_label is not None:
                raise UsageError("templates= and multi_label= go with classes=; a spec file has its own")
            self.spec: LabelSpec = load_spec(spec)
        else:
            data: dict[str, Any] = {"classes": list(classes or [])}
            if templates is not None:
                data["templates"] = templates if isinstance(templates, str) else list(templates)
            if multi_label:
                data["multi_label"] = True
            self.spec = parse_spec(data, "<classes>")
        self.spec = self.spec.with_threshold(threshold)
        self.config: RunConfig = RunConfig(  # `label_to` replaces SOURCE, --out and the options it is given
            source="", labels=self.spec.source, output=OutputConfig(out=""),
            model=ModelConfig(None if model is None else os.fspath(model), device, precision),
            classify=ClassifyConfig(top_k=top_k, threshold=threshold),
            decode=DecodeConfig(full_decode=full_decode, workers=workers), engine=EngineConfig(batch_size=batch_size),
            cache=CacheConfig(str(cache_dir) if cache_dir is not None else None, not cache),
            examples=tuple(os.fspath(e) for e in examples), examples_column=examples_column, quiet=not progress)
        self.progress = progress
        self.session = Session.open(self.config.model, self.config.cache, draft=not full_decode,
                                    spec_model=self.spec.model_location())
        from autolabel.learn.examples import collect

        self.examples = tuple(collect(self.spec, self.config.examples, examples_column, self._reporter().warn))
        self.model: Model = self.session.model  # a LazyModel: loads on first need
        self._stages: Stages | None = None

    @property
    def model_config(self) -> ModelConfig:
        """Which checkpoint, device and precision (the model itself: `model`)."""
        return self.config.model

    @property
    def cache(self) -> EmbeddingCache | None:
        """The embedding cache (None with `cache=False`)."""
        return self.session.cache

    @property
    def examples_tables(self) -> tuple[str, ...]:
        """The tables of reviewed images the classifier learns from."""
        return self.config.examples

    @property
    def classes(self) -> list[str]:
        """Class names in spec order."""
        return list(self.spec.class_names)

    def _reporter(self) -> Reporter:
        from autolabel.core.progress import Reporter

        return Reporter(quiet=False) if self.progress else Reporter(silent=True)

    def stages(self) -> Stages:
        """The run's stages for this model and spec (text encoded once, then kept)."""
        if self._stages is None:
            from autolabel.labelling.pipeline import stages_for
            from autolabel.task import task_for

            top_k = self.config.classify.top_k_for(task_for(self.spec).default_top_k(len(self.spec.classes)))
            self._stages, self.learned = stages_for(self.spec, self.session, self.examples, top_k=top_k,
                                                    warn=self._reporter().warn)
        return self._stages

    def label(self, images: Iterable[str | os.PathLike[str] | Image.Image]) -> pd.DataFrame:
        """One row per image in input order, the contract's columns (`path` is `<image N>` for PIL images)."""
        import pyarrow as pa

        from autolabel.core.records import ImageRecord
        from autolabel.labelling.engines.local import LocalEngine
        from autolabel.table.schema import output_schema

        if isinstance(images, (bytes, bytearray)):
            raise UsageError("images: expected paths or PIL images, got bytes (decode a path to str)")
        if images is None or not (isinstance(images, (Iterable, str, os.PathLike)) or hasattr(images, "convert")):
            raise UsageError(f"images: expected a path, a PIL image or a list of them, got {type(images).__name__}")
        if isinstance(images, (str, os.PathLike)) or hasattr(images, "convert"):
            images = [images]  # one image, not an iterable of characters or pixels
        records, pictures = [], {}
        for i, image in enumerate(images):
            if isinstance(image, (str, os.PathLike)):
                given = os.fspath(image)
                records.append(ImageRecord(path=given, location=os.path.expanduser(given), row=i))
            elif hasattr(image, "convert") and hasattr(image, "size"):
                records.append(ImageRecord(path=f"<image {i}>", location="", row=i))
                pictures[i] = image
            else:
                raise UsageError(f"images[{i}]: expected a path or a PIL image, got {type(image).__name__}")
        stages = self.stages()
        if pictures:
            from dataclasses import replace

            stages = replace(stages, prepare=_WithPictures(stages.prepare, pictures))
        engine = LocalEngine(stages, self.config.engine.batch_size, self.config.decode.workers, self.session.on_cpu)
        reporter = self._reporter()
        reporter.start(len(records))
        schema = output_schema(stages.decide.classifier.task)
        columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        try:
            for batch in engine.batches(records):
                for name in columns:
                    columns[name].extend((batch.columns or {})[name])
                reporter.advance(len(batch.rows), 0.0)
        finally:
            reporter.stop()
        return pa.table(columns, schema=schema).to_pandas()

    def label_to(self, source: str | os.PathLike[str], out: str | os.PathLike[str], **options: Any) -> RunResult:
        """`autolabel run SOURCE --out OUT` with this model and spec; options are the CLI's, by their Python names.

        E.g. `label_to("photos/", "labels.parquet", summary_json="s.json")` or a folder `out="shards/"`.
        """
        from dataclasses import replace

        from autolabel.labelling.pipeline import run

        fixed = sorted({"model", "device", "precision", "labels", "spec", "source"} & set(options))
        if fixed:
            raise UsageError(f"label_to: {', '.join(fixed)} {'belongs' if len(fixed) == 1 else 'belong'} to the "
                             "Labeler (its model is loaded); make another Labeler to change them")
        config = replace(self.config, source=os.fspath(source)).with_options(out=os.fspath(out), **options)
        return run(config, session=self.session, spec=self.spec, reporter=self._reporter())

    def close(self) -> None:
        """Close the embedding cache (the model is freed with the object)."""
        self.session.close()

    def __enter__(self) -> Labeler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _WithPictures:
    """The prepare stage, with in-memory PIL images taking the place of files (they are never cached)."""

    def __init__(self, prepare: Any, pictures: dict[int, Any]) -> None:
        self.prepare, self.pictures = prepare, pictures

    def __call__(self, record: ImageRecord) -> Item:
        from autolabel.embedding.decode import DecodeError, to_rgb
        from autolabel.embedding.stages import Item

        picture = self.pictures.get(record.row)
        if picture is None:
            return self.prepare(record)
        try:
            from PIL import ImageOps

            return Item(record, inputs=self.prepare.preprocessing(to_rgb(ImageOps.exif_transpose(picture))))
        except (DecodeError, OSError, ValueError) as exc:
            return Item(record, error=f"cannot use this image ({exc})")


__all__ = ["Labeler"]
