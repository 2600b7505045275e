"""The same run on a Ray cluster: records → decode tasks (CPU) → model actors → back to our writer, in order.

Ray is imported only here, only when `--engine ray` is chosen. Our own stages do the work: `prepare`
decodes and resizes to the model's input (so only small arrays cross the object store), ZeroShotModel
encodes, and the Classifier built once on the driver is shared with every actor through the object store.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from autolabel.classify import Classifier, Prediction
from autolabel.errors import UsageError
from autolabel.pipeline import Item, RunConfig, Tally, prediction_row, prepare
from autolabel.sources import ImageRecord
from autolabel.writers import OUTPUT_SCHEMA

# What actors return: the input index, the contract's result columns (our explicit types, not Ray's
# inferred ones), and which actor did the work.
RESULT_SCHEMA = pa.schema([pa.field("i", pa.int64()), *(f for f in OUTPUT_SCHEMA if f.name != "path"),
                           pa.field("actor", pa.string())])


def import_ray() -> Any:
    """Ray, or exit 2 saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
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


def preflight(config: RunConfig) -> None:
    """Before any model is loaded: Ray is installed and the cluster address answers (else exit 2)."""
    import_ray()
    address = config.ray_address or os.environ.get("RAY_ADDRESS") or None
    problem = unreachable(address)
    if problem:
        raise UsageError(f"cannot reach the Ray cluster at {address} ({problem}); check --ray-address/RAY_ADDRESS "
                         "and that the cluster is up")


def connect(ray: Any, config: RunConfig) -> None:
    """Join --ray-address (else $RAY_ADDRESS), else start a private local cluster; reuse one already joined."""
    if ray.is_initialized():
        return
    address = config.ray_address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=True)
    except Exception as exc:  # ConnectionError, RuntimeError, TimeoutError depending on Ray's version
        where = address or "a local cluster"
        raise UsageError(
            f"cannot reach Ray at {where} ({' '.join(str(exc).split())[:200]}); check --ray-address/RAY_ADDRESS, "
            "that the cluster is up, and for token-auth clusters RAY_AUTH_MODE and its token"
        ) from None


def decode_batch(batch: dict[str, np.ndarray], preprocessing: Any, draft: bool) -> dict[str, np.ndarray]:
    """Ray task: our `prepare` on each row; model-size arrays out (zeros where the image failed)."""
    items = [prepare(ImageRecord(path="", location=str(loc), error=str(err) or None), preprocessing, draft)
             for loc, err in zip(batch["location"], batch["error"], strict=True)]
    out: dict[str, np.ndarray] = {"i": np.asarray(batch["i"], np.int64),
                                  "error": np.asarray([it.error or "" for it in items], dtype=object)}
    template = next((it.inputs for it in items if it.inputs is not None), None)
    if template is not None:
        for key, value in template.items():
            out[key] = np.stack([it.inputs[key] if it.inputs is not None else np.zeros_like(value)
                                 for it in items])
    return out


class EmbedClassify:
    """Ray actor: holds the model and the shared classifier; embeds and classifies whole batches."""

    def __init__(self, model_name: str, device: str, precision: str, classifier_ref: Any, threads: float) -> None:
        import ray
        import torch

        from autolabel.model import ZeroShotModel

        torch.set_num_threads(max(1, int(threads)))  # Ray sets OMP_NUM_THREADS=1 in actors
        self.model = ZeroShotModel.load(model_name, device=device, precision=precision)
        self.classifier: Classifier = ray.get(classifier_ref)
        self.actor = ray.get_runtime_context().get_actor_id() or str(os.getpid())

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        errors = [str(e) for e in batch["error"]]
        ok = [i for i, e in enumerate(errors) if not e]
        predictions: dict[int, Prediction] = {}
        if ok:
            inputs = {k: v[ok] for k, v in batch.items() if k not in ("i", "error")}
            vectors = np.asarray(self.model.encode_images(inputs))
            predictions = dict(zip(ok, self.classifier.classify(vectors), strict=True))
        rows = [{"i": int(index), **prediction_row(predictions.get(i), errors[i]), "actor": self.actor}
                for i, index in enumerate(batch["i"])]
        return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


def ray_batches(records: list[ImageRecord], model: Any, classifier: Classifier, config: RunConfig,
                tally: Tally) -> Iterator[tuple[list[Item], dict[int, Prediction]]]:
    """Run the job through Ray Data and yield (items, predictions) batches in input order."""
    ray = import_ray()
    connect(ray, config)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    if not records:
        return
    rows = [{"i": i, "location": r.location, "error": r.error or ""} for i, r in enumerate(records)]
    blocks = max(1, math.ceil(len(rows) / config.batch_size))
    dataset = ray.data.from_items(rows).repartition(blocks)  # small manifests must not stay one block
    dataset = dataset.map_batches(decode_batch, fn_kwargs={"preprocessing": model.preprocessing, "draft": config.draft},
                                  batch_size=config.batch_size, num_cpus=1, batch_format="numpy")
    dataset = dataset.map_batches(
        EmbedClassify,
        fn_constructor_kwargs={"model_name": model.name, "device": config.device, "precision": config.precision,
                               "classifier_ref": ray.put(classifier), "threads": config.cpus_per_actor},
        concurrency=config.actors, num_cpus=config.cpus_per_actor, num_gpus=config.gpus_per_actor or None,
        batch_size=config.batch_size, batch_format="numpy",
    )
    for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        items, predictions = [], {}
        for j, row in enumerate(table.to_pylist()):
            record = records[row["i"]]
            items.append(Item(record, error=row["error"]))
            tally.actors.add(row["actor"])
            if row["status"] != "error":
                predictions[j] = Prediction(row["label"], row["confidence"], row["margin"], row["status"],
                                            row["top_labels"], row["top_scores"])
        tally.encoded += len(predictions)
        yield items, predictions
