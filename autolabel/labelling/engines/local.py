"""This machine's engine: decode threads working ahead of batched model calls, results in input order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from autolabel.core.records import ImageRecord
from autolabel.embedding.batches import default_workers, embedded_batches
from autolabel.labelling.engines.base import Batch, Stages, error_lines


@dataclass(frozen=True)
class LocalEngine:
    """Runs the stages here: `workers` decode threads, `batch_size` images per model call."""

    stages: Stages
    batch_size: int = 32
    workers: int = 0  # 0: default_workers(on_cpu)
    on_cpu: bool = False

    def batches(self, records: Iterable[ImageRecord]) -> Iterator[Batch]:
        """Labelled batches in input order."""
        for items, encoded in embedded_batches(records, self.stages.prepare, self.stages.embed, self.batch_size,
                                               self.workers or default_workers(self.on_cpu)):
            columns, counts = self.stages.decide(items, encoded)
            yield Batch(rows=tuple(it.record.row for it in items), counts=counts, columns=columns,
                        errors=error_lines(columns))
