"""The review planner at scale: 100,000 cached embeddings → plan the next reviews; time and peak memory.

    python benchmarks/queue_scale.py [--n 100000] [--dim 512] [--classes 50] [--budget 100] [--reviewed 500]

Embeddings are synthetic but shaped like a real dataset's (as audit_scale.py's: 2,000 topics, random pairs at
cosine ≈ 0), written to an embedding cache (not timed). The timed part runs in a fresh child process: read the
embeddings from the SQLite cache by content hash, score them against a class matrix (zero-shot, and an
adapted classifier from the reviewed rows), then plan twice: a cold start (no reviews, k = budget) and a
second round (`--reviewed` rows reviewed, k = reviewed + budget). Prints seconds per step and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def setup(work: Path, n: int, dim: int) -> None:
    from autolabel.embedding.cache import EmbeddingCache

    rng = np.random.default_rng(0)
    topics = rng.standard_normal((2000, dim)).astype(np.float32)
    x = topics[rng.integers(0, 2000, n)] + 0.9 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cache = EmbeddingCache(work / "cache")
    for start in range(0, n, 10000):
        cache.put_images("bench", [(f"{i:040x}", x[i]) for i in range(start, min(n, start + 10000))])
    cache.close()


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def timed(work: Path, n: int, classes: int, budget: int, reviewed: int) -> dict:
    from autolabel.classifier.adapt import fit
    from autolabel.embedding.cache import EmbeddingCache
    from autolabel.learn.planner import plan

    started = time.perf_counter()
    cache = EmbeddingCache(work / "cache")
    x = np.stack([cache.get_image(f"{i:040x}", "bench") for i in range(n)])
    cache.close()
    read = time.perf_counter() - started
    rng = np.random.default_rng(1)
    text = rng.standard_normal((classes, x.shape[1])).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    zero_shot = _softmax(100.0 * (x @ text.T))
    cold = plan(x, zero_shot, None, np.zeros(n, bool), None, budget)
    planned_cold = time.perf_counter() - started - read
    rows = cold.order[:reviewed]
    labels = np.full(n, -1)
    labels[rows] = zero_shot[rows].argmax(axis=1)
    mask = labels >= 0
    fitted = fit(x[rows], labels[rows], 100.0 * (x[rows] @ text.T), 100.0, [str(c) for c in range(classes)])
    logits = 100.0 * (x @ text.T)
    if fitted.adapter is not None:
        logits = (logits + fitted.adapter.logits(x)) / fitted.adapter.temperature
    mid = time.perf_counter()
    second = plan(x, zero_shot, _softmax(logits), mask, labels, budget)
    planned_second = time.perf_counter() - mid
    return {"seconds": time.perf_counter() - started, "read_s": read, "cold_s": planned_cold,
            "second_s": planned_second, "clusters": [cold.clusters, second.clusters],
            "reasons": sorted(set(second.reasons[:budget])),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--reviewed", type=int, default=500)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(timed(Path(args.child), args.n, args.classes, args.budget, args.reviewed)))
        return
    with tempfile.TemporaryDirectory(prefix="autolabel-queue-bench-") as tmp:
        setup(Path(tmp), args.n, args.dim)
        out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--classes", str(args.classes),
                              "--budget", str(args.budget), "--reviewed", str(args.reviewed), "--child", tmp],
                             check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(f"queue plan: {args.n:,} cached {args.dim}-d embeddings, {args.classes} classes, budget {args.budget}: "
          f"{r['seconds']:.1f} s in all (target ≤ 60 s on 2 cores): cache read {r['read_s']:.1f} s, cold start "
          f"(k = {r['clusters'][0]}) {r['cold_s']:.1f} s, second round with {args.reviewed} reviewed (k = "
          f"{r['clusters'][1]}, reasons {', '.join(r['reasons'])}) {r['second_s']:.1f} s; peak RSS "
          f"{r['peak_rss_mb']:.0f} MB (target ≤ 1,500)")


if __name__ == "__main__":
    main()
