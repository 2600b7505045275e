"""Label Studio: tasks.json with predictions (choices) plus the matching labeling config; reads review exports."""

from __future__ import annotations

import contextlib
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from autolabel.errors import SourceError
from autolabel.exporters.base import ExportContext, ExportRow

FROM_NAME, TO_NAME = "label", "image"
LOCAL_FILES = "/data/local-files/?d="
DOCUMENT_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"


def config_xml(classes: list[str]) -> str:
    """An Image + single-choice Choices labeling config (names escaped by ElementTree)."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", {"name": TO_NAME, "value": "$image"})
    choices = ET.SubElement(view, "Choices", {"name": FROM_NAME, "toName": TO_NAME, "choice": "single",
                                               "showInLine": "true"})
    for name in classes:
        ET.SubElement(choices, "Choice", {"value": name})
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def document_root() -> Path | None:
    """LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, as Label Studio reads it, when set."""
    root = os.environ.get(DOCUMENT_ROOT_ENV)
    return Path(os.path.abspath(root)) if root else None


def local_files_url(source: Path, root: Path) -> str:
    """Label Studio's local-files URL for an image under `root` (its document root)."""
    rel = Path(os.path.abspath(source)).relative_to(Path(os.path.abspath(root))).as_posix()
    return LOCAL_FILES + quote(rel)


def prefixed_url(prefix: str, path: str) -> str:
    """--url-prefix PREFIX: the image's URL is PREFIX/path (the table path, URL-quoted)."""
    return prefix.rstrip("/") + "/" + quote(path.lstrip("/"))


def image_reference(ctx: ExportContext, path: str, source: Path) -> str:
    """--url-prefix + path, else Label Studio's local-files URL relative to its document root (when set in the
    environment) or to the images root."""
    if ctx.url_prefix:
        return prefixed_url(ctx.url_prefix, path)
    for root in (r for r in (document_root(), ctx.images_root) if r is not None):
        with contextlib.suppress(ValueError):
            return local_files_url(source, root)
    return LOCAL_FILES + quote(Path(os.path.abspath(source)).as_posix().lstrip("/"))


def task(row: ExportRow, image: str, model_version: str) -> dict[str, Any]:
    """One Label Studio task: the image, our table path and status, the model's choice as a prediction, and on
    reviewed rows the person's label as an annotation."""
    item: dict[str, Any] = {
        "data": {"image": image, "path": row.path, "status": row.status},
        "predictions": [{
            "model_version": model_version,
            "score": row.confidence,
            "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                        "value": {"choices": [row.model_label]}, "score": row.confidence}],
        }],
    }
    if row.human:  # a person's label travels as an annotation, the model's as the prediction
        item["annotations"] = [{"result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                                            "value": {"choices": [row.label]}}]}]
    return item


def export(ctx: ExportContext) -> None:
    """tasks.json + config.xml."""
    tasks = [task(row, image_reference(ctx, row.path, row.source), ctx.model_version) for row in ctx.rows]
    ctx.write_text("tasks.json", json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
    ctx.write_text("config.xml", config_xml(ctx.classes))


def _path_of(task: dict[str, Any]) -> str | None:
    data = task.get("data") or {}
    if data.get("path"):
        return str(data["path"])
    image = str(data.get("image") or "")
    if image.startswith(LOCAL_FILES):
        return unquote(image[len(LOCAL_FILES):])
    return unquote(image) if image else None


def read_review(path: Path) -> dict[str, str]:
    """A Label Studio JSON export → {table path: the human's choice}; the latest non-cancelled annotation wins."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path}: not a Label Studio JSON export ({exc})") from None
    if not isinstance(tasks, list):
        raise SourceError(f"{path}: a Label Studio JSON export is a list of tasks")
    return reviews(tasks)


def reviews(tasks: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Label Studio tasks (as exported, or from its API) → {table path: the human's choice}; in each task the
    latest non-cancelled annotation with a choice wins."""
    reviewed = {}
    for item in tasks:
        annotations = [a for a in item.get("annotations") or [] if not a.get("was_cancelled")]
        annotations.sort(key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))
        for annotation in reversed(annotations):
            choices = [c for r in annotation.get("result") or [] if r.get("type") == "choices"
                       for c in (r.get("value") or {}).get("choices") or []]
            if choices and (key := _path_of(item)):
                reviewed[key] = str(choices[0])
                break
    return reviewed
