"""The ML backend's work, without HTTP: per project, predictions from the spec plus what its annotations taught."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.classifier.classify import Classifier, Prediction
from autolabel.core import storage
from autolabel.core.errors import AutolabelError
from autolabel.core.records import ImageRecord, printable_path
from autolabel.core.spec import LabelSpec
from autolabel.embedding.cache import EmbeddingCache
from autolabel.embedding.decode import DecodeError
from autolabel.embedding.stages import Item, Model
from autolabel.learn.examples import Example, learn
from autolabel.serve.annotations import Annotation, PayloadError, Store, project_key, read_annotation
from autolabel.serve.images import TaskImages, from_environment
from autolabel.serve.labelconfig import ChoicesTarget, ConfigError, parse

BATCH = 32
FETCHERS = 8  # images prepared at once (reads from Label Studio wait on the network)
MEMO_LIMIT = 200_000  # embeddings kept in memory by file state (the cache keeps them all on disk)
HEAD = 24  # the planner's budget (at least twice the classes): tasks kept in front of the order
UPDATES = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")


class BackendError(Exception):
    """A request the backend refuses: an HTTP status and one line for Label Studio to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Project:
    """One Label Studio project: its annotations (persisted), how its images are read, its tasks' embeddings."""

    store: Store
    images: TaskImages
    pool: dict[int, np.ndarray] = field(default_factory=dict)  # task id → embedding, every task seen
    fitted: tuple[str, Classifier, str] | None = None  # (model_version, classifier, what was learnt)
    order: tuple[tuple, dict[int, float]] | None = None  # ((version, pool size), task id → review priority)
    head: list[int] = field(default_factory=list)  # the plan's first tasks, kept in front until labelled
    head_pool: int = 0  # how many tasks the backend had seen when that head was planned
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # its requests, one at a time


class Backend:
    """Label Studio's ML backend calls: one at a time per project; the model's batches one at a time."""

    def __init__(self, spec: LabelSpec, model: Model, cache: EmbeddingCache | None, state_dir: Path | None,
                 seed: Sequence[Example] = (), warn: Callable[[str], None] = lambda message: None,
                 info: Callable[[str], None] = lambda message: None) -> None:
        from autolabel.embedding.session import Session
        from autolabel.labelling.pipeline import stages_for

        self.spec, self.model, self.state_dir, self.seed = spec, model, state_dir, tuple(seed)
        self.warn, self.info = warn, info
        top_k = min(3, len(spec.classes))
        stages, _ = stages_for(spec, Session(model, cache, draft=True), (), top_k=top_k, warn=warn)
        self.classifier, self.prepare, self.embed = stages.decide.classifier, stages.prepare, stages.embed
        self.model_lock = threading.Lock()  # the model and the memo, one batch at a time (projects share them)
        self.projects_lock = threading.Lock()
        self.projects: dict[str, Project] = {}
        self.targets: dict[str, ChoicesTarget] = {}
        self.memo: dict[tuple[str, int, int], np.ndarray] = {}
        described = json.dumps([model.fingerprint, model.precision, spec.source, spec.class_names,
                                [(e.location, e.label) for e in self.seed]], default=str)
        self.base_version = f"autolabel-{hashlib.sha256(described.encode()).hexdigest()[:8]}"

    # --- the protocol's calls ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"status": "UP", "model_class": "autolabel", "model": self.model.name,
                "classes": list(self.spec.label_names)}

    def setup(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Check the project's labeling config against the spec; the project's current model_version (without
        waiting for the model: Label Studio gives /setup 3 s, and calls it before every prediction request)."""
        project = self._project(payload.get("project"), payload.get("hostname"), payload.get("access_token"))
        self._target(payload.get("schema"))
        return {"model_version": self.version(project)}

    def predict(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One prediction per task, in order: the spec's choice(s), the review priority as `score`."""
        tasks = payload.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BackendError(400, "predict: `tasks` must be a list of task objects")
        started = time.perf_counter()
        project = self._project(payload.get("project"))
        target = self._target(payload.get("label_config"))
        with project.lock:  # a project's requests one at a time; another project's go on meanwhile
            vectors, errors = self._embed_tasks(project, target, tasks)
            classifier, version = self._classifier(project)
            ok = [i for i in range(len(tasks)) if i in vectors]
            predictions = dict(zip(ok, classifier.classify(np.stack([vectors[i] for i in ok])), strict=True)) \
                if ok else {}
            order = self._priorities(project, classifier, version)
            results = []
            for i, task in enumerate(tasks):
                if i in predictions:
                    score = order.get(task.get("id"), 1.0) if isinstance(task.get("id"), int) else 1.0
                    results.append(self._prediction(target, predictions[i], score, version))
                else:
                    self.warn(f"task {task.get('id')}: {errors[i]}")
                    results.append({"result": [], "score": 1.0, "model_version": version, "error": errors[i]})
            self.info(f"project {project.store.key}: {len(tasks)} predictions ({len(errors)} unreadable) in "
                      f"{time.perf_counter() - started:.1f} s, {version}")
            return {"results": results, "model_version": version}

    def webhook(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Annotations created, updated or deleted and tasks deleted (each changes what the project's next
        predictions learnt from), START_TRAINING (every annotation Label Studio holds, then fit); every other event
        is acknowledged and ignored."""
        action = payload.get("action")
        if action not in (*UPDATES, "ANNOTATIONS_DELETED", "START_TRAINING", "TASKS_DELETED"):
            return {"status": "ignored", "action": action}
        project = self._project(payload.get("project"))
        with project.lock:
            if action in UPDATES:
                target = self._target((payload.get("project") or {}).get("label_config"))
                for annotation, task in _pairs(payload):
                    project.store.put(read_annotation(annotation, task, target))
            elif action == "ANNOTATIONS_DELETED":
                project.store.drop(_ids(payload.get("annotations")))
            elif action == "TASKS_DELETED":
                deleted = _ids(payload.get("tasks"))
                project.store.drop_tasks(deleted)
                for task_id in deleted:
                    project.pool.pop(task_id, None)
            else:  # START_TRAINING: what Label Studio holds now, annotations made while the backend was down too
                self._catch_up(project, self._target((payload.get("project") or {}).get("label_config")))
            _, version = self._classifier(project)
            return {"status": "ok", "action": action, "model_version": version,
                    "learned": project.fitted[2] if project.fitted else ""}

    def train(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The older /train call: every annotated task of the project; they replace what the backend kept."""
        tasks = payload.get("annotations")
        if not isinstance(tasks, list):
            raise BackendError(400, "train: `annotations` must be a list of annotated tasks")
        project = self._project(payload.get("project"))
        target = self._target(payload.get("label_config"))
        with project.lock:
            kept = [read_annotation(a, t, target) for t in tasks if isinstance(t, dict)
                    for a in (t.get("annotations") or [])]
            project.store.replace(kept)
            _, version = self._classifier(project)
            return {"status": "ok", "model_version": version}

    # --- the work --------------------------------------------------------------------------------------------
    def _catch_up(self, project: Project, target: ChoicesTarget) -> None:
        """Replace the project's kept annotations with every annotation Label Studio holds; when it cannot be
        reached, what was kept stays (one line says so)."""
        from autolabel.review.exporters import label_studio_api

        project_id = int(project.store.key.split(".")[0])
        try:
            tasks = label_studio_api.project_tasks(project.images.server, project.images.api_key, project_id)
        except AutolabelError as exc:
            self.warn(f"project {project.store.key}: cannot read its annotations from Label Studio ({exc}); "
                      f"training on the {len(project.store.annotations)} kept")
            return
        project.store.replace([read_annotation(a, t, target) for t in tasks if isinstance(t, dict)
                               for a in (t.get("annotations") or [])])

    def _project(self, given: Any, hostname: Any = None, token: Any = None) -> Project:
        key = project_key(given)
        with self.projects_lock:
            project = self.projects.get(key)
            if project is None:
                project = self.projects[key] = Project(Store(self.state_dir, key), from_environment())
        if isinstance(hostname, str) and hostname and not project.images.server:
            project.images = from_environment(hostname, token if isinstance(token, str) else None)
        return project

    def _target(self, xml: Any) -> ChoicesTarget:
        if not isinstance(xml, str) or not xml.strip():
            raise BackendError(400, "no labeling config in the request")
        target = self.targets.get(xml)
        if target is None:
            try:
                target = parse(xml, self.spec)
            except ConfigError as exc:
                raise BackendError(422, str(exc)) from None
            self.targets = {**dict(list(self.targets.items())[-15:]), xml: target}  # another request may read it
        return target

    def version(self, project: Project) -> str:
        """Changes whenever the project's examples do, so Label Studio fetches predictions again."""
        examples = sorted((a.task, a.labels) for a in self._examples(project))
        if not examples:
            return f"{self.base_version}-zero-shot"
        digest = hashlib.sha256(json.dumps(examples).encode()).hexdigest()[:8]
        return f"{self.base_version}-{len(examples)}ex-{digest}"

    def _examples(self, project: Project) -> list[Annotation]:
        """Each task's latest annotation, unless skipped (single-label: with a choice)."""
        return [a for a in project.store.latest().values()
                if not a.cancelled and self.classifier.task.cell(a.labels) is not None]

    def _reader(self, images: TaskImages) -> tuple[Callable[[ImageRecord], Item], Callable[[list[Item]], int]]:
        """Prepare and embed through the memo, the cache, then the model; images read the project's way."""
        prepare = replace(self.prepare, read=images.read)

        def prepared(record: ImageRecord) -> Item:
            stamp = _stamp(record.location)  # taken before the read: a file changed since misses next time
            vec = self.memo.get(stamp) if stamp else None
            if vec is not None:
                return Item(record, embedding=vec)
            item = prepare(record)  # URLs: the bytes are read and found in the cache by their content hash
            item.file_key = item.file_key or stamp
            return item

        def embedded(items: list[Item]) -> int:
            with self.model_lock:
                encoded = self.embed(items)
                if len(self.memo) > MEMO_LIMIT:
                    self.memo.clear()
                self.memo.update((it.file_key, it.embedding) for it in items
                                 if it.embedding is not None and it.file_key is not None)
            return encoded

        return prepared, embedded

    def _embed_tasks(self, project: Project, target: ChoicesTarget,
                     tasks: list[dict[str, Any]]) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        prepared, embedded = self._reader(project.images)
        records = []
        for i, task in enumerate(tasks):
            ref = (task.get("data") or {}).get(target.data_key) if isinstance(task.get("data"), dict) else None
            try:
                records.append(ImageRecord(path=str(ref), location=project.images.location(ref, task.get("id")),
                                           row=i))
            except DecodeError as exc:
                records.append(ImageRecord(path=str(ref), location="", row=i, error=str(exc)))
        vectors, errors = {}, {}
        with ThreadPoolExecutor(FETCHERS) as pool:  # images from a server: several requests in flight
            for start in range(0, len(records), BATCH):
                items = list(pool.map(prepared, records[start:start + BATCH]))
                embedded(items)
                for item in items:
                    if item.embedding is None:
                        errors[item.record.row] = item.error or "no embedding"
                        continue
                    vectors[item.record.row] = np.asarray(item.embedding, np.float64)
                    task_id = tasks[item.record.row].get("id")
                    if isinstance(task_id, int):
                        project.pool[task_id] = vectors[item.record.row]
        return vectors, errors

    def _classifier(self, project: Project) -> tuple[Classifier, str]:
        """The project's classifier: the spec's, adapted to its examples (refitted when they change)."""
        version = self.version(project)
        if project.fitted is None or project.fitted[0] != version:
            examples = list(self.seed)
            for a in self._examples(project):
                try:
                    location = project.images.location(a.image, a.task)
                except DecodeError as exc:
                    self.warn(f"annotation {a.id} (task {a.task}): cannot use its image ({exc})")
                    continue
                task = self.classifier.task  # multi-label: every choice (none: no class applies)
                examples.append(Example(location, task.label(task.cell(a.labels)), f"task {a.task}"))
            prepared, embedded = self._reader(project.images)
            try:
                learned = learn(examples, self.classifier, prepared, embedded, self.warn)
                summary = learned.summary_line() if examples else "no annotations yet: zero-shot"
                project.fitted = (version, learned.classifier, summary)
                self.info(f"project {project.store.key}: {version}: {summary}")
            except AutolabelError as exc:  # none of the examples could be read
                self.warn(str(exc))
                project.fitted = (version, self.classifier, f"zero-shot: {exc}")
        return project.fitted[1], version

    def _priorities(self, project: Project, classifier: Classifier, version: str) -> dict[int, float]:
        """Every unlabelled task's review priority in [0, 1) (0 first; labelled tasks 1.0) over all the project's
        tasks seen: `planner.plan`'s order (as `autolabel queue`), its first `budget` tasks kept in front until each
        is labelled or skipped, so that labelling down the list follows one plan even when predictions are
        retrieved again between labels (a fresh plan's head after every label chose worse: 88% vs 100% after 16
        labels on make_images --hard)."""
        from autolabel.learn.planner import plan

        key = (version, len(project.pool))
        if project.order is not None and project.order[0] == key:
            return project.order[1]
        latest = project.store.latest()
        ids = sorted(project.pool)
        if not ids:
            return {}
        x = np.stack([project.pool[t] for t in ids])
        columns = list(self.classifier.columns)
        task = self.classifier.task
        labels = task.targets([task.cell(latest[t].labels) if t in latest and not latest[t].cancelled else None
                               for t in ids], columns)
        budget = max(HEAD, 2 * len(columns))
        planned = plan(x, self.classifier.scores(x), None if classifier is self.classifier else
                       classifier.scores(x), np.asarray([t in latest for t in ids]), labels, budget, task.multiple,
                       self.classifier.thresholds)
        order = [ids[i] for i in planned.order]
        head = [t for t in project.head if t in project.pool and t not in latest]
        if not head or len(project.pool) > 1.1 * project.head_pool:  # a new plan's head (and when many tasks came)
            head, project.head, project.head_pool = order[:budget], order[:budget], len(project.pool)
        first = set(head)
        order = head + [t for t in order if t not in first]
        scores = {t: round(rank / len(order), 6) for rank, t in enumerate(order)}
        project.order = (key, scores)
        return scores

    def _prediction(self, target: ChoicesTarget, pred: Prediction, score: float, version: str) -> dict[str, Any]:
        names = pred.labels if pred.labels is not None else [pred.label]
        choices = [target.choice_of[n] for n in names]
        result = [{"from_name": target.from_name, "to_name": target.to_name, "type": "choices",
                   "value": {"choices": choices}, "score": round(pred.confidence, 6)}] if choices else []
        return {"result": result, "score": score, "model_version": version,
                "confidence": round(pred.confidence, 6), "status": pred.status}


def _pairs(payload: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(annotation, task) pairs of an ANNOTATION_* webhook (one, or lists for ANNOTATIONS_CREATED)."""
    annotation, task = payload.get("annotation"), payload.get("task")
    if isinstance(annotation, list):
        tasks = {t.get("id"): t for t in task if isinstance(t, dict)} if isinstance(task, list) else {}
        return [(a, tasks.get(a.get("task")) if isinstance(a, dict) else None) for a in annotation]
    return [(annotation, task)]


def _stamp(location: str) -> tuple[str, int, int] | None:
    """A local file's (path, size, mtime_ns), the cache's file-index key: the memo's key, so that an edited file is
    embedded again; None for URLs (only their bytes tell whether they changed)."""
    if not location or storage.is_url(location):
        return None
    path = os.path.abspath(location)
    try:
        st = os.stat(path)
    except OSError:
        return None
    return printable_path(path), st.st_size, st.st_mtime_ns


def _ids(items: Any) -> list[int]:
    if not isinstance(items, list):
        raise PayloadError("expected a list of objects with an id")
    return [i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), int)]
