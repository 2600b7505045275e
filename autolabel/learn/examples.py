"""Reviewed examples: read from `--examples` tables and the spec's per-class `examples:`, checked, embedded."""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.classifier.adapt import Fit
from autolabel.classifier.classify import Classifier
from autolabel.core import storage
from autolabel.core.errors import SpecError, UsageError
from autolabel.core.records import ImageRecord, identity, printable_path
from autolabel.core.spec import LabelSpec
from autolabel.embedding.batches import embedded_batches
from autolabel.table.format import METADATA_NAME, PATH_COLUMNS, SHARD_MANIFEST
from autolabel.task import SINGLE, Task, task_for
from autolabel.task.cells import clean

SOFTENED = 4.0  # a fitted temperature this high means the examples contradict each other: say so
LABEL_COLUMNS = ("reviewed_label", "label")  # the default --examples-column: the first present


@dataclass(frozen=True)
class Example:
    """One reviewed image: where it is, the human label, and where it was named (for messages).

    For a multi-label spec the label is a tuple of class names (empty: none of the classes applies).
    """

    location: str
    label: str | tuple[str, ...]
    origin: str

    @property
    def names(self) -> tuple[str, ...]:
        """The label(s) as a tuple."""
        return (self.label,) if isinstance(self.label, str) else self.label


@dataclass(frozen=True)
class Embedded:
    """The examples that could be read, their unit embeddings, and how many images that took encoding."""

    examples: tuple[Example, ...]
    embeddings: np.ndarray  # (n, dim)
    encoded: int
    skipped: tuple[str, ...]  # "ORIGIN: reason" of examples that could not be read


def read_table(path: str, column: str | None, task: Task = SINGLE, option: str = "--examples",
               root: str | None = None) -> list[Example]:
    """A Parquet/CSV/JSONL table (or a shard folder) with a path column and a label column (empty labels skipped).

    Relative paths resolve against the images folder the table records (a table `run` wrote, reviewed or not),
    else the table's own folder; one that names no file there is tried against `root` (the current SOURCE's
    folder: a CSV table `run` wrote records nothing). `option` names the table in errors ("" for an argument).
    Multi-label (`task`): each label is a list (Parquet list, a JSON array in CSV, or a plain name), kept as a tuple.
    """
    from autolabel.table.files import read_rows

    suffix = Path(path).suffix.lower()
    folder = not storage.is_url(path) and Path(path).is_dir()
    recorded = None
    if folder:  # a finished run's shard folder, every part checked against its manifest
        from autolabel.core.errors import SourceError
        from autolabel.table.shards import read_folder

        _check_table_folder(path, option)
        try:
            table, manifest = read_folder(path)
        except SourceError as exc:
            raise SourceError(f"{option} {exc}".lstrip()) from None
        recorded = (manifest.get(METADATA_NAME) or {}).get("images_root")
    elif suffix not in (".parquet", ".csv", ".tsv", ".jsonl"):
        raise UsageError(f"{option} {path}: a table of reviewed examples ends in .parquet, .csv or .jsonl".lstrip())
    else:
        table = read_rows(path, suffix, "examples table",
                          (*PATH_COLUMNS, *LABEL_COLUMNS, *([column] if column else []))).read()
    names = table.column_names
    where = f"{option} {path}".lstrip()
    path_column = next((c for c in PATH_COLUMNS if c in names), None)
    if path_column is None:
        raise UsageError(f"{where}: no path column (one of {', '.join(PATH_COLUMNS)}); columns are: {', '.join(names)}")
    label_column = column or next((c for c in LABEL_COLUMNS if c in names), None)
    if label_column is None or label_column not in names:
        wanted = f"'{column}' (--examples-column)" if column else "'reviewed_label' or 'label'"
        raise UsageError(f"{where}: no label column {wanted}; columns are: {', '.join(names)}")
    base = (recorded if isinstance(recorded, str) and recorded else _recorded_root(path)) or (
        storage.parent(path) if storage.is_url(path) else str(Path(path).absolute().parent))
    out = []
    for i, (given, label) in enumerate(zip(table.column(path_column).to_pylist(),
                                           table.column(label_column).to_pylist(), strict=True)):
        label = task.label(label)
        given = clean(given)
        if label is not None and given is not None:
            location = storage.resolve_location(given, base)
            if root and not storage.is_url(location) and not os.path.lexists(location):
                other = storage.resolve_location(given, root)
                location = other if os.path.lexists(other) else location
            out.append(Example(location, label, f"{path} row {i + 1}"))
    return out


def _check_table_folder(path: str, option: str) -> None:
    """A folder given as a table must be a shard folder (`run --out DIR/`): a folder of images is refused, saying how
    images are given as examples."""
    from autolabel.table.shards import has_parts

    if (Path(path) / SHARD_MANIFEST).is_file() or has_parts(Path(path)):
        return
    raise UsageError(f"{option} {path}: not a finished run's folder, nor a table of reviewed images; "
                     f"{option or 'it'} takes a table "
                     "(.parquet/.csv/.jsonl with path and label columns, e.g. a corrections CSV or a table "
                     "import-review filled) or a shard folder `autolabel run --out DIR/` wrote; to learn from "
                     "folders of images, give each class `examples: DIR/CLASS/*` in the label spec".lstrip())


def _recorded_root(path: str) -> str | None:
    """The images folder a Parquet labels table `run` wrote records in its metadata."""
    from autolabel.table.files import read_metadata

    try:
        if Path(path).suffix.lower() == ".parquet" and not storage.is_url(path):
            meta = read_metadata(path)
        else:
            return None
    except Exception:  # not a table of ours: its own folder it is
        return None
    root = meta.get("images_root") if isinstance(meta, dict) else None
    return root if isinstance(root, str) and root else None


SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def walk_glob(pattern: str) -> Iterator[str]:
    """The files matching a glob (`**` = any folders), as glob.glob(recursive=True) finds them, except that it
    never follows a symlink to a folder (a link loop would never end) nor enters /proc, /sys or /dev."""
    parts = pattern.split(os.sep)
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = os.sep.join(parts[:fixed]) or ("" if not pattern.startswith(os.sep) else os.sep)
    try:
        yield from _match(root, parts[fixed:])
    except RecursionError:
        raise SpecError(f"examples: '{pattern}' reaches folders nested too deeply to walk; give a narrower "
                        "pattern") from None


def _match(folder: str, parts: list[str]) -> Iterator[str]:
    real = os.path.realpath(folder or ".")
    if any(real == root or real.startswith(root + os.sep) for root in SYSTEM_ROOTS):
        return
    head, rest = parts[0], parts[1:]
    try:
        entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
    except OSError:
        return
    if head == "**":
        if rest:
            yield from _match(folder, rest)
        else:
            yield from (os.path.join(folder, e.name) for e in entries if not e.name.startswith("."))
        for entry in entries:
            if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                yield from _match(os.path.join(folder, entry.name), parts)
        return
    for entry in entries:
        if entry.name.startswith(".") and not head.startswith("."):
            continue
        if fnmatch.fnmatchcase(entry.name, head):
            path = os.path.join(folder, entry.name)
            if not rest:
                yield path
            elif entry.is_dir(follow_symlinks=False):
                yield from _match(path, rest)


def from_spec(spec: LabelSpec, warn: Callable[[str], None]) -> list[Example]:
    """The spec's per-class `examples:` (paths or globs relative to the spec file), sorted per pattern."""
    out = []
    for name, patterns in spec.example_paths().items():
        for pattern in patterns:
            matches = sorted(walk_glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not matches:
                warn(f"{spec.source}: examples of '{name}': '{pattern}' matches no file")
            out.extend(Example(m, name, f"{spec.source} ({name})") for m in matches if not os.path.isdir(m))
    return out


def collect(spec: LabelSpec, tables: Sequence[str], column: str | None,
            warn: Callable[[str], None], root: str | None = None) -> list[Example]:
    """Every example, checked: a label that is neither a class nor the `other` name is an error (exit 2).

    One image named twice keeps the last label given (tables in order, then the spec), with a warning.
    """
    task = task_for(spec)
    examples = [e for table in tables for e in read_table(table, column, task, root=root)]
    examples += from_spec(spec, warn)
    allowed = spec.label_names
    unknown = sorted({name for e in examples for name in e.names} - set(allowed))
    if unknown:
        shown = ", ".join(f"'{u}'" for u in unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10
                                                             else "")
        raise SpecError(f"examples: label(s) {shown} are not in the label spec; labels must be one of: "
                        f"{', '.join(allowed)}" + ("" if spec.other else " (or add `other:` to the spec)"))
    kept: dict[str, Example] = {}
    conflicts = 0
    for example in examples:
        key = identity(example.location)
        # multi-label: a spec's per-class examples (one name each) add up
        label, conflict = task.combine(kept[key].label if key in kept else None, example.label)
        conflicts += conflict
        kept[key] = replace(example, label=label)
    if conflicts:
        warn(f"{conflicts} example image(s) were given two different labels; the last one given is used")
    return list(kept.values())


def embed(examples: Sequence[Example], prepare: Callable[[ImageRecord], Any], embed_batch: Callable[[list], int],
          batch_size: int = 32) -> Embedded:
    """Embed the examples with the run's own stages (cache hits are free); unreadable ones are skipped."""
    kept, vectors, skipped, encoded = [], [], [], 0
    records = [ImageRecord(path=printable_path(e.location), location=e.location, row=i) for i, e in enumerate(examples)]
    for items, fresh in embedded_batches(records, prepare, embed_batch, batch_size, workers=1):
        encoded += fresh
        for item in items:
            example = examples[item.record.row]
            if item.embedding is None:
                skipped.append(f"{example.origin}: {printable_path(example.location)}: {item.error}")
            else:
                kept.append(example)
                vectors.append(np.asarray(item.embedding, np.float64))
    matrix = np.stack(vectors) if vectors else np.zeros((0, 0))
    return Embedded(tuple(kept), matrix, encoded, tuple(skipped))


@dataclass(frozen=True)
class Learned:
    """What the examples changed: the classifier (adapted or not), the fit, and the images people labelled."""

    classifier: Classifier
    fit: Fit | None  # None without examples
    reviewed: dict[str, Any]  # identity(location) → human label (multi-label: a tuple of them)
    encoded: int
    skipped: tuple[str, ...]
    hard_only: bool = False  # every example was a row zero-shot sends to review: see `guard`

    def summary_line(self) -> str:
        """One line for people: what the examples changed."""
        fit = self.fit
        if fit is None:
            return "no example could be read: zero-shot only"
        accuracy = f"leave-one-out accuracy on them: zero-shot {fit.loo_zero_shot:.0%}, adapted {fit.loo_adapted:.0%}"
        count = sum(fit.examples.values())
        if not fit.used:
            return f"learned nothing from {count} examples ({accuracy}): zero-shot kept"
        line = f"learned from {count} examples ({accuracy}; {fit.method}, α {fit.alpha}, β {fit.beta})"
        if fit.temperature >= SOFTENED:
            line += (f"; the examples disagree with each other (some may be mislabelled, or classes overlap): "
                     f"confidences softened ×{fit.temperature:g}, check them")
        if self.hard_only:
            line += ("; the examples are all rows zero-shot was unsure of, not a sample of the data, so the adapter "
                     "decides only such rows and rows zero-shot accepts keep its label (to learn from the whole data, "
                     "review the rows `autolabel queue` plans)")
        return line

    def describe(self) -> dict[str, Any]:
        """For the run metadata and the summary."""
        if self.fit is None:
            return {"examples": 0}
        return {"examples": len(self.reviewed), "skipped": len(self.skipped), **self.fit.describe(),
                "hard_only": self.hard_only}


GUARD_MIN_EXAMPLES = 4  # fewer examples say too little about where they were taken from


def guard(classifier: Classifier, embeddings: np.ndarray, fitted: Fit) -> bool:
    """Whether the adapter was estimated on hard rows only: zero-shot knows the classes (right on more than
    1.5× chance and half of the examples; multi-label: micro-F1 ≥ 0.5) yet would accept none of them — rows picked
    from the review queue, not a sample of the data. Such examples teach nothing about the rows zero-shot is
    sure of, and moving those (raising a present-looking class, softening) is what cost a tester accepted
    precision (multi-label, 99% → 79.5%), so the adapted classifier is `guarded` then."""
    from autolabel.classifier.adapt import UNINFORMED

    if fitted.adapter is None or len(embeddings) < GUARD_MIN_EXAMPLES:
        return False
    informed = classifier.task.knows(fitted.loo_zero_shot, len(classifier.columns), UNINFORMED)
    return informed and not any(p.status == "accepted" for p in classifier.classify(embeddings))


def learn(examples: Sequence[Example], classifier: Classifier, prepare: Callable[[ImageRecord], Any],
          embed_batch: Callable[[list], int], warn: Callable[[str], None]) -> Learned:
    """Embed the examples and fit the adapter on them (see adapt.py); unreadable examples are warned about."""
    if not examples:
        return Learned(classifier, None, {}, 0, ())
    embedded = embed(examples, prepare, embed_batch)
    for line in embedded.skipped[:20]:
        warn(f"example skipped: {line}")
    if len(embedded.skipped) > 20:
        warn(f"… and {len(embedded.skipped) - 20} more examples skipped")
    reviewed = {identity(e.location): e.label for e in embedded.examples}
    if not embedded.examples:  # asked to learn and nothing to learn from: say so instead of a silent zero-shot run
        raise UsageError(f"none of the {len(examples)} examples could be read (first: {embedded.skipped[0]}); check "
                         "that their paths name the images (relative paths resolve against the folder the table "
                         "records, the table's folder, or SOURCE's folder)")
    fitted = classifier.fit_examples(embedded.embeddings, [e.names for e in embedded.examples])
    return _learned(classifier, embedded, fitted, reviewed)


def _learned(classifier: Classifier, embedded: Embedded, fitted: Fit, reviewed: dict[str, Any]) -> Learned:
    hard_only = guard(classifier, embedded.embeddings, fitted)
    if fitted.adapter is not None:
        classifier = replace(classifier.with_parts(adapter=fitted.adapter), guarded=hard_only)
    return Learned(classifier, fitted, reviewed, embedded.encoded, embedded.skipped, hard_only)
