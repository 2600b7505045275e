"""The review loop on the tiny-shapes worlds: accuracy after reviewing the first N rows of `autolabel queue`.

    python benchmarks/queue_review.py [--world demo|hard|both] [--work DIR] [--seed 1]

A simulated person (examples/tiny-shapes/simulate_review.py) labels exactly the first N rows of the queue in
order, skipping junk; `run --examples` learns from them; `eval` scores the rows nobody reviewed. Compared with
the first N rows of today's order (status review, lowest margin first). Round 2: `queue --examples` the first
round's file, N more rows, `run` with both files. Every command is the CLI's, with one shared embedding cache
(so every image is encoded once, by the first run; the script checks that nothing is encoded again).
Worlds: `demo` is `make demo`'s round 2 (240 images, 12 part codes, 6 broken or ambiguous files);
`hard` is make_images.py --hard (300 images, 6 imbalanced two-look codes, 8% junk).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ROOT / "examples" / "tiny-shapes"
WORLDS = {"demo": ("codes.yaml", 12, ["--n", "240", "--messy"]), "hard": ("hard-codes.yaml", 6, ["--hard"])}


def cli(*args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "autolabel", *args], check=True, capture_output=True, text=True,
                          env=env)
    return done.stdout


def script(name: str, *args: str) -> None:
    subprocess.run([sys.executable, str(SHAPES / name), *args], check=True, capture_output=True, text=True)


def scored(table: Path, truth: Path) -> dict[str, float]:
    metrics = json.loads(cli("eval", str(table), "--truth", str(truth), "--json", "-"))
    return {"accuracy": metrics["accuracy"], "accepted_precision": metrics["accepted"]["precision"] or 0.0,
            "coverage": metrics["accepted"]["coverage"]}


def learn(work: Path, spec: Path, manifest: Path, name: str, *examples: Path) -> tuple[Path, int]:
    """A run with examples; returns its table and how many images it encoded."""
    out = work / f"{name}.parquet"
    args = [a for e in examples for a in ("--examples", str(e))]
    cli("run", str(manifest), "--labels", str(spec), "--out", str(out), "--cache-dir", str(work / "cache"), "-q",
        "--summary-json", str(work / f"{name}.json"), *args)
    summary = json.loads((work / f"{name}.json").read_text())
    return out, int(summary.get("encoded", summary.get("images_encoded", 0)) or 0)


def world(work: Path, name: str, seed: int = 1) -> dict[str, object]:
    spec_name, classes, flags = WORLDS[name]
    spec, images = SHAPES / spec_name, work / "images"
    script("make_images.py", str(images), *flags, "--seed", str(seed))
    manifest, truth = images / "manifest.csv", work / "truth.csv"
    listed = pd.read_csv(manifest, keep_default_na=False)
    empty = {str((images / p).resolve()) for p, t in zip(listed.path, listed.truth, strict=True) if not t}

    def junk(path: str) -> bool:
        return str(Path(path).resolve()) in empty

    r1, _ = learn(work, spec, manifest, "r1")
    result: dict[str, object] = {"zero_shot": None}
    queue = work / "q1.csv"
    queued = cli("queue", str(r1), "--budget", str(4 * classes), "--out", str(queue), "--cache-dir",
                 str(work / "cache"), "-q")
    encoded = [int(queued.split(" images newly embedded")[0].rsplit(" ", 1)[1])]
    for per_class in (2, 4):
        corrections = work / f"c1-{per_class}.csv"
        script("simulate_review.py", str(queue), str(manifest), "--first", str(per_class * classes), "--out",
               str(corrections), "--truth", str(truth))
        table, n = learn(work, spec, manifest, f"r2-{per_class}", corrections)
        encoded.append(n)
        result[f"queue {per_class}/class"] = scored(table, truth)
    exact = work / "q-exact.csv"  # `make demo`'s way: plan exactly 2 per class, review them all
    queued = cli("queue", str(r1), "--budget", str(2 * classes), "--out", str(exact), "--cache-dir",
                 str(work / "cache"), "-q")
    encoded.append(int(queued.split(" images newly embedded")[0].rsplit(" ", 1)[1]))
    script("simulate_review.py", str(exact), str(manifest), "--out", str(work / "c-exact.csv"), "--truth", str(truth))
    table, n = learn(work, spec, manifest, "r2-exact", work / "c-exact.csv")
    encoded.append(n)
    result["queue --budget 2/class, all reviewed"] = scored(table, truth)
    result["zero_shot"] = scored(r1, truth)
    baseline = work / "least-margin.csv"
    script("simulate_review.py", str(r1), str(manifest), "--least-margin", "--first", str(2 * classes), "--out",
           str(baseline), "--truth", str(truth))
    table, n = learn(work, spec, manifest, "baseline", baseline)
    encoded.append(n)
    result["least-margin 2/class"] = scored(table, truth)
    first, second = work / "c1-2.csv", work / "q2.csv"
    queued = cli("queue", str(work / "r2-2.parquet"), "--budget", str(2 * classes), "--out", str(second),
                 "--examples", str(first), "--cache-dir", str(work / "cache"), "-q")
    encoded.append(int(queued.split(" images newly embedded")[0].rsplit(" ", 1)[1]))
    seen = pd.read_csv(first, keep_default_na=False).head(2 * classes)
    offered = set(pd.read_csv(second).path)
    result["round 2 offers reviewed rows again"] = len(set(seen.path[seen.reviewed_label != ""]) & offered)
    result["round 2 offers skipped rows again"] = len(set(seen.path[seen.reviewed_label == ""]) & offered)
    result["round 2 junk rows"] = int((pd.read_csv(second).path.map(junk)).sum())
    corrections = work / "c2.csv"
    script("simulate_review.py", str(second), str(manifest), "--out", str(corrections), "--truth", str(truth))
    table, n = learn(work, spec, manifest, "r3", first, corrections)
    encoded.append(n)
    result["queue 2+2/class"] = scored(table, truth)
    result["encoded after the first run"] = sum(encoded)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=["demo", "hard", "both"], default="both")
    parser.add_argument("--work", type=Path, default=None, help="keep the files here [default: a temp folder]")
    parser.add_argument("--seed", type=int, default=1, help="make_images.py's seed (the world's draw)")
    args = parser.parse_args()
    for name in (["demo", "hard"] if args.world == "both" else [args.world]):
        with tempfile.TemporaryDirectory(prefix=f"autolabel-queue-{name}-") as tmp:
            work = (args.work / name) if args.work else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            result = world(work, name, args.seed)
        print(f"{name}: " + json.dumps(result))


if __name__ == "__main__":
    main()
