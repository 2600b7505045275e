"""Duplicate audit at scale: 100,000 cached embeddings → candidates → pixel checks → groups; time and peak memory.

    python benchmarks/audit_scale.py [--n 100000] [--dim 512] [--pairs 1000]

Embeddings are synthetic but shaped like a real dataset's: 2,000 topics (random pairs of images have
cosine ≈ 0, the closest 0.01% ≈ 0.6), plus planted near-duplicate pairs at cosine 0.95–0.995 whose
images exist on disk (photo-like PNGs and their JPEG re-encodes, 80% resizes and exact copies), so the
pixel confirmation is real. Setup (writing the cache and the images) is not timed; the timed part runs
in a fresh child process: read the embeddings from the SQLite cache by content hash, search neighbours,
confirm candidates on pixels, build groups. Prints seconds, peak RSS, and pair recall/precision.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import photo_like
from PIL import Image


def setup(work: Path, n: int, dim: int, pairs: int) -> None:
    from autolabel.embedding.cache import EmbeddingCache

    rng = np.random.default_rng(0)
    topics = rng.standard_normal((2000, dim)).astype(np.float32)
    x = topics[rng.integers(0, 2000, n)] + 0.9 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    chosen = rng.choice(n, 2 * pairs, replace=False)
    a, b = chosen[:pairs], chosen[pairs:]
    noise = rng.standard_normal((pairs, dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x[b] = x[a] + rng.uniform(0.1, 0.3, (pairs, 1)).astype(np.float32) * noise
    x[b] /= np.linalg.norm(x[b], axis=1, keepdims=True)
    digests = [f"{i:040x}" for i in range(n)]
    cache = EmbeddingCache(work / "cache")
    for start in range(0, n, 10000):
        cache.put_images("bench", [(digests[i], x[i]) for i in range(start, min(n, start + 10000))])
    cache.close()
    images = work / "images"
    images.mkdir()
    for k, (i, j) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        original = photo_like(k, (160, 120))
        original.save(images / f"{i}.png")
        if k % 3 == 0:
            shutil.copy(images / f"{i}.png", images / f"{j}.png")
        elif k % 3 == 1:
            original.save(images / f"{j}.png.jpg", quality=75)
            (images / f"{j}.png.jpg").rename(images / f"{j}.png")
        else:
            original.resize((128, 96), Image.Resampling.BICUBIC).save(images / f"{j}.png")
    (work / "planted.json").write_text(json.dumps([[int(i), int(j)] for i, j in zip(a, b, strict=True)]))


def timed(work: Path, n: int) -> dict:
    from autolabel.audit.duplicates import DuplicateRule, candidate_pairs, confirmed_edges, duplicate_findings
    from autolabel.audit.neighbours import nearest
    from autolabel.audit.pixels import BASE_PX, base_thumbnail
    from autolabel.embedding.cache import EmbeddingCache
    from autolabel.embedding.decode import DecodeError, open_image, read_bytes

    started = time.perf_counter()
    cache = EmbeddingCache(work / "cache")
    x = np.stack([cache.get_image(f"{i:040x}", "bench") for i in range(n)])
    cache.close()
    read = time.perf_counter() - started
    neighbours = nearest(x, 16)
    searched = time.perf_counter() - started
    rule = DuplicateRule()
    candidates = candidate_pairs(neighbours, np.arange(n), rule)

    def thumbnail(row: int):
        try:
            return base_thumbnail(open_image(read_bytes(str(work / "images" / f"{row}.png")), 2 * BASE_PX))
        except DecodeError:
            return None

    edges = confirmed_edges(candidates, lambda a, b: float(x[a] @ x[b]), thumbnail, rule)
    findings = duplicate_findings([str(i) for i in range(n)], edges)
    seconds = time.perf_counter() - started
    planted = {frozenset(p) for p in json.loads((work / "planted.json").read_text())}
    found = {frozenset((int(f.path), int(f.other_path))) for f in findings}
    return {"seconds": seconds, "read_s": read, "search_s": searched - read, "candidates": len(candidates),
            "found": len(found), "recall": len(found & planted) / len(planted),
            "precision": len(found & planted) / max(1, len(found)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(timed(Path(args.child), args.n)))
        return
    with tempfile.TemporaryDirectory(prefix="autolabel-audit-bench-") as tmp:
        work = Path(tmp)
        setup(work, args.n, args.dim, args.pairs)
        out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--child", str(work)],
                             check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(f"audit duplicates: {args.n:,} cached {args.dim}-d embeddings in {r['seconds']:.1f} s (target ≤ 60 s on "
          f"2 cores): cache read {r['read_s']:.1f} s, neighbour search {r['search_s']:.1f} s, pixel checks and "
          f"groups {r['seconds'] - r['read_s'] - r['search_s']:.1f} s; peak RSS {r['peak_rss_mb']:.0f} MB "
          f"(target ≤ 1,500); {r['candidates']} candidate pairs, planted pairs recall {r['recall']:.3f}, "
          f"precision {r['precision']:.3f}")


if __name__ == "__main__":
    main()
