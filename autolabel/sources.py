"""SOURCE → ImageRecords: a folder walk, a manifest (csv, tsv, parquet, jsonl, txt) or stdin."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa

from autolabel import storage
from autolabel.errors import SourceError, UsageError
from autolabel.fileio import InputError, open_regular

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".txt")
PATH_COLUMNS = ("path", "image", "file_name", "filepath")
Warn = Callable[[str], None]


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


def display_path(name: str) -> str:
    """`name` as valid UTF-8 for the output: bytes a file name has that are not UTF-8 become `\\xNN` escapes."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # lone surrogates that did not come from the file system
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class WalkNotes:
    """What a folder walk skipped or changed, for one warning line each."""

    repeated_folders: int = 0  # symlinked folders already listed under another name (loops included)
    special_files: int = 0  # FIFOs, devices, sockets with image names
    undecodable: list[str] = field(default_factory=list)  # display paths of names that are not UTF-8

    def warnings(self, root: str) -> list[str]:
        """One line per kind of note."""
        lines = []
        if self.repeated_folders:
            lines.append(f"folder {root}: {self.repeated_folders} symlinked folder(s) lead to a folder already "
                         "listed (a symlink loop or a second link); each folder was listed once")
        if self.special_files:
            lines.append(f"folder {root}: {self.special_files} entries with image names are not regular files "
                         "(FIFOs, devices, sockets); skipped")
        if self.undecodable:
            lines.append(f"folder {root}: {len(self.undecodable)} file name(s) are not valid UTF-8; their paths are "
                         f"written with \\x escapes (e.g. {self.undecodable[0]})")
        return lines


def walk_folder(root: Path, notes: WalkNotes | None = None) -> list[str]:
    """Relative POSIX paths of the images under `root`, hidden files/folders skipped, sorted.

    Symlinked folders are followed, each folder (by device and inode) listed once, so a symlink loop
    ends; entries that exist but are not regular files (FIFOs, devices) are skipped. Names are returned
    as the file system gives them (see display_path for the output form).
    """
    notes = notes if notes is not None else WalkNotes()
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            info = os.stat(folder)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue  # vanished or unreadable: nothing in it can be labelled
        if (info.st_dev, info.st_ino) in seen:
            notes.repeated_folders += 1
            continue
        seen.add((info.st_dev, info.st_ino))
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                subfolders.append((entry.path, f"{prefix}{entry.name}/"))
            elif is_image_name(entry.name):
                if _is_regular_or_dangling(entry):
                    found.append(prefix + entry.name)
                else:
                    notes.special_files += 1
        stack.extend(reversed(subfolders))  # depth first, in name order
    found.sort(key=lambda rel: (display_path(rel), rel))
    notes.undecodable.extend(shown for rel in found if (shown := display_path(rel)) != rel)
    return found


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_regular_or_dangling(entry: os.DirEntry) -> bool:
    """Regular files (symlinks followed) are listed; a dangling symlink too, so its row says `file not found`."""
    try:
        return stat.S_ISREG(entry.stat().st_mode)
    except OSError:
        return entry.is_symlink()


def _folder(root: Path, warn: Warn | None) -> Source:
    notes = WalkNotes()
    paths = walk_folder(root, notes)
    if warn is not None:
        for line in notes.warnings(str(root)):
            warn(line)
    records = [ImageRecord(path=display_path(p), location=str(root / p)) for p in paths]
    return Source(description=f"folder {root}", records=records, count=len(records))


def _read_table(path: Path | str) -> pa.Table:
    """A manifest as an Arrow table; `path` may be an object-store URL. Local files must be regular files."""
    suffix = Path(str(path)).suffix.lower()
    try:
        if storage.is_url(str(path)):
            with storage.open_url(str(path)) as f:
                return _parse_table(f, suffix)
        with open_regular(path) as f:
            return _parse_table(f, suffix)
    except InputError as exc:
        raise SourceError(f"{path}: cannot read manifest: {exc.strerror}") from None
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
    lines = source.read().decode("utf-8").splitlines()
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
    if table.column_names.count(column) > 1:
        raise SourceError(f"{path}: {table.column_names.count(column)} columns are named '{column}'; give the "
                          "path column a name of its own")
    paths = table.column(column)
    if not pa.types.is_string(paths.type) and not pa.types.is_large_string(paths.type):
        try:
            paths = paths.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise SourceError(f"{path}: column '{column}' holds {paths.type} values, not paths") from None
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


def _stdin(stream: TextIO, warn: Warn | None) -> Source:
    def records() -> Iterator[ImageRecord]:
        # Bytes when there are any, so a name that is not UTF-8 reaches the file system as it was given.
        lines = getattr(stream, "buffer", stream)
        undecodable = []
        for line in lines:
            given = (line.decode("utf-8", "surrogateescape") if isinstance(line, bytes) else line).strip()
            if given:
                shown = display_path(given)
                if shown != given:
                    undecodable.append(shown)
                yield ImageRecord(path=shown, location=resolve_location(given, Path.cwd()))
        if undecodable and warn is not None:
            warn(f"stdin: {len(undecodable)} path(s) are not valid UTF-8; they are written with \\x escapes "
                 f"(e.g. {undecodable[0]})")

    return Source(description="stdin", records=records())


def open_source(source: str, path_column: str | None = None, stdin: TextIO | None = None,
                warn: Warn | None = None) -> Source:
    """Open SOURCE: `-` (stdin), a folder, or a manifest file chosen by suffix.

    `warn` receives one line per kind of problem the source had (skipped entries, escaped names).
    """
    if source == "-":
        if stdin is None:
            raise UsageError("SOURCE '-' needs image paths on standard input")
        return _stdin(stdin, warn)
    if storage.is_url(source):
        if Path(source).suffix.lower() in MANIFEST_SUFFIXES:
            return _manifest(source, path_column)
        if storage.is_folder(source):
            return _remote_folder(source)
        raise SourceError(f"{source}: not a folder or a manifest; manifests end in {', '.join(MANIFEST_SUFFIXES)}")
    path = Path(source).expanduser()
    if path.is_dir():
        return _folder(path, warn)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        if not path.exists():
            raise SourceError(f"{path}: manifest not found")
        return _manifest(path, path_column)
    if not path.exists():
        raise SourceError(f"{source}: no such folder or manifest")
    raise SourceError(
        f"{source}: not a folder or a manifest; manifests end in {', '.join(MANIFEST_SUFFIXES)}"
    )
