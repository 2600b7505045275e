"""Fitting the example adapter (leave-one-out over the α/β grid) on 1,000 classes × 16 examples, 512-d embeddings.

    python benchmarks/adapter.py [--classes 1000] [--shots 16] [--repeats 3]

Synthetic but shaped like the real thing: unit embeddings clustered per class (two visual modes each), a
random unit class matrix and CLIP's logit scale. Prints the median fit time (target ≤ 5 s on 2 CPU cores),
and the leave-one-out accuracies, as a ratio against zero-shot on the same examples.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from autolabel.classifier.adapt import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    modes = rng.normal(size=(args.classes, 2, args.dim))
    classes = np.repeat(np.arange(args.classes), args.shots)
    picks = modes[classes, rng.integers(0, 2, len(classes))]
    embeddings = picks / np.linalg.norm(picks, axis=1, keepdims=True) + 0.6 * rng.normal(size=picks.shape) / np.sqrt(
        args.dim)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    text = rng.normal(size=(args.classes, args.dim))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    scale = 100.0
    zero_shot = scale * embeddings @ text.T
    names = [f"class {i}" for i in range(args.classes)]
    times, result = [], None
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = fit(embeddings, classes, zero_shot, scale, names)
        times.append(time.perf_counter() - started)
    assert result is not None
    print(f"adapter fit, {args.classes:,} classes × {args.shots} examples ({len(classes):,} keys, {args.dim}-d): "
          f"median {statistics.median(times):.2f} s over {args.repeats} (target ≤ 5 s); leave-one-out accuracy "
          f"zero-shot {result.loo_zero_shot:.3f} → adapted {result.loo_adapted:.3f} "
          f"(α {result.alpha}, β {result.beta})")


if __name__ == "__main__":
    main()
