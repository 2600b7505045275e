"""Hugging Face `imagefolder`: images plus metadata.jsonl (file_name, label, confidence, status)."""

from __future__ import annotations

import json

from autolabel.exporters.base import ExportContext


def export(ctx: ExportContext) -> None:
    """images/<name> and metadata.jsonl beside them (load with load_dataset("imagefolder", data_dir=OUT))."""
    lines = []
    for row in ctx.rows:
        if ctx.place(row, "images", row.name):
            lines.append(json.dumps({"file_name": f"images/{row.name}", "label": row.label,
                                     "confidence": row.confidence, "status": row.status, "path": row.path},
                                    ensure_ascii=False))
    ctx.write_text("metadata.jsonl", "".join(line + "\n" for line in lines))
