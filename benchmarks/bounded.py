"""Bounded work on hostile inputs: lint on thousands of look-alike classes, the duplicate audit on a sea of copies.

    python benchmarks/bounded.py [--classes 3000] [--images 50000] [--drawings 72] [--only lint|audit]

lint: a spec of 3,000 classes named with the few words the tests' tiny CLIP knows ("red cat tree",
"the bird dog a", …; four templates, names of 2–6 words so some prompts overflow its 16-token context),
which the random-init model cannot tell apart; `autolabel lint` runs in a child process (model load,
prompt encoding through a fresh cache, the lint). audit: 50,000 cached 512-d embeddings that are
near-duplicates of 72 drawings (each image a re-encode, a resize or an exact copy of its drawing on disk),
written straight into the embedding cache as benchmarks/audit_scale.py does; the timed child reads them
back, searches neighbours and runs the duplicate stage. Each prints seconds, peak RSS and output size;
targets: ≤ 120 s, ≤ 2 GB, ≤ 1,000 lines (lint); ≤ 120 s, ≤ 2 GB (audit duplicates), on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TEMPLATES = ["a photo of a {label}.", "a drawing of the {label}.", "a picture of a {label}.", "this is a {label}."]


def lint_case(work: Path, classes: int) -> dict:
    """Write the tiny CLIP and the look-alike spec; run `autolabel lint` in a child, measured."""
    import yaml

    from tests.conftest import WORDS, save_tiny_clip

    model = save_tiny_clip(work / "tiny-clip")
    rng = random.Random(0)
    names: dict[str, None] = {}
    while len(names) < classes:
        names[" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))] = None
    spec = work / "lookalike.yaml"
    spec.write_text(yaml.safe_dump({"templates": TEMPLATES, "classes": list(names)}))
    return measured([sys.executable, "-m", "autolabel", "lint", str(spec), "--model", str(model),
                     "--cache-dir", str(work / "cache")])


def measured(command: list[str]) -> dict:
    """Run a child; its seconds, peak RSS, and stdout/stderr line counts."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "rc": done.returncode,
            "stdout_lines": len(done.stdout.splitlines()), "stderr_lines": len(done.stderr.splitlines()),
            "tail": done.stdout.splitlines()[-3:] + done.stderr.splitlines()[-2:]}


def audit_setup(work: Path, n: int, drawings: int, dim: int = 512) -> None:
    """72 drawings × 8 near-copies on disk (exact, JPEG q60–q90, 70–90% resizes); n cached embeddings, row i
    showing copy (i // drawings) % 8 of drawing i % drawings. Drawings of one class sit at cosine ≈ 0.92 (above
    the candidate threshold), copies of one drawing at ≈ 0.98."""
    sys.path.insert(0, str(ROOT / "examples" / "tiny-shapes"))
    from PIL import Image
    from shapes import COLORS, SHAPES, draw_shape

    from autolabel.embedding.cache import EmbeddingCache

    images = work / "images"
    images.mkdir()
    rng = random.Random(0)
    kinds = list(itertools.product(COLORS, SHAPES))
    for d in range(drawings):
        color, shape = kinds[d % len(kinds)]
        original = draw_shape(color, shape, rng, (rng.randint(64, 160), rng.randint(64, 160)))
        original.save(images / f"{d}_0.png")
        original.save(images / f"{d}_1.png")
        for v, quality in ((2, 60), (3, 75), (4, 90)):
            original.save(images / f"{d}_{v}.jpg", quality=quality)
        for v, scale in ((5, 0.7), (6, 0.8), (7, 0.9)):
            size = (round(original.width * scale), round(original.height * scale))
            original.resize(size, Image.Resampling.BICUBIC).save(images / f"{d}_{v}.png")
    np_rng = np.random.default_rng(0)

    def spread(centres: np.ndarray, radius: float) -> np.ndarray:
        noise = np_rng.standard_normal(centres.shape).astype(np.float32)
        out = centres + radius * noise / np.linalg.norm(noise, axis=1, keepdims=True)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    classes = spread(np.zeros((len(kinds), dim), np.float32), 1.0)
    centres = spread(classes[np.arange(drawings) % len(kinds)], 0.3)
    x = spread(centres[np.arange(n) % drawings], 0.15)
    cache = EmbeddingCache(work / "cache")
    for start in range(0, n, 10000):
        cache.put_images("bench", [(f"{i:040x}", x[i]) for i in range(start, min(n, start + 10000))])
    cache.close()


def location(work: Path, row: int, drawings: int) -> Path:
    copy = (row // drawings) % 8
    return work / "images" / f"{row % drawings}_{copy}.{'jpg' if copy in (2, 3, 4) else 'png'}"


def audit_timed(work: Path, n: int, drawings: int) -> dict:
    """The timed child: cache read, neighbour search, the duplicate stage (pixel checks, groups, findings)."""
    from autolabel.audit.duplicates import DuplicateRule, candidate_pairs, confirmed_edges, duplicate_findings
    from autolabel.audit.neighbours import nearest
    from autolabel.audit.pixels import BASE_PX, base_thumbnail
    from autolabel.audit.runner import NEIGHBOURS
    from autolabel.embedding.cache import EmbeddingCache
    from autolabel.embedding.decode import open_image, read_bytes

    started = time.perf_counter()
    cache = EmbeddingCache(work / "cache")
    x = np.stack([cache.get_image(f"{i:040x}", "bench") for i in range(n)])
    cache.close()
    read = time.perf_counter() - started
    neighbours = nearest(x, NEIGHBOURS)
    searched = time.perf_counter() - started
    rule = DuplicateRule()
    candidates = candidate_pairs(neighbours, np.arange(n), rule)
    edges = confirmed_edges(candidates, lambda a, b: float(x[a] @ x[b]),
                            lambda row: base_thumbnail(open_image(read_bytes(str(location(work, row, drawings))),
                                                                  2 * BASE_PX)), rule)
    findings = duplicate_findings([str(i) for i in range(n)], edges)
    seconds = time.perf_counter() - started
    groups = {f.group for f in findings}
    pure = sum(len({int(f.path) % drawings, int(f.other_path) % drawings}) == 1 for f in findings)
    return {"seconds": seconds, "read_s": read, "search_s": searched - read, "candidates": len(candidates),
            "rows": len(findings), "groups": len(groups), "same_drawing": pure / max(1, len(findings)),
            "grouped": len({int(p) for f in findings for p in (f.path, f.other_path)}),
            "cpu_s": time.process_time(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def audit_case(work: Path, args: argparse.Namespace) -> None:
    audit_setup(work, args.images, args.drawings)
    command = [sys.executable, __file__, "--images", str(args.images), "--drawings", str(args.drawings),
               "--child", str(work)]
    r = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    print(f"audit duplicates: {args.images:,} cached near-copies of {args.drawings} drawings in {r['seconds']:.1f} s "
          f"({r['cpu_s']:.1f} s CPU; cache read {r['read_s']:.1f} s, neighbour search {r['search_s']:.1f} s, "
          "pixel checks and groups "
          f"{r['seconds'] - r['read_s'] - r['search_s']:.1f} s), peak RSS {r['peak_rss_mb']:.0f} MB (targets ≤ 120 s, "
          f"≤ 2,048 MB); {r['candidates']:,} candidate pairs → {r['rows']:,} duplicate rows in {r['groups']} groups "
          f"covering {r['grouped']:,} images, {100 * r['same_drawing']:.1f}% of rows within one drawing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=3000)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--drawings", type=int, default=72)
    parser.add_argument("--only", choices=["lint", "audit"], default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(audit_timed(Path(args.child), args.images, args.drawings)))
        return
    with tempfile.TemporaryDirectory(prefix="autolabel-bounded-") as tmp:
        work = Path(tmp)
        if args.only in (None, "lint"):
            r = lint_case(work, args.classes)
            print(f"lint: {args.classes:,} look-alike classes × {len(TEMPLATES)} templates (tiny CLIP) in "
                  f"{r['seconds']:.1f} s ({r['cpu_s']:.1f} s CPU), peak RSS {r['peak_rss_mb']:.0f} MB, "
                  f"{r['stdout_lines']:,} stdout + "
                  f"{r['stderr_lines']:,} stderr lines, exit {r['rc']} (targets ≤ 120 s, ≤ 2,048 MB, ≤ 1,000 lines)")
            for line in r["tail"]:
                print("   ", line[:300])
        if args.only in (None, "audit"):
            audit_case(work, args)


if __name__ == "__main__":
    main()
