"""The same stages on a Ray cluster: the driver streams chunks of records to model actors, in input order.

Ray is imported only here, only when `--engine ray` is chosen. Each actor holds the model, decodes its
chunk with its own threads (our `Prepare`), embeds and decides (the driver's `Decide`, shipped once), and
either returns the rows or, for a folder `--out`, writes the chunk as its shard itself. The driver holds
only the chunks in flight, so its memory does not grow with the number of images.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Any

from autolabel.core.config import EngineConfig, ModelConfig
from autolabel.core.errors import UsageError
from autolabel.core.records import ImageRecord
from autolabel.labelling.decide import Decide
from autolabel.labelling.engines.base import Batch, error_lines

if TYPE_CHECKING:
    from autolabel.labelling.output import PartWriter

CHUNK_BATCHES = 4  # model batches per actor call when results come back to the driver (single-file --out)
ERROR_LINES = 100  # error lines a shard reports back (every error row is in the shard itself)


def import_ray() -> Any:
    """Ray, or exit 2 saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'autolabel[ray]'") from None
    return ray


def unreachable(address: str | None, timeout: float = 5.0) -> str | None:
    """Why `host:port` (or `ray://host:port`) cannot be reached, or None: Ray itself would wait minutes."""
    if address in (None, "", "auto", "local"):
        return None
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def cluster_address(config: EngineConfig) -> str | None:
    """--ray-address, else $RAY_ADDRESS, else None (a private local cluster)."""
    return config.ray_address or os.environ.get("RAY_ADDRESS") or None


def preflight(config: EngineConfig) -> None:
    """Before any model is loaded: Ray is installed and the cluster address answers (else exit 2)."""
    import_ray()
    address = cluster_address(config)
    problem = unreachable(address)
    if problem:
        raise UsageError(f"cannot reach the Ray cluster at {address} ({problem}); check --ray-address/RAY_ADDRESS "
                         "and that the cluster is up")


def connect(ray: Any, config: EngineConfig) -> None:
    """Join the cluster, else start a private local one; reuse one already joined. Ray's own logs stay quiet."""
    if ray.is_initialized():
        return
    address = cluster_address(config)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=True)
    except Exception as exc:  # ConnectionError, RuntimeError, TimeoutError depending on Ray's version
        where = address or "a local cluster"
        raise UsageError(
            f"cannot reach Ray at {where} ({' '.join(str(exc).split())[:200]}); check --ray-address/RAY_ADDRESS, "
            "that the cluster is up, and for token-auth clusters RAY_AUTH_MODE and its token"
        ) from None


class LabelActor:
    """Ray actor: holds the model; labels whole chunks of records with the run's stages."""

    def __init__(self, model: ModelConfig, draft: bool, decide: Decide, batch_size: int, threads: int,
                 parts: PartWriter | None) -> None:
        import ray
        import torch

        from autolabel.core.config import CacheConfig
        from autolabel.embedding.session import Session

        torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS=1 in actors
        session = Session.open(model, CacheConfig(no_cache=True), draft)  # the cache is a file of the driver's machine
        session.model.get()  # loaded now: a model that does not load fails the actor, not its first chunk
        self.prepare, self.embed = session.prepare, session.embed
        self.decide, self.batch_size, self.threads, self.parts = decide, batch_size, threads, parts
        self.actor = ray.get_runtime_context().get_actor_id() or str(os.getpid())

    def label(self, records: list[ImageRecord], shard: int | None) -> Batch:
        from autolabel.core.records import Counts
        from autolabel.embedding.batches import embedded_batches

        totals = Counts()
        errors: list[tuple[str, str]] = []

        def columns() -> Iterator[dict[str, list[Any]]]:
            nonlocal totals
            for items, encoded in embedded_batches(records, self.prepare, self.embed, self.batch_size, self.threads):
                cols, counts = self.decide(items, encoded, self.actor)
                totals += counts
                errors.extend(error_lines(cols, ERROR_LINES - len(errors)))
                yield cols

        rows = tuple(r.row for r in records)
        if shard is not None and self.parts is not None:
            written = self.parts.write(shard, records, columns())
            return Batch(rows=rows, counts=totals, shard=written, errors=tuple(errors))
        merged: dict[str, list[Any]] = {}
        for cols in columns():
            for name, values in cols.items():
                merged.setdefault(name, []).extend(values)
        return Batch(rows=rows, counts=totals, columns=merged, errors=tuple(errors))


@dataclass(frozen=True)
class RayEngine:
    """Runs the stages on Ray actors; with `parts`, each actor writes its chunks as shards of `chunk_rows` rows."""

    config: EngineConfig
    model: ModelConfig  # what each actor loads: a hub id or a folder every node can read, its device and precision
    draft: bool
    decide: Decide
    parts: PartWriter | None = None  # for a folder --out
    chunk_rows: int = 0  # rows per actor call: the shard size with `parts`, else CHUNK_BATCHES batches

    def batches(self, records: Iterable[ImageRecord]) -> Iterator[Batch]:
        """Chunks of records to actors, round robin, two in flight per actor; results in input order."""
        ray = import_ray()
        connect(ray, self.config)
        threads = max(1, int(self.config.cpus_per_actor))
        actor_class = ray.remote(LabelActor).options(num_cpus=self.config.cpus_per_actor,
                                                     num_gpus=self.config.gpus_per_actor or None)
        decide = ray.put(self.decide)
        actors = [actor_class.remote(self.model, self.draft, decide, self.config.batch_size, threads, self.parts)
                  for _ in range(self.config.actors)]
        in_flight: deque[Any] = deque()
        size = self.chunk_rows or CHUNK_BATCHES * self.config.batch_size
        try:
            for n, (chunk, group) in enumerate(groupby(records, key=lambda r: r.row // size)):
                shard = chunk if self.parts is not None else None
                in_flight.append(actors[n % len(actors)].label.remote(list(group), shard))
                while len(in_flight) >= 2 * len(actors):
                    yield ray.get(in_flight.popleft())
            while in_flight:
                yield ray.get(in_flight.popleft())
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)
            for actor in actors:
                ray.kill(actor)
