"""Input-ordered batches of images: decode threads working ahead of the consumer, then one model call a batch."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice

from autolabel.core.records import ImageRecord
from autolabel.embedding.stages import Item


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


def embedded_batches(records: Iterable[ImageRecord], prepare: Callable[[ImageRecord], Item],
                     embed: Callable[[list[Item]], int], batch_size: int, workers: int
                     ) -> Iterator[tuple[list[Item], int]]:
    """The one loop of prepare (cache lookup or decode, on `workers` threads) then embed: each batch in input order
    with how many of its images the model encoded."""
    for items in prepared_batches(records, prepare, batch_size, workers):
        yield items, embed(items)
