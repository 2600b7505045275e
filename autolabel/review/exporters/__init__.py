"""Exports to annotation tools (one module per format) and reading reviewed labels back."""

from __future__ import annotations

import os
from collections.abc import Callable
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


def export(results: Results, fmt: str, out: Path, status: str = "all", images_root: str | Path | None = None,
           link: str = "symlink", url_prefix: str | None = None, overwrite: bool = False) -> dict[str, Any]:
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
        return {"format": fmt, "rows": 0, "skipped": [], "files": [], "folders": []}
    if not url_prefix and all(isinstance(r.source, Path) and not r.source.is_file() for r in rows):
        raise images_missing(results, root, [r.path for r in rows]) or SourceError(
            f"{results.path}: none of its {len(rows)} images was found under {root}")
    created = prepare_out(out, overwrite)
    ctx = ExportContext(results=results, out=out, rows=rows, link=link, url_prefix=url_prefix, images_root=root)
    try:
        FORMATS[fmt](ctx)
        return write_marker(ctx, fmt)
    except BaseException:
        ctx.remove_written()
        remove_created(created)
        raise


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


def import_review(results: Results, exported: Path) -> dict[str, Any]:
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


def merge_review(results: Results, tool: str, reviewed: dict[str, Any]) -> dict[str, Any]:
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
    unmatched = sorted(set(reviewed) - set(keys))
    changed, replaced = results.task.merge_reviews(frame, keys, reviewed)  # multi-label: lists, changed by set
    matched = sum(k in reviewed for k in keys)
    return {"tool": tool, "reviewed": len(reviewed), "matched": matched, "unmatched": len(reviewed) - matched,
            "changed": changed, "replaced": replaced, "unmatched_keys": unmatched}


def write_table(results: Results) -> None:
    """Write the (updated) table back over itself atomically, keeping every column and the run metadata."""
    rewrite(results.path, results.layout, results.frame, results.metadata, results.task)
