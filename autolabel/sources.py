"""SOURCE → ImageRecords: a folder walk, a manifest (csv, tsv, parquet, jsonl, txt) or stdin."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa

from autolabel import storage
from autolabel.errors import SourceError, UsageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".txt")
PATH_COLUMNS = ("path", "image", "file_name", "filepath")


@dataclass(frozen=True)
class ImageRecord:
    """One image to label: `path` as it appears in the output, `location` where to read it."""

    path: str
    location: str
    extra: tuple[Any, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Source:
    """An opened SOURCE: its records (lazy), pass-through columns, and count when known."""

    description: str
    records: Iterable[ImageRecord]
    extra_schema: pa.Schema = field(default_factory=lambda: pa.schema([]))
    count: int | None = None


def is_image_name(name: str) -> bool:
    """True for file names with a supported image extension, any case."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def walk_folder(root: Path) -> list[str]:
    """Relative POSIX paths of the images under `root`, hidden files/folders skipped, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else Path(rel).as_posix() + "/"
        found.extend(prefix + f for f in filenames if not f.startswith(".") and is_image_name(f))
    return sorted(found)


def _folder(root: Path) -> Source:
    paths = walk_folder(root)
    records = [ImageRecord(path=p, location=str(root / p)) for p in paths]
    return Source(description=f"folder {root}", records=records, count=len(records))


def _read_table(path: Path | str) -> pa.Table:
    """A manifest as an Arrow table; `path` may be an object-store URL."""
    suffix = Path(str(path)).suffix.lower()
    try:
        if storage.is_url(str(path)):
            with storage.open_url(str(path)) as f:
                return _parse_table(f, suffix)
        return _parse_table(path, suffix)
    except FileNotFoundError:
        raise SourceError(f"{path}: manifest not found") from None
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{path}: cannot read {suffix[1:]} manifest ({first})") from None


def _parse_table(source: Any, suffix: str) -> pa.Table:
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(source)
    if suffix in (".csv", ".tsv"):
        import pyarrow.csv as pcsv

        delimiter = "\t" if suffix == ".tsv" else ","
        return pcsv.read_csv(source, parse_options=pcsv.ParseOptions(delimiter=delimiter))
    if suffix == ".jsonl":
        import pyarrow.json as pjson

        return pjson.read_json(source)
    data = source.read() if hasattr(source, "read") else Path(source).read_bytes()
    lines = data.decode("utf-8").splitlines()
    return pa.table({"path": [ln.strip() for ln in lines if ln.strip()]})


def pick_path_column(names: list[str], wanted: str | None, where: str) -> str:
    """The manifest's path column: `wanted`, else the first of PATH_COLUMNS present."""
    if wanted is not None:
        if wanted not in names:
            raise SourceError(f"{where}: no column '{wanted}' (--path-column); columns are: {', '.join(names)}")
        return wanted
    for candidate in PATH_COLUMNS:
        if candidate in names:
            return candidate
    raise SourceError(
        f"{where}: no path column; name one of {', '.join(PATH_COLUMNS)} or pass --path-column "
        f"(columns are: {', '.join(names) or 'none'})"
    )


def resolve_location(given: str, base: Path | str) -> str:
    """Where to read an image named in a manifest: relative paths resolve against the manifest's folder."""
    if storage.is_url(given):
        return given
    if storage.is_url(str(base)):
        return storage.join(str(base), given)
    expanded = os.path.expanduser(given)
    return expanded if os.path.isabs(expanded) else str(Path(base) / expanded)


def _remote_folder(url: str) -> Source:
    rels = storage.list_images(url, is_image_name)
    base = url.rstrip("/")
    records = [ImageRecord(path=r, location=f"{base}/{r}") for r in rels]
    return Source(description=f"folder {url}", records=records, count=len(records))


def _manifest(path: Path | str, path_column: str | None) -> Source:
    table = _read_table(path)
    column = pick_path_column(table.column_names, path_column, str(path))
    paths = table.column(column)
    if not pa.types.is_string(paths.type) and not pa.types.is_large_string(paths.type):
        paths = paths.cast(pa.string())
    extras = table.drop_columns([column])
    base = storage.parent(path) if isinstance(path, str) else path.parent
    extra_columns = [extras.column(i).to_pylist() for i in range(extras.num_columns)]

    def records() -> Iterator[ImageRecord]:
        for i, given in enumerate(paths.to_pylist()):
            extra = tuple(col[i] for col in extra_columns)
            if given is None or not given.strip():
                yield ImageRecord(path="", location="", extra=extra, error=f"row {i + 1}: empty path")
            else:
                yield ImageRecord(path=given, location=resolve_location(given, base), extra=extra)

    return Source(
        description=f"manifest {path}", records=records(), extra_schema=extras.schema, count=table.num_rows
    )


def _stdin(stream: TextIO) -> Source:
    def records() -> Iterator[ImageRecord]:
        for line in stream:
            given = line.strip()
            if given:
                yield ImageRecord(path=given, location=resolve_location(given, Path.cwd()))

    return Source(description="stdin", records=records())


def open_source(source: str, path_column: str | None = None, stdin: TextIO | None = None) -> Source:
    """Open SOURCE: `-` (stdin), a folder, or a manifest file chosen by suffix."""
    if source == "-":
        if stdin is None:
            raise UsageError("SOURCE '-' needs image paths on standard input")
        return _stdin(stdin)
    if storage.is_url(source):
        if Path(source).suffix.lower() in MANIFEST_SUFFIXES:
            return _manifest(source, path_column)
        if storage.is_folder(source):
            return _remote_folder(source)
        raise SourceError(f"{source}: not a folder or a manifest; manifests end in {', '.join(MANIFEST_SUFFIXES)}")
    path = Path(source).expanduser()
    if path.is_dir():
        return _folder(path)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        if not path.exists():
            raise SourceError(f"{path}: manifest not found")
        return _manifest(path, path_column)
    if not path.exists():
        raise SourceError(f"{source}: no such folder or manifest")
    raise SourceError(
        f"{source}: not a folder or a manifest; manifests end in {', '.join(MANIFEST_SUFFIXES)}"
    )
