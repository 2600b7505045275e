"""Open Images image-level labels with Confidence (LabelName is our class name), as CVAT and Datumaro import."""

from __future__ import annotations

import csv
import io
from pathlib import PurePosixPath

from autolabel.review.exporters.base import ExportContext

SUBSET = "train"


def _csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def export(ctx: ExportContext) -> None:
    """annotations/oidv6-class-descriptions.csv, annotations/train-annotations-human-imagelabels.csv, images/train/."""
    labels = [["ImageID", "Source", "LabelName", "Confidence"]]
    for row in ctx.rows:
        if ctx.place(row, "images", SUBSET, row.name):
            labels += [[PurePosixPath(row.name).stem, "verification" if row.human else "autolabel", label,
                        "1" if row.human else "" if score is None else f"{score:.6f}"]
                       for label, score in row.labels]  # one row per label
    ctx.write_text("annotations/oidv6-class-descriptions.csv",
                   _csv([["LabelName", "DisplayName"]] + [[c, c] for c in ctx.classes]))
    ctx.write_text(f"annotations/{SUBSET}-annotations-human-imagelabels.csv", _csv(labels))
