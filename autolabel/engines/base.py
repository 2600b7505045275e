"""What an engine is: `batches(records) → Iterator[Batch]`, each batch carrying its rows and its own counts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from autolabel.sources import ImageRecord
from autolabel.stages import Counts


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


class Engine(Protocol):
    """Runs the stages over records (in input order) and yields their results in input order."""

    def batches(self, records: Iterable[ImageRecord]) -> Iterator[Batch]: ...


def error_lines(columns: dict[str, list[Any]], limit: int | None = None) -> tuple[tuple[str, str], ...]:
    """(path, reason) of the batch's error rows, at most `limit`."""
    lines = [(path or "<empty path>", error) for path, status, error in
             zip(columns["path"], columns["status"], columns["error"], strict=True) if status == "error"]
    return tuple(lines[:limit] if limit is not None else lines)
