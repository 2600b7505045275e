"""Hugging Face `imagefolder`: images plus metadata.jsonl (file_name, label, confidence, status; labels, scores)."""

from __future__ import annotations

import json

from autolabel.review.exporters.base import ExportContext


def export(ctx: ExportContext) -> None:
    """images/<name> and metadata.jsonl beside them (load with load_dataset("imagefolder", data_dir=OUT))."""
    lines = []
    for row in ctx.rows:
        if ctx.place(row, "images", row.name):
            record = {"file_name": f"images/{row.name}", "label": row.label, "confidence": row.confidence,
                      "status": row.status, "path": row.path}
            # multi-label: list columns, every label and its score
            record.update(ctx.task.extra({"labels": [c for c, _ in row.labels], "scores": [s for _, s in row.labels]}))
            lines.append(json.dumps(record, ensure_ascii=False))
    ctx.write_text("metadata.jsonl", "".join(line + "\n" for line in lines))
