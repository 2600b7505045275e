"""`autolabel queue` as a library call: labels table + reviews → cached embeddings → planner → corrections table."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autolabel.core import storage
from autolabel.core.errors import SourceError, UsageError
from autolabel.core.progress import Reporter
from autolabel.table.results import Results, load_results
from autolabel.task.cells import clean

if TYPE_CHECKING:
    from autolabel.embedding.session import Session

QUEUE_COLUMNS = ("path", "reviewed_label", "rank", "reason", "label", "confidence", "priority")


@dataclass(frozen=True)
class QueueConfig:
    """Everything `autolabel queue` needs."""

    labels: str
    out: str
    budget: int
    examples: tuple[str, ...] = ()
    spec: str | None = None  # the label spec, for tables without run metadata
    model: str | None = None  # default: the run's model
    device: str = "auto"
    cache_dir: str | None = None
    seed: int = 0
    quiet: bool = False


@dataclass(frozen=True)
class Reviews:
    """What people have looked at: labelled rows (the adapter learns from them) and rows they skipped."""

    labels: dict[int, Any]  # table row → the person's label (multi-label: a tuple of them)
    skipped: frozenset[int]  # table rows a person passed over in an earlier queue (junk): never offered again


@dataclass(frozen=True)
class QueuePlan:
    """The planned rows of the table, best first, and why each is there; `priority` per table row."""

    rows: tuple[int, ...]  # table row indices
    reasons: tuple[str, ...]
    priority: dict[int, float]  # table row → priority in [0, 1] (lower = sooner), every row with an embedding
    reviewed: int  # rows already reviewed (table and --examples)
    skipped: int  # rows left empty above a filled one in an earlier queue: taken as junk, never offered again
    encoded: int  # images the cache lacked (0 when `run` labelled them with the same cache)
    adapted: bool  # whether the reviews changed the classifier the uncertainty is measured on


@dataclass(frozen=True)
class QueueResult:
    """What `autolabel queue` wrote."""

    out: Path | str
    plan: QueuePlan


def is_queue_file(path: Path) -> bool:
    """Whether an existing file is a queue this command wrote (so --out may replace it)."""
    from autolabel.table.files import column_names

    try:
        header = column_names(path)
    except Exception:
        return False
    return list(header[:len(QUEUE_COLUMNS)]) == list(QUEUE_COLUMNS)


def check_queue(config: QueueConfig) -> None:
    """Options and the output location, before anything is read or loaded."""
    from autolabel.core.fileio import check_output_file

    if config.budget < 1:
        raise UsageError(f"--budget must be at least 1, got {config.budget}")
    if config.out.endswith("/") or Path(config.out).suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"--out {config.out}: the queue is one file ending in .csv or .parquet")
    check_output_file(config.out, "--out", (config.labels, config.spec, *config.examples), is_queue_file)
    filled = filled_reviews(Path(config.out))
    if filled:
        raise UsageError(f"--out {config.out}: a queue holding {filled} review(s) a person filled in; write the "
                         f"next queue to another file and pass this one to --examples (nothing you wrote is replaced)")


def filled_reviews(path: Path) -> int:
    """How many rows of an existing queue file have a reviewed_label (0 when there is no such file)."""
    if not path.is_file() or not is_queue_file(path):
        return 0
    from autolabel.learn.examples import read_table

    try:
        return len(read_table(str(path), "reviewed_label"))
    except Exception:  # not readable as a table: check_output_file already refused what is not ours
        return 0


def locations(results: Results) -> list[str]:
    """The file behind every row of the table (absolute for local files, as `--examples` resolves them)."""
    root = results.images_root()
    out = []
    for path in results.frame["path"].astype(str):
        where = str(results.location(path, root))
        out.append(where if storage.is_url(where) else os.path.abspath(where))
    return out


def table_reviews(results: Results) -> dict[int, Any]:
    """Reviews the table holds: `reviewed_label` (import-review, the report's editor), else `reviewed` rows."""
    frame = results.frame
    task = results.task
    given = frame["reviewed_label"].tolist() if "reviewed_label" in frame else [None] * len(frame)
    out: dict[int, Any] = {}
    for row, (value, status) in enumerate(zip(given, frame["status"], strict=True)):
        human = task.label(value)
        if human is None and status == "reviewed":
            human = task.row_label(frame, row)
        if human is not None:
            out[row] = human
    return out


def skipped_rows(tables: Sequence[str], keys: dict[str, int], root: str | None = None) -> frozenset[int]:
    """Rows of earlier queues (tables with a `rank` column) left empty above the last one a person filled in.
    Relative paths resolve against the queue's folder, then `root` (the table's images folder)."""
    from autolabel.table.files import read_file

    out: set[int] = set()
    for table in tables:
        if Path(table).suffix.lower() not in (".csv", ".parquet") or not Path(table).is_file():
            continue
        try:
            frame = read_file(table).frame
        except Exception:  # examples.read_table reports tables it cannot read
            continue
        if not {"rank", "reviewed_label", "path"} <= set(frame.columns):
            continue
        filled = frame["reviewed_label"].map(lambda v: clean(v) is not None).to_numpy()  # any text, lists too
        if not filled.any():
            continue
        last = frame["rank"].to_numpy()[filled].max()
        base = str(Path(table).absolute().parent)
        for path, rank, done in zip(frame["path"].astype(str), frame["rank"], filled, strict=True):
            row = next((keys[k] for k in _candidates(path, (base, root)) if k in keys), None)
            if not done and rank < last and row is not None:
                out.add(row)
    return frozenset(out)


def _candidates(path: str, bases: Sequence[str | None]) -> list[str]:
    """The identities a queue's path may name: itself when absolute or a URL, else joined to each base."""
    if storage.is_url(path) or os.path.isabs(path):
        return [path if storage.is_url(path) else os.path.realpath(path)]
    return [os.path.realpath(os.path.join(b, path)) for b in bases if b]


def collect_reviews(results: Results, config: QueueConfig, where: Sequence[str], reporter: Reporter
                    ) -> tuple[Reviews, list[Any]]:
    """The table's reviews, then --examples' (a later label wins), as rows and as examples to learn from."""
    from autolabel.core.records import identity
    from autolabel.learn.examples import Example, collect

    spec = results.spec
    keys = {identity(w): row for row, w in enumerate(where)}
    labels = table_reviews(results)
    examples = {identity(where[row]): Example(where[row], label, f"{results.path} row {row + 1}")
                for row, label in labels.items()}
    root = results.images_root()
    for example in collect(spec, config.examples, None, reporter.warn, root=None if isinstance(root, str)
                           else str(root)):
        key = identity(example.location)
        examples[key] = example
        if key in keys:
            labels[keys[key]] = example.label
    skipped = skipped_rows(config.examples, keys, None if root is None else str(root)) - set(labels)
    return Reviews(labels, skipped), list(examples.values())


def plan_reviews(results: Results, config: QueueConfig, session: Session, reporter: Reporter) -> QueuePlan:
    """Embeddings from the cache, the classifier with and without the reviews, then the planner."""
    from autolabel.labelling.pipeline import stages_for
    from autolabel.learn.planner import plan

    where = locations(results)
    reviews, examples = collect_reviews(results, config, where, reporter)
    usable = np.flatnonzero(results.frame["status"].to_numpy() != "error")
    if not len(usable):
        raise SourceError(f"{results.path}: every row is an error row (no image could be read): nothing to plan; "
                          "fix the images and run again")
    embedded = session.embed_images([where[r] for r in usable], reporter)
    _, learned = stages_for(results.spec, session, examples, top_k=1, warn=reporter.warn)
    if len(usable) and not embedded.ok.any():
        raise SourceError(f"{results.path}: none of its images could be read (e.g. {where[usable[0]]}: "
                          f"{embedded.errors[0]})")
    rows = usable[embedded.ok]
    x = embedded.vectors[embedded.ok]
    classifier = learned.classifier
    adapted = classifier.adapter is not None
    zero_shot = replace(classifier, adapter=None).scores(x)
    reviewed = np.array([r in reviews.labels or r in reviews.skipped for r in rows.tolist()], bool)
    given = classifier.task.targets([reviews.labels.get(r) for r in rows.tolist()], classifier.columns)
    planned = plan(x, zero_shot, classifier.scores(x) if adapted else None, reviewed, given, config.budget,
                   classifier.task.multiple, classifier.thresholds, config.seed)
    head, why = planned.head(config.budget)
    return QueuePlan(tuple(int(rows[i]) for i in head), why, dict(zip(rows.tolist(), planned.priority.tolist(),
                                                                      strict=True)),
                     len(reviews.labels), len(reviews.skipped), embedded.encoded, adapted)


def queue_frame(results: Results, queue: QueuePlan) -> Any:
    """The corrections table people fill in: QUEUE_COLUMNS (then `labels` for multi-label tables)."""
    import pandas as pd

    frame = results.frame
    where = locations(results)
    rows = list(queue.rows)
    out = pd.DataFrame({
        "path": [where[r] for r in rows],
        "reviewed_label": pd.Series([None] * len(rows), dtype=object),
        "rank": np.arange(1, len(rows) + 1, dtype=np.int64),
        "reason": list(queue.reasons),
        "label": [frame["label"].iloc[r] for r in rows],
        "confidence": [float(frame["confidence"].iloc[r]) for r in rows],
        "priority": [round(queue.priority[r], 6) for r in rows],
    })
    for added in results.task.fields:  # multi-label: `labels`
        out[added.name] = [list(frame[added.name].iloc[r]) for r in rows]
    return out


def write_queue(frame: Any, out: str) -> Path:
    """Write the queue atomically: Parquet, or CSV (a multi-label `labels` cell as a JSON array)."""
    from autolabel.table.files import write_frame

    path = Path(out)
    write_frame(frame, path, text_columns=("reviewed_label",), json_columns=("labels",))
    return path


def build_queue(config: QueueConfig, *, reporter: Reporter | None = None, session: Session | None = None
                ) -> QueueResult:
    """Plan the next `budget` reviews of a labels table and write them; `session` may be passed in (a loaded model,
    or a fake, with a cache), else it is the session of the run that labelled the table."""
    from autolabel.core.config import CacheConfig
    from autolabel.embedding.session import Session

    reporter = reporter or Reporter(quiet=config.quiet)
    check_queue(config)
    results = load_results(config.labels, config.spec)
    if results.spec is None:
        raise UsageError(f"{results.path}: the label spec is unknown; pass it with --labels")
    session = session or Session.for_table(results, config.model, config.device, CacheConfig(config.cache_dir),
                                           reporter)
    try:
        queue = plan_reviews(results, config, session, reporter)
    finally:
        session.close()
    return QueueResult(write_queue(queue_frame(results, queue), config.out), queue)


def planned_paths(results: Results, queue_file: str) -> list[tuple[str, str]]:
    """A queue's rows as (table path, reason) in rank order, for the report; rows not in the table are left out."""
    from autolabel.core.records import identity
    from autolabel.table.files import read_file

    path = Path(queue_file)
    try:
        frame = read_file(path).frame
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOENT:  # a queue is read as a regular file only
            raise SourceError(f"--queue {queue_file}: no such file; write it with `autolabel queue`") from None
        raise SourceError(f"--queue {queue_file}: cannot read it ({' '.join(str(exc).split())[:200]})") from None
    missing = [c for c in ("path", "rank", "reason") if c not in frame.columns]
    if missing:
        raise SourceError(f"--queue {queue_file}: not a queue from `autolabel queue` (no {', '.join(missing)} column)")
    table_paths = {identity(w): p for w, p in zip(locations(results), results.frame["path"].astype(str), strict=True)}
    base = str(path.absolute().parent)
    out = []
    for given, reason in frame.sort_values("rank", kind="stable")[["path", "reason"]].itertuples(index=False):
        where = str(given) if storage.is_url(str(given)) or os.path.isabs(str(given)) else os.path.join(base, given)
        if identity(where) in table_paths:
            out.append((table_paths[identity(where)], str(reason)))
    if len(frame) and not out:
        raise SourceError(f"--queue {queue_file}: none of its {len(frame)} rows is an image of {results.path.name}; "
                          "plan the queue from this table with `autolabel queue`")
    return out
