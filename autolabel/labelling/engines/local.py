"""This machine's engine: decode threads working ahead of batched model calls, results in input order."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

from autolabel.embedding.stages import Item, Stages
from autolabel.labelling.engines.base import Batch, error_lines
from autolabel.labelling.sources import ImageRecord


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers(on_cpu: bool = False) -> int:
    """Decode threads. Beside a GPU: one per core, at most 32 (it eats thousands of images a second). On the
    CPU the model needs the cores and one decode thread per four cores keeps up with it (draft decoding),
    so decoders and torch's threads do not fight over the same cores."""
    cores = available_cores()
    return max(1, cores // 4) if on_cpu else max(1, min(32, cores))


def prepared_batches(
    records: Iterable[ImageRecord],
    job: Callable[[ImageRecord], Item],
    batch_size: int,
    workers: int,
    prefetch: int = 2,
) -> Iterator[list[Item]]:
    """Input-ordered batches, prepared by a thread pool that works `prefetch` batches ahead of the consumer."""
    it = iter(records)
    pending: deque[list[Future[Item]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autolabel-decode") as pool:

        def submit() -> None:
            chunk = list(islice(it, batch_size))
            if chunk:
                pending.append([pool.submit(job, r) for r in chunk])

        for _ in range(prefetch + 1):
            submit()
        try:
            while pending:
                chunk = pending.popleft()
                submit()
                yield [f.result() for f in chunk]
        finally:
            for chunk in pending:
                for f in chunk:
                    f.cancel()


@dataclass(frozen=True)
class LocalEngine:
    """Runs the stages here: `workers` decode threads, `batch_size` images per model call."""

    stages: Stages
    batch_size: int = 32
    workers: int = 0  # 0: default_workers(on_cpu)
    on_cpu: bool = False

    def batches(self, records: Iterable[ImageRecord]) -> Iterator[Batch]:
        """Labelled batches in input order."""
        for items in prepared_batches(records, self.stages.prepare, self.batch_size,
                                      self.workers or default_workers(self.on_cpu)):
            encoded = self.stages.embed(items)
            columns, counts = self.stages.decide(items, encoded)
            yield Batch(rows=tuple(it.record.row for it in items), counts=counts, columns=columns,
                        errors=error_lines(columns))
