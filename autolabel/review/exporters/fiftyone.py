"""FiftyOneImageClassificationDataset: data/ plus labels.json with label and confidence per sample.

Multi-label tables: a list of {label, confidence} per sample, which FiftyOne imports as `Classifications`.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from autolabel.review.exporters.base import ExportContext


def export(ctx: ExportContext) -> None:
    """data/<uuid>.<ext> and labels.json {classes, labels: {uuid: {label, confidence}}}."""
    labels = {}
    for row in ctx.rows:
        if ctx.place(row, "data", row.name):
            labels[PurePosixPath(row.name).stem] = ctx.task.cell(  # single-label: the one {label, confidence}
                [{"label": c, "confidence": None if row.human else s} for c, s in row.labels])
    ctx.write_text("labels.json", json.dumps({"classes": ctx.classes, "labels": labels}, indent=1,
                                             ensure_ascii=False) + "\n")
