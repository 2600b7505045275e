"""The records every layer shares: an image to label, what a batch and a run counted, a batch of rows, a finished
shard, a file's identity. The ground floor: engines, stages, output and the review side import them downward."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autolabel.core import storage


def identity(location: str) -> str:
    """The key an example and a SOURCE image share when they are the same file (its real path, or the URL)."""
    return location if storage.is_url(location) else os.path.realpath(location)


@dataclass(frozen=True)
class ImageRecord:
    """One image to label: `path` as it appears in the output, `location` where to read it, `row` its input position."""

    path: str
    location: str
    extra: tuple[Any, ...] = ()
    error: str | None = None
    row: int = 0


def printable_path(path: str) -> str:
    """`path` as valid UTF-8 text: bytes a file system name holds that are not UTF-8 become `\\xNN` escapes."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # lone surrogates that did not come from the file system
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class Counts:
    """What one batch (or a whole run: counts add up) produced, per status and per class."""

    images: int = 0
    encoded: int = 0
    status: Mapping[str, int] = field(default_factory=dict)
    classes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    actors: frozenset[str] = frozenset()  # Ray actors that did model work

    def __add__(self, other: Counts) -> Counts:
        status = {k: self.status.get(k, 0) + other.status.get(k, 0) for k in dict.fromkeys([*self.status,
                                                                                            *other.status])}
        classes = {}
        for name in dict.fromkeys([*self.classes, *other.classes]):
            a, b = self.classes.get(name, {}), other.classes.get(name, {})
            classes[name] = {k: a.get(k, 0) + b.get(k, 0) for k in dict.fromkeys([*a, *b])}
        return Counts(self.images + other.images, self.encoded + other.encoded, status, classes,
                      self.actors | other.actors)

    @classmethod
    def of(cls, columns: Mapping[str, Sequence[Any]], encoded: int, actors: Iterable[str] = ()) -> Counts:
        """Count a batch's result columns (multi-label: an image counts for each class of its `labels`)."""
        status: dict[str, int] = {}
        classes: dict[str, dict[str, int]] = {}
        labels = columns["labels"] if "labels" in columns else [[x] if x is not None else [] for x in columns["label"]]
        for names, state in zip(labels, columns["status"], strict=True):
            status[state] = status.get(state, 0) + 1
            for label in names:
                per = classes.setdefault(label, {"images": 0})
                per["images"] += 1
                per[state] = per.get(state, 0) + 1
        return cls(len(columns["status"]), encoded, status, classes, frozenset(actors))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (shard metadata: rows per status and class; what was encoded belongs to a run, not a shard)."""
        return {"images": self.images, "status": dict(self.status),
                "classes": {k: dict(v) for k, v in self.classes.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Counts:
        """Inverse of to_dict."""
        return cls(int(data["images"]), int(data.get("encoded", 0)), dict(data["status"]),
                   {k: dict(v) for k, v in data["classes"].items()})



@dataclass(frozen=True)
class Shard:
    """A finished output shard: its file name, first input row and row count, what it counted, and the digest of
    its input rows (output.ShardDigest: what it covers)."""

    index: int
    file: str
    first_row: int
    rows: int
    counts: Counts
    digest: str = ""


@dataclass(frozen=True)
class Batch:
    """Input rows, labelled, in input order.

    `columns` holds the output rows (contract columns, then pass-through), or is None when the engine's
    workers wrote them to `shard` themselves. `errors` are (path, reason) lines for the people watching.
    """

    rows: tuple[int, ...]  # the input row number of each row
    counts: Counts
    columns: dict[str, list[Any]] | None = None
    shard: Shard | None = None
    errors: tuple[tuple[str, str], ...] = ()
