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

from autolabel.core.errors import SourceError
from autolabel.core.fileio import InputError, read_text
from autolabel.review.exporters.base import ExportContext, ExportRow, xml_document
from autolabel.task import SINGLE, Task

FROM_NAME, TO_NAME = "label", "image"
LOCAL_FILES = "/data/local-files/?d="
DOCUMENT_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"


def config_xml(classes: list[str], multiple: bool = False) -> str:
    """An Image + Choices labeling config, single or multiple choice (names escaped by ElementTree)."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", {"name": TO_NAME, "value": "$image"})
    choices = ET.SubElement(view, "Choices", {"name": FROM_NAME, "toName": TO_NAME,
                                               "choice": "multiple" if multiple else "single", "showInLine": "true"})
    for name in classes:
        ET.SubElement(choices, "Choice", {"value": name})
    return xml_document(view, declaration=False)


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


def image_reference(ctx: ExportContext, path: str, source: Path | str) -> str:
    """--url-prefix + path, else the object-store URL, else a local-files URL relative to Label Studio's document
    root (when set in the environment) or to the images root's parent."""
    if ctx.url_prefix:
        return prefixed_url(ctx.url_prefix, path)
    if isinstance(source, str):
        return source
    # Label Studio refuses a storage equal to its document root: without one set, the images folder's parent is it.
    for root in (r for r in (document_root(), Path(ctx.images_root).parent) if r is not None):
        with contextlib.suppress(ValueError):
            return local_files_url(source, root)
    return LOCAL_FILES + quote(Path(os.path.abspath(source)).as_posix().lstrip("/"))


def task(row: ExportRow, image: str, model_version: str) -> dict[str, Any]:
    """One Label Studio task: the image, our table path and status, the model's choice(s) as a prediction, and on
    reviewed rows the person's label(s) as an annotation."""
    chosen = [name for name, _ in row.labels]
    predicted = list(row.model_labels)
    item: dict[str, Any] = {
        "data": {"image": image, "path": row.path, "status": row.status},
        "predictions": [{
            "model_version": model_version,
            "score": row.confidence,
            "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                        "value": {"choices": predicted}, "score": row.confidence}] if predicted else [],
        }],
    }
    if row.human:  # a person's label travels as an annotation, the model's as the prediction
        item["annotations"] = [{"result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                                            "value": {"choices": chosen}}]}]
    return item


def export(ctx: ExportContext) -> None:
    """tasks.json + config.xml."""
    tasks = [task(row, image_reference(ctx, row.path, row.source), ctx.model_version) for row in ctx.rows]
    ctx.write_text("tasks.json", json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
    ctx.write_text("config.xml", config_xml(ctx.classes, ctx.task.multiple))


def _path_of(task: dict[str, Any]) -> str | None:
    data = task.get("data") or {}
    if not isinstance(data, dict):
        return None
    if data.get("path"):
        return str(data["path"])
    image = str(data.get("image") or "")
    if image.startswith(LOCAL_FILES):
        return unquote(image[len(LOCAL_FILES):])
    return unquote(image) if image else None


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _malformed(where, f"must be a list, got {type(value).__name__}")
    return value


def _dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _malformed(where, f"must be an object, got {type(value).__name__}")
    return value


def _malformed(where: str, what: str) -> SourceError:
    return SourceError(f"{where} {what}; is this a Label Studio JSON export of the tasks?")


def _choices(annotation: dict[str, Any], where: str) -> list[str]:
    choices = []
    for j, result in enumerate(_list(annotation.get("result"), f"{where}.result")):
        result = _dict(result, f"{where}.result[{j}]")
        if result.get("type") == "choices":
            value = _dict(result.get("value") or {}, f"{where}.result[{j}].value")
            choices += [str(c) for c in _list(value.get("choices"), f"{where}.result[{j}].value.choices")]
    return choices


def read_review(path: Path, kind: Task = SINGLE) -> dict[str, Any]:
    """A Label Studio JSON export → {table path: the human's choice}; the latest non-cancelled annotation wins.

    Multi-label (`kind`): every choice of that annotation, as a list (none: `[]`, no class applies).
    """
    try:
        tasks = json.loads(read_text(path, "a Label Studio export"))
    except InputError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror})") from None
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"{path}: not a Label Studio JSON export ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(tasks, list):
        raise SourceError(f"{path}: a Label Studio JSON export is a list of tasks")
    dicts = [t for t in tasks if isinstance(t, dict)]
    if dicts and len(dicts) == len(tasks) and not any(isinstance(t.get("data"), dict) for t in dicts):
        raise SourceError(f"{path}: no task has a `data` object, so this is not a Label Studio JSON export "
                          "(in the project: Export → JSON)")
    return reviews(tasks, str(path), kind)


def reviews(tasks: Iterable[Any], origin: str, kind: Task = SINGLE) -> dict[str, Any]:
    """Label Studio tasks (as exported, or from its API; `origin` names them in errors) → {table path: the
    human's choice (multi-label: every choice)}; in each task the latest non-cancelled annotation wins."""
    reviewed = {}
    for i, item in enumerate(tasks):
        item = _dict(item, f"{origin}: task [{i}]")
        where = f"{origin}: task [{i}] annotations"
        annotations = [_dict(a, f"{where}[{k}]") for k, a in enumerate(_list(item.get("annotations"), where))]
        kept = [(k, a) for k, a in enumerate(annotations) if not _cancelled(a.get("was_cancelled"))]
        kept.sort(key=lambda ka: (_when(ka[1].get("updated_at") or ka[1].get("created_at")),
                                  _number(ka[1].get("id"))))
        for k, annotation in reversed(kept):
            choices = _choices(annotation, f"{where}[{k}]")
            key = _path_of(item)
            value = kind.cell(list(dict.fromkeys(choices)))
            if key and value is not None:
                if key in reviewed and reviewed[key] != value:
                    raise SourceError(f"{origin}: {key} has two tasks with different reviews ({reviewed[key]!r} and "
                                      f"{value!r}, task [{i}]); keep one task per image")
                reviewed[key] = value
                break
    return reviewed


def _when(value: Any) -> float:
    """An annotation's time as a number (ISO 8601 with any offset; unreadable or missing: earliest)."""
    from datetime import datetime, timezone

    if not isinstance(value, str) or not value.strip():
        return float("-inf")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return float("-inf")
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _cancelled(value: Any) -> bool:
    """Label Studio writes a boolean; a hand-edited export may carry "false"/"true" or 0/1."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
