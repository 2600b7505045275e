"""Exports to annotation tools (one module per format) and reading reviewed labels back."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autolabel.core import storage
from autolabel.core.errors import SourceError, UsageError
from autolabel.review.exporters import cvat, fiftyone, hf, imagefolder, label_studio, open_images
from autolabel.review.exporters.base import (
    LINKS,
    ExportContext,
    export_names,
    export_rows,
    prepare_out,
    remove_created,
    write_marker,
)
from autolabel.table.results import Results, find_images_root, images_missing, rewrite
from autolabel.task import SINGLE, Task

FORMATS: dict[str, Callable[[ExportContext], None]] = {
    "label-studio": label_studio.export,
    "cvat": cvat.export,
    "fiftyone": fiftyone.export,
    "imagefolder": imagefolder.export,
    "hf": hf.export,
    "open-images": open_images.export,
}
ONE_LABEL_EACH = {"imagefolder": imagefolder.MULTI_LABEL}  # formats that hold one label per image: why not


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote (nothing when `rows` is 0)."""

    format: str
    out: Path
    table_rows: int  # rows of the labels table
    rows: int  # of them, rows with the wanted status (error rows never are)
    skipped: tuple[str, ...] = ()  # "path: why" of each row left out (its image unreadable, …)
    files: tuple[str, ...] = ()  # every file written, relative to `out`, POSIX
    folders: tuple[str, ...] = ()  # every folder created
    local_files: Path | str | None = None  # Label Studio: the images root, for a Local files storage to serve

    @property
    def exported(self) -> int:
        """Images exported."""
        return self.rows - len(self.skipped)


@dataclass(frozen=True)
class ImportResult:
    """What merging a tool's reviews into a labels table did."""

    tool: str  # label-studio, cvat or csv
    reviewed: int  # reviews read
    matched: int  # rows of the table they name
    unmatched: int  # reviews that name no row
    changed: int  # reviewed rows of the table whose label (set) now differs from the model's
    replaced: int  # earlier reviews replaced by a different label
    unmatched_keys: tuple[str, ...] = ()  # the files of those reviews, sorted


def export(results: Results, fmt: str, out: Path, status: str = "all", images_root: str | Path | None = None,
           link: str = "symlink", url_prefix: str | None = None, overwrite: bool = False) -> ExportResult:
    """Write `results` to `out` in format `fmt`; returns what was written and skipped.

    Nothing is written when no row has the wanted status (`rows` is 0). A table whose images are all
    missing (a wrong images root) is refused before anything is written, unless they are served from
    `url_prefix`. A failed or interrupted export
    removes the files it wrote.
    """
    if fmt not in FORMATS:
        raise UsageError(f"--to {fmt}: unknown format; choose one of {', '.join(FORMATS)}")
    if link not in LINKS:
        raise UsageError(f"--link {link}: choose one of {', '.join(LINKS)}")
    if results.task.multiple and fmt in ONE_LABEL_EACH:
        raise UsageError(ONE_LABEL_EACH[fmt])
    root = find_images_root(results, images_root)
    rows = export_rows(results, status, root)
    if not rows:
        return ExportResult(fmt, out, len(results.frame), 0)
    if not url_prefix and all(isinstance(r.source, Path) and not r.source.is_file() for r in rows):
        raise images_missing(results, root, [r.path for r in rows]) or SourceError(
            f"{results.path}: none of its {len(rows)} images was found under {root}")
    created = prepare_out(out, overwrite)
    ctx = ExportContext(results=results, out=out, rows=rows, link=link, url_prefix=url_prefix, images_root=root)
    try:
        FORMATS[fmt](ctx)
        write_marker(ctx, fmt)
    except BaseException:
        ctx.remove_written()
        remove_created(created)
        raise
    needs_storage = fmt == "label-studio" and not url_prefix and label_studio.document_root() is None and root
    return ExportResult(fmt, out, len(results.frame), len(rows), tuple(ctx.skipped), tuple(sorted(ctx.written)),
                        tuple(sorted(ctx.folders)), root if needs_storage else None)


def read_review(path: Path, task: Task = SINGLE) -> tuple[str, dict[str, Any]]:
    """A reviewed export from Label Studio (JSON), CVAT (XML 1.1) or the report (CSV) → (tool, {key: label}).

    Multi-label (`task`): each label is a list of labels.
    """
    if path.suffix.lower() == ".xml":
        return "cvat", cvat.read_review(path, task)
    if path.suffix.lower() == ".json":
        return "label-studio", label_studio.read_review(path, task)
    if path.suffix.lower() == ".csv":
        from autolabel.learn.examples import read_table

        base = os.path.abspath(path.parent)
        reviewed: dict[str, Any] = {}
        for example in read_table(str(path), None, task, ""):
            key = _csv_key(example.location, base)
            if key in reviewed and reviewed[key] != example.label:
                raise SourceError(f"{path}: {key} is reviewed twice with different labels ({reviewed[key]!r} and "
                                  f"{example.label!r}, {example.origin}); keep one row per image")
            reviewed[key] = example.label
        return "csv", reviewed
    raise UsageError(f"{path}: expected a Label Studio .json export, a CVAT .xml export or a path,reviewed_label "
                     ".csv (the report's corrections)")


def import_review(results: Results, exported: Path) -> ImportResult:
    """Add `reviewed_label` and `reviewed_by_human` to the table from a reviewed export; returns counts.

    Multi-label tables get a list per reviewed row (every class the person chose).
    """
    return merge_review(results, *read_review(exported, results.task))


def _csv_key(location: str, base: str) -> str:
    """A CSV row's file; one that does not exist keeps the path as written (relative to the CSV), which may be
    how the labels table itself names it."""
    if storage.is_url(location) or os.path.lexists(location) or not location.startswith(base + os.sep):
        return location
    return os.path.relpath(location, base).replace(os.sep, "/")


def merge_review(results: Results, tool: str, reviewed: dict[str, Any]) -> ImportResult:
    """Merge a tool's reviews ({key: label, or labels on multi-label tables}) into the table as `reviewed_label` /
    `reviewed_by_human`; earlier reviews of rows the tool does not mention are kept. Returns counts."""
    frame = results.frame
    keys = list(frame["path"].astype(str))
    if tool == "cvat":  # CVAT knows images by the names our export gave them
        paths = {name: path for path, name in export_names(results).items()}
        reviewed = {paths.get(n, n): label for n, label in reviewed.items()}  # an unknown name stays unmatched
    elif tool == "csv":  # the CSV names files (absolute, or relative to itself): match the rows' files
        from autolabel.core.records import identity

        root = results.images_root()
        by_file = {identity(str(results.location(k, root))): k for k in keys}
        reviewed = {by_file.get(identity(loc), loc): label for loc, label in reviewed.items()}
    known = set(results.classes)
    unknown = sorted({label for value in reviewed.values()
                      for label in (value if isinstance(value, list | tuple) else [value]) if label not in known})
    if unknown:
        raise UsageError(f"reviewed labels outside the spec: {', '.join(map(repr, unknown[:10]))}"
                         f"{' …' if len(unknown) > 10 else ''}; the classes are {', '.join(results.classes)}: "
                         "fix them in the review export (nothing was merged)")
    unmatched = tuple(sorted(set(reviewed) - set(keys)))
    changed, replaced = results.task.merge_reviews(frame, keys, reviewed)  # multi-label: lists, changed by set
    matched = sum(k in reviewed for k in keys)
    return ImportResult(tool, len(reviewed), matched, len(reviewed) - matched, changed, replaced, unmatched)


def write_table(results: Results) -> None:
    """Write the (updated) table back over itself atomically, keeping every column and the run metadata."""
    rewrite(results.path, results.layout, results.frame, results.metadata, results.task)
