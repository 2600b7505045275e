"""What a project has taught: its annotations, read from Label Studio's webhooks, kept in a file per project."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autolabel.core.fileio import InputError, read_json_object, write_text
from autolabel.serve.labelconfig import ChoicesTarget


class PayloadError(ValueError):
    """A request Label Studio sent that cannot be used (one line, sent back as the error)."""


@dataclass(frozen=True)
class Annotation:
    """One annotation of a task: the image it labels and the spec labels chosen (skipped: `cancelled`)."""

    id: int
    task: int
    image: str  # the task's image URL, as the task names it
    labels: tuple[str, ...]
    cancelled: bool = False
    updated: str = ""  # ISO time, to tell the latest annotation of a task


def project_key(project: Any) -> str:
    """Label Studio's project id as the backend protocol names it, "ID.CREATED" (creation time in whole seconds),
    from a /predict or /setup string or a webhook's project object: two servers' project 1 are different keys."""
    if isinstance(project, str) and re.fullmatch(r"\d+\.\d+", project.strip()):
        return project.strip()
    if isinstance(project, dict) and isinstance(project.get("id"), int):
        created = project.get("created_at")
        try:
            moment = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        except ValueError:
            raise PayloadError(f"project {project['id']}: created_at {created!r} is not an ISO time") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        return f"{project['id']}.{int(moment.timestamp())}"
    raise PayloadError(f"project {str(project)[:80]!r}: expected \"ID.TIMESTAMP\" or a project object")


def read_annotation(annotation: Any, task: Any, target: ChoicesTarget) -> Annotation:
    """A webhook's annotation + task → Annotation; a choice that is not one of the spec's labels is a PayloadError."""
    if not isinstance(annotation, dict) or not isinstance(annotation.get("id"), int):
        raise PayloadError("annotation: expected an object with an integer id")
    if not isinstance(task, dict) or not isinstance(task.get("id"), int) or not isinstance(task.get("data"), dict):
        raise PayloadError(f"annotation {annotation['id']}: its task (with id and data) is missing")
    image = task["data"].get(target.data_key)
    if not isinstance(image, str):
        raise PayloadError(f"task {task['id']}: no image URL in data.{target.data_key}")
    results = annotation.get("result") or []
    if not isinstance(results, list):
        raise PayloadError(f"annotation {annotation['id']}: result must be a list")
    labels: list[str] = []
    for result in results:
        if not isinstance(result, dict) or result.get("from_name") != target.from_name:
            continue
        choices = (result.get("value") or {}).get("choices") if isinstance(result.get("value"), dict) else None
        for choice in choices if isinstance(choices, list) else []:
            label = target.label_of(str(choice))
            if label is None:
                raise PayloadError(f"annotation {annotation['id']}: choice {choice!r} is not a label of the spec")
            labels.append(label)
    updated = annotation.get("updated_at")  # an ISO string in webhooks, a datetime from the SDK
    return Annotation(annotation["id"], task["id"], image, tuple(dict.fromkeys(labels)),
                      bool(annotation.get("was_cancelled")),
                      updated.isoformat() if isinstance(updated, datetime) else str(updated or ""))


class Store:
    """A project's annotations by id, in `folder/project-KEY.json` (written atomically after every change)."""

    def __init__(self, folder: Path | None, key: str) -> None:
        self._lock = threading.Lock()  # /setup reads it while a prediction or a webhook holds the model
        self.path = folder / f"project-{re.sub(r'[^0-9A-Za-z._-]', '_', key)}.json" if folder else None
        self.key = key
        self.annotations: dict[int, Annotation] = {}
        if self.path is not None and self.path.exists():
            try:
                data = read_json_object(self.path, "the backend's project file")
                self.annotations = {int(a["id"]): Annotation(**{**a, "labels": tuple(a["labels"])})
                                    for a in data.get("annotations", [])}
            except (InputError, KeyError, TypeError, ValueError) as exc:
                raise PayloadError(f"{self.path}: cannot read what this project taught ({exc}); move it away "
                                   "and start training again in Label Studio") from None

    def put(self, annotation: Annotation) -> None:
        with self._lock:
            self.annotations[annotation.id] = annotation
            self._save()

    def drop(self, ids: list[int]) -> None:
        with self._lock:
            for i in ids:
                self.annotations.pop(i, None)
            self._save()

    def drop_tasks(self, ids: list[int]) -> None:
        with self._lock:
            gone = set(ids)
            self.annotations = {i: a for i, a in self.annotations.items() if a.task not in gone}
            self._save()

    def replace(self, annotations: list[Annotation]) -> None:
        with self._lock:
            self.annotations = {a.id: a for a in annotations}
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = [asdict(a) for _, a in sorted(self.annotations.items())]
        write_text(self.path, json.dumps({"project": self.key, "annotations": rows}, indent=1) + "\n")

    def latest(self) -> dict[int, Annotation]:
        """Each task's latest annotation (by update time, then id): what the task is now labelled as."""
        out: dict[int, Annotation] = {}
        with self._lock:
            annotations = list(self.annotations.values())
        for a in sorted(annotations, key=lambda a: (a.updated, a.id)):
            out[a.task] = a
        return out
