"""What every exporter shares: the rows to export, safe unique file names, linking images into --out."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from autolabel.core.errors import UsageError
from autolabel.core.fileio import InputError, open_regular, read_text, write_text
from autolabel.table.results import Results
from autolabel.task import Task

MARKER = ".autolabel-export.json"
# Datumaro's imagenet importer refuses a folder holding any non-image file: the marker goes beside it.
MARKER_BESIDE = frozenset({"imagefolder"})
STATUSES = ("all", "accepted", "review", "reviewed")
LINKS = ("symlink", "hardlink", "copy")
_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


@dataclass(frozen=True)
class ExportRow:
    """One labelled image to export."""

    path: str  # as in the table
    source: Path | str  # the image file (a URL string for an object store)
    name: str  # a safe, unique, flat file name for it inside the export
    label: str  # the human label on `reviewed` rows, else the model's
    confidence: float  # the model's top-1 probability
    status: str
    model_label: str = ""  # the model's top-1 class (differs from `label` where a person overruled it)
    # What a format writes per row (the task's export cells): every label with its score, best first (a person's
    # if human; single-label: `label` and `confidence`), and the model's own labels (differ where overruled).
    labels: tuple[tuple[str, float | None], ...] = ()
    model_labels: tuple[str, ...] = ()

    @property
    def human(self) -> bool:
        """A person gave this label (the image was among the reviewed examples)."""
        return self.status == "reviewed"


@dataclass
class ExportContext:
    """The table, the rows chosen for export and the options, handed to a format's writer.

    Every file and folder it creates is recorded, so the export's marker can list them and a failed or
    interrupted export can remove exactly what it wrote. It never replaces a file it did not write.
    """

    results: Results
    out: Path
    rows: list[ExportRow]
    link: str = "symlink"
    url_prefix: str | None = None
    images_root: Path | str = field(default_factory=Path.cwd)
    written: list[str] = field(default_factory=list)  # files, relative to out, POSIX
    folders: list[str] = field(default_factory=list)  # folders created, relative to out, POSIX
    skipped: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Class names in spec order."""
        return self.results.classes

    @property
    def task(self) -> Task:
        """The table's task (single- or multi-label)."""
        return self.results.task

    @property
    def model_version(self) -> str:
        """Model id (and fingerprint) for tools that record which model predicted."""
        return model_version(self.results)

    def target(self, *parts: str) -> Path:
        """A new path inside --out, its folders created; anything outside --out, or an existing file, is refused."""
        path = self.out.joinpath(*parts)
        if not path.resolve().is_relative_to(self.out.resolve()):
            raise UsageError(f"refusing to write outside --out: {path}")
        if path.exists() or path.is_symlink():
            raise UsageError(f"--out {self.out}: {path.relative_to(self.out).as_posix()} exists and was not "
                             "written by an earlier export of ours; move it away or choose another folder")
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists() and self.out in (p, *p.parents)]
        for folder in reversed(missing):
            folder.mkdir()
            self.folders.append(folder.relative_to(self.out).as_posix())
        return path

    def _record(self, path: Path) -> None:
        self.written.append(path.relative_to(self.out).as_posix())

    def place(self, row: ExportRow, *parts: str) -> bool:
        """Link or copy a row's image to out/parts; False (and noted) when the image is missing."""
        if isinstance(row.source, str):
            self.skipped.append(f"{row.path}: {row.source} is in an object store; exports link local files "
                                "(download the images and pass --images-root)")
            return False
        problem = image_problem(row.source)
        if problem:
            self.skipped.append(f"{row.path}: {problem}")
            return False
        dst = self.target(*parts)
        if self.link == "symlink":
            os.symlink(row.source.resolve(), dst)
        elif self.link == "hardlink":
            try:
                os.link(row.source, dst)
            except OSError as exc:
                raise UsageError(f"cannot hard-link {row.source} into {self.out} ({exc.strerror}); "
                                 "use --link copy or symlink") from None
        else:
            try:
                shutil.copy2(row.source, dst)
            except OSError as exc:
                dst.unlink(missing_ok=True)
                self.skipped.append(f"{row.path}: cannot copy {row.source} ({exc.strerror})")
                return False
        self._record(dst)
        return True

    def write_text(self, name: str, text: str) -> Path:
        """Write a text file inside --out (atomically)."""
        path = self.target(name)
        write_text(path, text)
        self._record(path)
        return path

    def remove_written(self) -> None:
        """Undo this export: remove the files and folders it created, nothing else."""
        remove_listed(self.out, self.written, self.folders)


def image_problem(source: Path) -> str | None:
    """Why a table row's file must not go into an export (None: a regular image file).

    A labels table is data: a row may name any path, so only image files are ever linked, copied or uploaded.
    """
    try:
        real = source.resolve()
        info = real.stat()
    except (OSError, RuntimeError):
        return f"image not found at {source}"
    if not stat.S_ISREG(info.st_mode):
        return f"{source} is not a regular file"
    if str(real).startswith(("/proc/", "/sys/", "/dev/")):
        return f"{source} is a system file, not an image"
    from PIL import Image, UnidentifiedImageError

    try:
        with open_regular(real) as handle, Image.open(handle):
            return None
    except (OSError, UnidentifiedImageError, InputError, ValueError, Image.DecompressionBombError):
        return f"{source} is not an image file"


def model_version(results: Results) -> str:
    """The run's model id (and fingerprint), as tools that record which model predicted show it."""
    model = results.metadata.get("model", {})
    name = model.get("id", "autolabel")
    return f"{name}@{model['fingerprint']}" if model.get("fingerprint") else str(name)


def safe_names(paths: Sequence[str]) -> list[str]:
    """Flat file names for table paths: no folders, no `..`, no absolute roots; stems unique ignoring case."""
    names, seen = [], set()
    for given in paths:
        pure = PurePosixPath(str(given).replace("\\", "/"))
        parts = [p for p in pure.parts if p not in ("/", "", ".")]
        parts = ["__up" if p == ".." else p for p in parts] or ["image"]
        suffix = PurePosixPath(parts[-1]).suffix.lower()
        parts[-1] = parts[-1][: -len(suffix)] if suffix else parts[-1]
        stem = "__".join(_UNSAFE.sub("_", unicodedata.normalize("NFC", p)).strip("._") or "_" for p in parts)
        if len(stem) > 120:
            stem = stem[:100] + "-" + hashlib.sha1(stem.encode()).hexdigest()[:12]
        candidate, n = stem, 1
        while candidate.casefold() in seen:
            n += 1
            candidate = f"{stem}~{n}"
        seen.add(candidate.casefold())
        names.append(candidate + (suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix or "") else ".jpg"))
    return names


def folder_name(label: str) -> str:
    """A class name usable as one folder name (slashes and dot-only names replaced)."""
    name = unicodedata.normalize("NFC", label).replace("/", "∕").replace("\\", "∖").replace("\0", "")
    return "_" + name if name in ("", ".", "..") or name.startswith(".") else name


def export_names(results: Results) -> dict[str, str]:
    """Table path → the file name every export gives it (computed over all non-error rows, so it does not
    depend on --status and import-review can map a tool's names back)."""
    paths = [str(p) for p in results.frame.loc[results.frame["status"] != "error", "path"]]
    return dict(zip(paths, safe_names(paths), strict=True))


def export_rows(results: Results, status: str, images_root: Path) -> list[ExportRow]:
    """Non-error rows with the chosen status, each with a unique safe name (names do not depend on --status)."""
    if status not in STATUSES:
        raise UsageError(f"--status must be one of {', '.join(STATUSES)}")
    frame = results.frame
    ok = frame[frame["status"] != "error"]
    names = export_names(results)
    rows = []
    task, thresholds = results.task, results.thresholds
    columns = ok[["path", "label", "confidence", "status", "top_labels"]].itertuples(index=False)
    for i, (path, label, conf, row_status, tops) in enumerate(columns):
        if status == "all" or row_status == status:
            model = str(tops[0]) if len(tops) else str(label)
            rows.append(ExportRow(path=str(path), source=results.location(str(path), images_root),
                                  name=names[str(path)], label=str(label), confidence=float(conf),
                                  status=str(row_status),
                                  model_label=model, **task.export_cells(ok, i, thresholds)))
    return rows


def marker_path(out: Path, fmt: str) -> Path:
    """Where an export's marker lives: inside it, or beside it for layouts whose importers read every file."""
    return _marker_beside(out) if fmt in MARKER_BESIDE else out / MARKER


def _marker_beside(out: Path) -> Path:
    folder = Path(os.path.abspath(out))
    return folder.parent / f".{folder.name}{MARKER}"


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(read_text(path, "an export marker"))
    except (InputError, ValueError):
        return None  # unreadable or not ours: nothing it lists is trusted
    ok = isinstance(data, dict) and data.get("tool") == "autolabel"
    return data if ok and all(isinstance(data.get(k), list) for k in ("files", "folders")) else None


def remove_listed(out: Path, files: Sequence[Any], folders: Sequence[Any]) -> None:
    """Delete the listed files (links are unlinked, never followed) and then the listed folders left empty.

    An entry that is not a plain relative path inside `out`, or whose folder leads outside it (a symlink
    put there later), is left alone.
    """
    root = out.resolve()
    for rel in files:
        path = _inside(out, root, rel)
        if path is not None and (path.is_symlink() or path.is_file()):
            path.unlink()
    for rel in sorted((f for f in folders if isinstance(f, str)), key=lambda f: -f.count("/")):
        path = _inside(out, root, rel)
        if path is not None and path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):  # not empty: someone else's files are in it
                path.rmdir()


def _inside(out: Path, root: Path, rel: Any) -> Path | None:
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\0" in rel:
        return None
    parts = PurePosixPath(rel).parts
    if any(p in ("..", ".") for p in parts):
        return None
    path = out.joinpath(*parts)
    return path if path.parent.resolve().is_relative_to(root) else None
def prepare_out(out: Path, overwrite: bool) -> list[Path]:
    """Refuse a non-empty --out unless --overwrite; then remove the files an earlier export of ours listed.

    Only files a marker lists are deleted: files of the user's in the folder stay, and if the new export
    would need one of their names, it stops (see ExportContext.target) rather than replace it. Returns the
    folders it created (--out and any missing parent, deepest first), for a failed export to remove.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    markers = [m for m in (out / MARKER, _marker_beside(out)) if m.is_file()]
    if (out.is_dir() and any(out.iterdir())) or markers:
        if not overwrite:
            raise UsageError(f"--out {out}: folder is not empty; pass --overwrite or choose an empty folder")
        for marker in markers:
            listed = _read_marker(marker)
            if listed is not None:
                remove_listed(out, listed["files"], listed["folders"])
                marker.unlink()
    created = [folder for folder in (out, *out.parents) if not folder.exists()]
    out.mkdir(parents=True, exist_ok=True)
    return created


def remove_created(folders: Sequence[Path]) -> None:
    """Remove the folders prepare_out created, deepest first, each only while empty (a file of anyone's stays)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def write_marker(ctx: ExportContext, fmt: str) -> None:
    """A record of the export (format, counts, source table, every file and folder it created), so that
    `--overwrite` can later remove exactly those."""
    info = {"tool": "autolabel", "format": fmt, "table": str(ctx.results.path), "rows": len(ctx.rows),
            "skipped": ctx.skipped, "files": sorted(ctx.written), "folders": sorted(ctx.folders)}
    write_text(marker_path(ctx.out, fmt), json.dumps(info, indent=2, ensure_ascii=False) + "\n")


_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_document(root: ET.Element, declaration: bool = True) -> str:
    """An ElementTree as XML text; characters XML 1.0 cannot carry (control characters) become U+FFFD."""
    ET.indent(root)
    text = ('<?xml version="1.0" encoding="utf-8"?>\n' if declaration else "") + ET.tostring(root, encoding="unicode")
    return _XML_INVALID.sub("\ufffd", text) + "\n"
