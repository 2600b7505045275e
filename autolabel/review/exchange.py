"""The round trip through annotation tools as library calls: export or push a labels table, merge reviews back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autolabel.core.fileio import check_output_file, check_output_folder
from autolabel.review.exporters import ExportResult, ImportResult, merge_review, read_review, write_table
from autolabel.review.exporters import export as write_export
from autolabel.review.exporters.label_studio_api import PushConfig, PushResult
from autolabel.table.results import load_results

if TYPE_CHECKING:
    from autolabel.core.progress import Reporter

__all__ = ["ExportOptions", "ExportResult", "ImportResult", "LabelStudioProject", "PushConfig", "PushResult",
           "export_labels", "import_reviews", "push_labels"]


@dataclass(frozen=True)
class ExportOptions:
    """How `export_labels` writes a labels table for an annotation tool (the options of `autolabel export`)."""

    fmt: str  # label-studio, cvat, fiftyone, imagefolder, hf or open-images
    out: str | Path  # the folder to write: empty, or see `overwrite`
    status: str = "all"  # which rows: all, accepted or review (error rows never are)
    images_root: str | Path | None = None  # where the table's relative paths resolve [the run's SOURCE folder]
    link: str = "symlink"  # how images are put into `out`: symlink, hardlink or copy
    url_prefix: str | None = None  # Label Studio: image URLs are PREFIX/path instead of local files
    overwrite: bool = False  # write into a non-empty `out`: an earlier export's files are replaced, others kept


@dataclass(frozen=True)
class LabelStudioProject:
    """A project on a running Label Studio server, to pull its reviews from."""

    url: str
    project: str  # its id or title
    api_key: str | None = None  # a Personal Access Token or a legacy token


def export_labels(table: str | Path, options: ExportOptions, spec: str | Path | None = None) -> ExportResult:
    """Write the labels table (a file or a shard folder) to `options.out` in `options.fmt`, confidences kept.

    Nothing is written when no row has the wanted status (`rows` is 0); a failed export removes what it wrote.
    `spec`: the label spec, for a CSV table without its sidecar.
    """
    check_output_folder(options.out, "--out")
    results = load_results(table, spec)
    return write_export(results, options.fmt, Path(options.out), options.status, options.images_root, options.link,
                        options.url_prefix, options.overwrite)


def push_labels(table: str | Path, config: PushConfig, spec: str | Path | None = None,
                reporter: Reporter | None = None) -> PushResult:
    """Push the labels table to Label Studio: a project (or the one with that title) holding each row's prediction
    as a task, only the tasks it lacks added (see `label_studio_api.push`)."""
    from autolabel.review.exporters.label_studio_api import push

    return push(load_results(table, spec), config, reporter)


def import_reviews(into: str | Path, source: str | Path | LabelStudioProject,
                   spec: str | Path | None = None) -> ImportResult:
    """Merge people's reviews into the labels table `into` as `reviewed_label` / `reviewed_by_human`, rewriting it
    in place (every column and the run metadata kept).

    `source`: a Label Studio JSON export, a CVAT for images 1.1 XML export, a path,reviewed_label CSV (the report's
    corrections), or a Label Studio project. A shard folder is locked meanwhile: while a run (or another import)
    writes it, this refuses (UsageError) and changes nothing.
    """
    with _rewritable(into, source, spec):
        results = load_results(into, spec)
        if isinstance(source, LabelStudioProject):
            from autolabel.review.exporters.label_studio_api import pull_reviews

            merged = merge_review(results, "label-studio", pull_reviews(source.url, source.api_key, source.project,
                                                                        results.task))
        else:
            merged = merge_review(results, *read_review(Path(source), results.task))
        write_table(results)
    return merged


@contextlib.contextmanager
def _rewritable(into: str | Path, source: str | Path | LabelStudioProject, spec: str | Path | None) -> Iterator[None]:
    """Refuse a table that cannot be rewritten in place; hold a shard folder's lock until the block ends (its parts
    are rewritten one by one, never while a run writes them)."""
    if not Path(into).is_dir():
        check_output_file(into, "--into", (None if isinstance(source, LabelStudioProject) else source, spec))
        yield
        return
    from autolabel.labelling.output import FolderLock
    from autolabel.table.shards import finished_manifest

    check_output_folder(into, "--into")
    finished_manifest(into)  # no lock file is left in a folder that is not a finished run's
    lock = FolderLock.take(Path(into), str(into))
    try:
        yield
    finally:
        lock.release()
