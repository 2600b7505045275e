"""What an engine is: the stages it runs, and `batches(records) → Iterator[Batch]`, each batch carrying its rows and
its own counts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from autolabel.core.records import Batch, ImageRecord
from autolabel.embedding.stages import Embed, Prepare
from autolabel.labelling.decide import Decide


@dataclass(frozen=True)
class Stages:
    """The three stages an engine runs, built once per run."""

    prepare: Prepare
    embed: Embed
    decide: Decide


class Engine(Protocol):
    """Runs the stages over records (in input order) and yields their results in input order."""

    def batches(self, records: Iterable[ImageRecord]) -> Iterator[Batch]: ...


def error_lines(columns: dict[str, list[Any]], limit: int | None = None) -> tuple[tuple[str, str], ...]:
    """(path, reason) of the batch's error rows, at most `limit`."""
    lines = [(path or "<empty path>", error) for path, status, error in
             zip(columns["path"], columns["status"], columns["error"], strict=True) if status == "error"]
    return tuple(lines[:limit] if limit is not None else lines)
