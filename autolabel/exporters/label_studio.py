"""Label Studio: tasks.json with predictions (choices) plus the matching labeling config; reads review exports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from autolabel.errors import SourceError
from autolabel.exporters.base import ExportContext

FROM_NAME, TO_NAME = "label", "image"
LOCAL_FILES = "/data/local-files/?d="


def config_xml(classes: list[str], multiple: bool = False) -> str:
    """An Image + Choices labeling config, single or multiple choice (names escaped by ElementTree)."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", {"name": TO_NAME, "value": "$image"})
    choices = ET.SubElement(view, "Choices", {"name": FROM_NAME, "toName": TO_NAME,
                                               "choice": "multiple" if multiple else "single", "showInLine": "true"})
    for name in classes:
        ET.SubElement(choices, "Choice", {"value": name})
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def image_reference(ctx: ExportContext, path: str, source: Path) -> str:
    """--url-prefix + path, else Label Studio's local-files URL relative to the images root."""
    if ctx.url_prefix:
        return ctx.url_prefix.rstrip("/") + "/" + quote(path.lstrip("/"))
    try:
        rel = source.resolve().relative_to(ctx.images_root.resolve()).as_posix()
    except ValueError:
        rel = source.resolve().as_posix().lstrip("/")
    return LOCAL_FILES + quote(rel)


def export(ctx: ExportContext) -> None:
    """tasks.json + config.xml."""
    tasks = []
    for row in ctx.rows:
        chosen = [name for name, _ in row.labels] if ctx.multi_label else [row.label]
        predicted = list(row.model_labels) if ctx.multi_label else [row.model_label]
        task: dict[str, Any] = {
            "data": {"image": image_reference(ctx, row.path, row.source), "path": row.path, "status": row.status},
            "predictions": [{
                "model_version": ctx.model_version,
                "score": row.confidence,
                "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                            "value": {"choices": predicted}, "score": row.confidence}] if predicted else [],
            }],
        }
        if row.human:  # a person's label travels as an annotation, the model's as the prediction
            task["annotations"] = [{"result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                                                "value": {"choices": chosen}}]}]
        tasks.append(task)
    ctx.write_text("tasks.json", json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
    ctx.write_text("config.xml", config_xml(ctx.classes, ctx.multi_label))


def _path_of(task: dict[str, Any]) -> str | None:
    data = task.get("data") or {}
    if data.get("path"):
        return str(data["path"])
    image = str(data.get("image") or "")
    if image.startswith(LOCAL_FILES):
        return unquote(image[len(LOCAL_FILES):])
    return unquote(image) if image else None


def read_review(path: Path, multi_label: bool = False) -> dict[str, Any]:
    """A Label Studio JSON export → {table path: the human's choice}; the latest non-cancelled annotation wins.

    `multi_label`: every choice of that annotation, as a list (an annotation with none: `[]`, no class applies).
    """
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path}: not a Label Studio JSON export ({exc})") from None
    if not isinstance(tasks, list):
        raise SourceError(f"{path}: a Label Studio JSON export is a list of tasks")
    reviewed = {}
    for task in tasks:
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        annotations.sort(key=lambda a: (a.get("updated_at") or a.get("created_at") or "", a.get("id") or 0))
        for annotation in reversed(annotations):
            choices = [c for r in annotation.get("result") or [] if r.get("type") == "choices"
                       for c in (r.get("value") or {}).get("choices") or []]
            if multi_label and (key := _path_of(task)):
                reviewed[key] = list(dict.fromkeys(str(c) for c in choices))
                break
            if choices and (key := _path_of(task)):
                reviewed[key] = str(choices[0])
                break
    return reviewed
