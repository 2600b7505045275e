"""One folder per class (accepted and human-reviewed rows); review rows under _review/<predicted class>/."""

from __future__ import annotations

from autolabel.review.exporters.base import ExportContext, folder_name

REVIEW = "_review"
MULTI_LABEL = ("--to imagefolder: one folder per class holds one class per image, and this table is multi-label "
               "(a `labels` list per image); export it with --to hf, fiftyone, label-studio, cvat or open-images")


def export(ctx: ExportContext) -> None:
    """<class>/<image> for accepted rows, _review/<class>/<image> for review rows."""
    for row in ctx.rows:
        parts = (folder_name(row.label), row.name)
        ctx.place(row, *((REVIEW, *parts) if row.status == "review" else parts))
