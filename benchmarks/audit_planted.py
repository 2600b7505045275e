"""Audit quality on planted problems: 90 tiny-shapes images, 30 near-duplicate pairs, 6 flipped truth labels.

    python benchmarks/audit_planted.py [--seeds 1 2 3]

Per seed: 60 drawings of the 12 classes, 30 copies of them (10 exact, 10 JPEG re-encodes at quality 60–85,
10 at 80% size), 6 truth labels changed to another class; `autolabel run` then `autolabel audit --truth
truth` with the tiny-shapes model. Prints duplicate-pair recall and precision, and how many flipped labels
are among the first 9 `label_issue` rows.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "examples" / "tiny-shapes"
sys.path.insert(0, str(TINY))


def plant(out: Path, seed: int) -> tuple[set[frozenset[str]], set[str]]:
    from shapes import CLASSES, COLORS, SHAPES, draw_shape, near_copy

    rng = random.Random(seed)
    out.mkdir(parents=True)
    rows = []
    for i in range(60):
        color, shape = list(COLORS)[i % 4], SHAPES[(i // 4) % 3]
        w = rng.randint(48, 200)
        h = w if rng.random() < 0.5 else rng.randint(48, 200)
        name = f"img{i:03d}." + ("jpg" if i % 2 == 0 else "png")
        draw_shape(color, shape, rng, (w, h)).save(out / name, quality=92)
        rows.append({"path": name, "truth": f"{color} {shape}"})
    pairs = set()
    for k, i in enumerate(rng.sample(range(60), 30)):
        quality = rng.choice([60, 75, 85]) if k % 3 == 1 else 0
        name = near_copy(out / rows[i]["path"], f"dup{k:02d}", k % 3, quality)
        rows.append({"path": name, "truth": rows[i]["truth"]})
        pairs.add(frozenset((rows[i]["path"], name)))
    flipped = set()
    for i in rng.sample(range(90), 6):
        rows[i]["truth"] = rng.choice([c for c in CLASSES if c != rows[i]["truth"]])
        flipped.add(rows[i]["path"])
    rng.shuffle(rows)
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    return pairs, flipped


def autolabel(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "autolabel", *args], check=True, stdout=subprocess.DEVNULL,
                   env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autolabel-audit-planted-") as tmp:
        for seed in args.seeds:
            work = Path(tmp) / str(seed)
            pairs, flipped = plant(work / "images", seed)
            labels, findings, cache = work / "labels.parquet", work / "findings.parquet", work / "cache"
            autolabel("run", str(work / "images" / "manifest.csv"), "-l", str(TINY / "labels.yaml"), "-o", str(labels),
                      "--cache-dir", str(cache), "-q")
            autolabel("audit", str(labels), "--out", str(findings), "--truth", "truth", "--cache-dir", str(cache),
                      "-q")
            frame = pd.read_parquet(findings)
            dup = frame[frame["kind"] == "duplicate"]
            found = {frozenset(p) for p in zip(dup["path"], dup["other_path"], strict=True)}
            hits = len(found & pairs)
            top = set(frame[frame["kind"] == "label_issue"]["path"].head(9))
            print(json.dumps({"seed": seed, "pair_recall": round(hits / len(pairs), 3),
                              "pair_precision": round(hits / max(1, len(found)), 3),
                              "flipped_in_top_9": f"{len(top & flipped)}/{len(flipped)}"}))


if __name__ == "__main__":
    main()
