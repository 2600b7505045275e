"""The names of the on-disk labels table: metadata keys, file suffixes, the CSV sidecar, a shard folder's files."""

from __future__ import annotations

from pathlib import Path

from autolabel.core import storage
from autolabel.core.errors import UsageError
from autolabel.core.fileio import SHARD_LOCK, SHARD_MANIFEST, SHARD_PART, SHARD_PART_PREFIX, SHARD_PART_SUFFIX

__all__ = [
    "FOLDER", "LIST_COLUMNS", "MANIFEST_SUFFIXES", "MARK_COLUMNS", "METADATA_KEY", "METADATA_NAME", "OUTPUT_FORMATS",
    "PATH_COLUMNS", "SHARD_KEY", "SHARD_LOCK", "SHARD_MANIFEST", "SHARD_PART", "SIDECAR_SUFFIX", "in_folder",
    "output_format", "part_glob", "part_name", "sidecar_path",
]

METADATA_NAME = "autolabel"  # the run metadata: a Parquet file's schema metadata key, the sidecar's and manifest's key
METADATA_KEY = METADATA_NAME.encode()
SHARD_KEY = "shard"  # the part's own place in its run, in its Parquet metadata
OUTPUT_FORMATS = (".parquet", ".csv")  # a labels table file; a folder of shards is the third layout
FOLDER = "folder"  # the layout of a shard folder (the others are named by OUTPUT_FORMATS without the dot)
MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".txt")  # tables SOURCE may be (a manifest of images)
PATH_COLUMNS = ("path", "image", "file_name", "filepath")  # a manifest's path column: the first of these present
LIST_COLUMNS = ("top_labels", "top_scores")  # list cells, JSON arrays in a CSV table
MARK_COLUMNS = frozenset({"path", "label", "confidence", "status"})  # every labels table autolabel wrote has them
SIDECAR_SUFFIX = ".autolabel.json"


def output_format(out: str | Path) -> str:
    """`parquet` or `csv` from the suffix; anything else is a usage error."""
    suffix = Path(out).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise UsageError(f"--out {out}: must end in .parquet or .csv (or in / for a folder of shards)")
    return suffix[1:]


def sidecar_path(table: str | Path) -> Path:
    """Where a CSV table keeps its run metadata (CSV has no place for it): labels.csv → labels.csv.autolabel.json."""
    table = Path(table)
    return table.with_name(table.name + SIDECAR_SUFFIX)


def part_name(index: int) -> str:
    """The file name of shard `index`."""
    return f"{SHARD_PART_PREFIX}{index:05d}{SHARD_PART_SUFFIX}"


def part_glob() -> str:
    """The glob that finds a folder's part files (and files named like them)."""
    return f"{SHARD_PART_PREFIX}*{SHARD_PART_SUFFIX}"


def in_folder(folder: str, name: str) -> str:
    """The location of `name` in a local or object-store folder."""
    return f"{folder.rstrip('/')}/{name}" if storage.is_url(folder) else str(Path(folder) / name)
