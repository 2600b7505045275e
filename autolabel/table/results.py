"""A labels table `autolabel run` wrote (a Parquet or CSV file, or a shard folder): opened, read back, rewritten."""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from autolabel.core import storage
from autolabel.core.errors import SourceError, UsageError
from autolabel.core.fileio import InputError
from autolabel.table.files import read_file, read_sidecar, rewrite_file
from autolabel.table.format import (
    FOLDER,
    LIST_COLUMNS,
    MANIFEST_SUFFIXES,
    METADATA_KEY,
    METADATA_NAME,
    OUTPUT_FORMATS,
    SIDECAR_SUFFIX,
)
from autolabel.table.schema import OUTPUT_SCHEMA
from autolabel.table.shards import read_folder, rewrite_folder
from autolabel.task import Task, task_of


@dataclass(frozen=True)
class Layout:
    """How a labels table lies on disk: `kind` parquet or csv (one file), or FOLDER (a finished run's shards)."""

    kind: str
    schema: pa.Schema | None = None  # a Parquet file's own schema: the column types and metadata a rewrite keeps


@dataclass(frozen=True)
class Opened:
    """A labels table as stored: its rows, its run metadata (a CSV table's from its sidecar) and its layout."""

    frame: pd.DataFrame
    metadata: dict[str, Any]
    layout: Layout


def open_table(path: Path, spec_given: bool = False) -> Opened:
    """A Parquet or CSV table file, or a shard folder (refused unless a finished run wrote it, every part checked
    against its manifest). `spec_given`: a file beside a CSV table that is not its sidecar is ignored, not refused."""
    suffix = path.suffix.lower()
    if path.is_dir():
        table, manifest = read_folder(path)
        frame, metadata, layout = table.to_pandas(), dict(manifest.get(METADATA_NAME) or {}), Layout(FOLDER)
    else:
        if suffix not in OUTPUT_FORMATS:
            raise UsageError(f"{path}: a labels table ends in .parquet or .csv, or is a shard folder")
        try:
            read = read_file(path)
        except InputError as exc:
            if exc.errno == errno.ENOENT:
                raise SourceError(f"{path}: no such labels table") from None
            raise SourceError(f"{path}: cannot read labels table ({exc.strerror})") from None
        except Exception as exc:  # pyarrow and pandas raise many types for files that are not tables
            kind = "Parquet" if suffix == ".parquet" else "CSV"
            raise SourceError(f"{path}: cannot read {kind} ({' '.join(str(exc).split())[:200]})") from None
        frame, layout = read.frame, Layout(suffix[1:], read.schema)
        metadata = _metadata(read.schema, path) if read.schema is not None else _sidecar(path, spec_given)
    if suffix == ".csv":
        for column in LIST_COLUMNS:
            if column in frame:
                frame[column] = [_json_list(v, path, column) for v in frame[column]]
    return Opened(frame, metadata, layout)


def rewrite(path: Path, layout: Layout, frame: pd.DataFrame, metadata: dict[str, Any], task: Task) -> None:
    """Write an updated table back over itself atomically, in its layout, keeping every column and the run metadata
    (a shard folder part by part, each part's own metadata kept; a CSV table's sidecar stays as it is)."""
    if layout.kind == FOLDER:
        rewrite_folder(path, frame, metadata)
    else:
        rewrite_file(path, frame, metadata, layout.schema, task)


@dataclass
class Results:
    """A labels table, its classes in spec order, and the run metadata (a CSV table's from its sidecar, else empty)."""

    path: Path
    frame: pd.DataFrame
    classes: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    spec: Any = None  # LabelSpec, when known (from --labels or the Parquet metadata)
    schema: pa.Schema | None = None  # the Parquet file's own schema (None for CSV)

    @property
    def layout(self) -> Layout:
        """How the table lies on disk (what `rewrite` keeps)."""
        if self.schema is not None:
            return Layout("parquet", self.schema)
        return Layout(FOLDER) if self.path.is_dir() else Layout("csv")

    @property
    def thresholds(self) -> dict[str, float]:
        """Per-class acceptance thresholds used by the run."""
        if self.metadata.get("thresholds"):
            return dict(self.metadata["thresholds"])
        if self.spec is not None:
            return dict(zip(self.spec.class_names, self.spec.thresholds(), strict=True))
        return {}

    def images_root(self, given: str | Path | None = None) -> Path | str:
        """Where relative paths resolve: `given` (--images-root), else the run's `images_root`.

        Tables written before `images_root` was recorded keep only the run's SOURCE as typed, relative to
        wherever `run` was started: it is tried against the table's own folder, then the current one.
        A URL (object-store folder) is returned as a string.
        """
        if given:
            return Path(given)
        recorded = self.metadata.get("images_root")
        if recorded:
            return recorded if storage.is_url(str(recorded)) else Path(recorded)
        source = self.metadata.get("source")
        if not source or source == "-":
            return Path.cwd()
        if storage.is_url(source):
            return storage.parent(source) if Path(source).suffix.lower() in MANIFEST_SUFFIXES else source
        path = Path(source).expanduser()
        beside_table = self.path.parent / path
        if not path.is_absolute() and beside_table.exists():
            path = beside_table
        return path if path.is_dir() or path.suffix.lower() not in MANIFEST_SUFFIXES else path.parent

    def location(self, path: str, root: Path | str) -> Path | str:
        """The file behind a table path: a Path, or a URL string for images in an object store."""
        if storage.is_url(path):
            return path
        if isinstance(root, str):
            return storage.join(root, path)
        return Path(path) if Path(path).is_absolute() else root / path

    @property
    def task(self) -> Task:
        """What the run labelled: one name per image, or a set (a `labels` column)."""
        return task_of(self.metadata, self.spec)

    @property
    def min_margin(self) -> float:
        """The run's min_margin."""
        if "min_margin" in self.metadata:
            return float(self.metadata["min_margin"])
        return float(self.spec.min_margin) if self.spec is not None else 0.0


def load_results(path: str | Path, labels: str | Path | None = None) -> Results:
    """Load OUT of `autolabel run`. CSV tables need the label spec (`labels`) for their class list."""
    from autolabel.core.spec import load_spec, parse_spec

    path = Path(path)
    opened = open_table(path, labels is not None)
    frame, metadata = opened.frame, opened.metadata
    missing = [c for c in OUTPUT_SCHEMA.names if c not in frame.columns]
    if missing:
        raise SourceError(f"{path}: not an autolabel table (missing columns: {', '.join(missing)})")
    spec = None
    if labels is not None:
        spec = load_spec(labels)
    elif metadata.get("spec"):
        # Named after the spec file it came from, so a relative `model:` or `examples:` still resolves there.
        spec = parse_spec(metadata["spec"], str(metadata.get("spec_path") or f"{path} (metadata)"))
    if spec is not None:
        classes = list(spec.label_names)  # `other` is a label like the classes (eval, exports, report)
    elif metadata.get("classes"):
        other = (metadata.get("other") or {}).get("name")
        classes = list(metadata["classes"]) + ([other] if other else [])
    else:
        raise UsageError(f"{path}: carries no autolabel run metadata (a CSV table without its {path.name}"
                         f"{SIDECAR_SUFFIX} beside it, or a Parquet file saved again without it), so its classes "
                         "are unknown; pass the label spec with --labels")
    results = Results(path=path, frame=frame, classes=classes, metadata=metadata, spec=spec,
                      schema=opened.layout.schema)
    results.task.read_columns(frame, path)
    frame["status"] = frame["status"].astype(str)
    return results


def _sidecar(path: Path, spec_given: bool) -> dict[str, Any]:
    """A CSV table's run metadata from its sidecar; one that is not ours is an error unless --labels is given."""
    try:
        return read_sidecar(path)
    except UsageError:
        if spec_given:
            return {}
        raise


def _metadata(schema: pa.Schema, path: Path) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        raise SourceError(f"{path}: its autolabel metadata is not valid JSON") from None
    if not isinstance(data, dict):
        raise SourceError(f"{path}: its autolabel metadata is not a JSON object")
    return data


def _json_list(value: Any, path: Path, column: str) -> list:
    if not isinstance(value, str):
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        raise SourceError(f"{path}: column {column} holds {value[:40]!r}, not a JSON list") from None
    if not isinstance(parsed, list):
        raise SourceError(f"{path}: column {column} holds {value[:40]!r}, not a JSON list")
    return parsed


IMAGES_SAMPLE = 200  # rows looked at to tell whether a table's images are where its paths say


def find_images_root(results: Results, given: str | Path | None = None) -> Path | str:
    """Where the table's relative paths resolve, for every command that shows or exports its images.

    `given` (--images-root) wins; else the recorded root (Results.images_root). A table that records none (a CSV
    without its sidecar) whose paths are not found there but are beside the table resolves beside the table.
    """
    root = results.images_root(given)
    if given or results.metadata.get("images_root") or isinstance(root, str):
        return root
    sample = _local_paths(results)
    if sample and not _any_found(results, sample, root) and _any_found(results, sample, results.path.parent):
        return results.path.parent
    return root


def images_missing(results: Results, root: Path | str, paths: list[str] | None = None) -> SourceError | None:
    """The one-line error when none of the table's images (or of `paths`) is found under `root`, else None."""
    sample = _local_paths(results) if paths is None else [p for p in paths if not storage.is_url(p)]
    if not sample or isinstance(root, str) or _any_found(results, sample, root):
        return None
    counted = f"{len(sample)}" if paths is not None or len(sample) == len(results.frame) else f"first {len(sample)}"
    return SourceError(f"{results.path}: none of its {counted} images was found under {root} (e.g. {sample[0]} → "
                       f"{results.location(sample[0], root)}); pass --images-root with the folder its paths are "
                       "relative to")


def _local_paths(results: Results) -> list[str]:
    paths = results.frame["path"].head(IMAGES_SAMPLE) if "path" in results.frame else []
    return [str(p) for p in paths if isinstance(p, str) and p and not storage.is_url(p)]


def _any_found(results: Results, paths: list[str], root: Path) -> bool:
    return any(Path(results.location(p, root)).is_file() for p in paths)
