"""SOURCE → a lazy stream of ImageRecords: a folder walk, a manifest (csv, tsv, parquet, jsonl, txt) or stdin."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import pyarrow as pa

from autolabel.core import storage
from autolabel.core.errors import SourceError, UsageError
from autolabel.core.records import ImageRecord, printable_path
from autolabel.table.files import read_rows
from autolabel.table.format import MANIFEST_SUFFIXES, PATH_COLUMNS

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_SLICE_ROWS = 4096  # manifest rows turned into Python objects at a time


@dataclass(frozen=True)
class Source:
    """An opened SOURCE: its records (lazy, one pass), pass-through columns, and where relative paths resolve.

    `count` is known up front for manifests; a folder's is computed by `counter` (a second, cheap walk that
    only a progress bar needs). `identity` names the SOURCE for resume checks (absolute path or URL).
    """

    description: str
    records: Iterable[ImageRecord]
    identity: str
    images_root: str
    extra_schema: pa.Schema = field(default_factory=lambda: pa.schema([]))
    count: int | None = None
    counter: Callable[[], int] | None = None
    renamed: list[str] = field(default_factory=list)  # paths whose undecodable bytes were escaped, once walked


def is_image_name(name: str) -> bool:
    """True for file names with a supported image extension, any case."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def folder_entries(root: Path) -> Iterator[tuple[str, str | None]]:
    """(relative POSIX path, problem) of the images under `root`, sorted by the full path string, lazily.

    Each folder is listed on its own and its entries sorted with folders keyed `name/`, which gives the
    order of the full path strings without holding them all. Hidden entries and anything but regular
    files are skipped; a folder reached twice (symlink loops, two links to one folder) is walked once.
    An image name whose file cannot be reached (a dangling symlink) still comes out, so it becomes an
    error row, and so does a folder that cannot be listed (`problem` says why).
    """
    seen: set[tuple[int, int]] = set()

    def walk(folder: str, prefix: str) -> Iterator[tuple[str, str | None]]:
        try:
            info = os.stat(folder)
        except OSError:
            return
        if (info.st_dev, info.st_ino) in seen:
            return
        seen.add((info.st_dev, info.st_ino))
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            yield prefix, f"cannot list this folder ({exc.strerror or exc}); its images are left out"
            return
        keyed = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                mode = entry.stat().st_mode  # follows symlinks
            except OSError:
                mode = stat.S_IFREG if is_image_name(entry.name) else 0  # read later: "file not found"
            if stat.S_ISDIR(mode):
                keyed.append((entry.name + "/", entry.path))
            elif stat.S_ISREG(mode) and is_image_name(entry.name):
                keyed.append((entry.name, ""))
        for key, sub in sorted(keyed):
            if sub:
                yield from walk(sub, prefix + key)
            else:
                yield prefix + key, None

    yield from walk(str(root), "")


def iter_folder(root: Path) -> Iterator[str]:
    """Relative POSIX paths of the images under `root`, sorted (see folder_entries; unlistable folders left out)."""
    return (rel for rel, problem in folder_entries(root) if problem is None)


def walk_folder(root: Path) -> list[str]:
    """Every image path under `root` (see iter_folder), as a list."""
    return list(iter_folder(root))


def _folder(root: Path) -> Source:
    renamed: list[str] = []

    def records() -> Iterator[ImageRecord]:
        for i, (rel, problem) in enumerate(folder_entries(root)):
            shown = printable_path(rel)
            if shown != rel:
                renamed.append(shown)
            yield ImageRecord(path=shown, location=os.path.join(root, rel), row=i, error=problem)

    absolute = str(root.absolute())
    return Source(description=f"folder {root}", records=records(), identity=absolute, images_root=absolute,
                  counter=lambda: sum(1 for _ in folder_entries(root)), renamed=renamed)


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


def _remote_folder(url: str) -> Source:
    base = url.rstrip("/")

    def records() -> Iterator[ImageRecord]:
        for i, rel in enumerate(storage.list_images(url, is_image_name)):
            yield ImageRecord(path=rel, location=f"{base}/{rel}", row=i)

    return Source(description=f"folder {url}", records=records(), identity=base, images_root=base)


def _check_path_column(schema: pa.Schema, column: str, path: Path | str) -> None:
    """Refuse, before any image is read, a path column that is not unique or cannot be read as text."""
    if schema.names.count(column) > 1:
        raise SourceError(f"{path}: {schema.names.count(column)} columns are named '{column}'; give the path column "
                          "a name of its own")
    kind = schema.field(column).type
    try:
        pa.array([], type=kind).cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SourceError(f"{path}: column '{column}' holds {kind} values, not paths") from None


def _manifest(path: Path | str, path_column: str | None) -> Source:
    suffix = Path(str(path)).suffix.lower()
    table = read_rows(path, suffix, strings=(*PATH_COLUMNS, *([path_column] if path_column else [])))
    schema, count = table.schema, table.count
    column = pick_path_column(schema.names, path_column, str(path))
    _check_path_column(schema, column, path)
    at = schema.get_field_index(column)
    # By position, as pass-through names may repeat; pandas' saved index (`__index_level_0__`) is no column.
    others = [i for i in range(len(schema)) if i != at and not re.fullmatch(r"__index_level_\d+__", schema[i].name)]
    extra_schema = pa.schema([schema.field(i) for i in others])
    base = storage.parent(path) if isinstance(path, str) and storage.is_url(path) else str(Path(path).absolute().parent)

    def records() -> Iterator[ImageRecord]:
        row = 0
        for batch in table.batches(_SLICE_ROWS):
            paths = batch.column(at)
            if not pa.types.is_string(paths.type) and not pa.types.is_large_string(paths.type):
                paths = paths.cast(pa.string())
            extras = [batch.column(i).to_pylist() for i in others]
            for j, given in enumerate(paths.to_pylist()):
                extra = tuple(col[j] for col in extras)
                if given is None or not given.strip():
                    yield ImageRecord(path="", location="", extra=extra, error=f"row {row + 1}: empty path", row=row)
                else:
                    yield ImageRecord(path=given, location=storage.resolve_location(given, base), extra=extra, row=row)
                row += 1

    identity = str(path) if storage.is_url(str(path)) else str(Path(path).absolute())
    return Source(description=f"manifest {path}", records=records(), identity=identity, images_root=base,
                  extra_schema=extra_schema, count=count)


def _stdin(stream: TextIO) -> Source:
    cwd = str(Path.cwd())
    renamed: list[str] = []

    def records() -> Iterator[ImageRecord]:
        # Bytes when there are any, so a name that is not UTF-8 reaches the file system as it was given.
        lines = getattr(stream, "buffer", stream)
        row = 0
        for line in lines:
            given = (line.decode("utf-8", "surrogateescape") if isinstance(line, bytes) else line).strip()
            if given:
                shown = printable_path(given)
                if shown != given:
                    renamed.append(shown)
                yield ImageRecord(path=shown, location=storage.resolve_location(given, cwd), row=row)
                row += 1

    return Source(description="stdin", records=records(), identity="-", images_root=cwd, renamed=renamed)


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
        return _manifest(path, path_column)
    if not path.exists():
        raise SourceError(f"{source}: no such folder or manifest")
    raise SourceError(
        f"{source}: not a folder or a manifest; manifests end in {', '.join(MANIFEST_SUFFIXES)}"
    )
