"""Peak memory against the number of records: 20,000 vs 200,000, local engine and the Ray driver.

What grows with the number of records is the runner's own bookkeeping (sources, results, writers),
not model work, so the records here are cheap to label:
- local engine: a Parquet manifest of N rows over 64 small real images, cache warm (every row a cache hit
  through the file index: the full per-record path except the model call), single-file and folder --out;
- Ray engine: a manifest of N paths to missing files (each an error row made by the actors), folder --out
  (the workers write the shards) — the driver's peak RSS, which is what must stay flat.
Each run is its own process; peak RSS is its VmHWM. Prints one line per engine and a JSON summary.

    python benchmarks/memory.py                 # 20,000 vs 200,000 (several minutes)
    python benchmarks/memory.py --sizes 2000,20000 --engines local
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "examples" / "tiny-shapes"
PEAK = ("import sys\nfrom autolabel.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\nelse:\n    code = 0\n"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
        "sys.exit(code)\n")


def peak_mb(args: list[str]) -> float:
    """Peak RSS (MB) of one `autolabel` process."""
    proc = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", RAY_ADDRESS=""))
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return int(proc.stdout.strip().splitlines()[-1]) / 1024


def manifest(work: Path, n: int, real: bool) -> Path:
    """N rows: over 64 real images (cycled), or over missing files."""
    images = work / "images"
    if real and not images.exists():
        images.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(64):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((48, 48)).save(
                images / f"{i:02d}.png")
    paths = [f"images/{i % 64:02d}.png" if real else f"missing/{i:07d}.png" for i in range(n)]
    target = work / f"{'real' if real else 'missing'}-{n}.parquet"
    pd.DataFrame({"path": paths, "row": np.arange(n)}).to_parquet(target, index=False)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000,200000")
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp folder, removed after)")
    args = parser.parse_args()
    small, large = (int(s) for s in args.sizes.split(","))
    work = Path(args.work or tempfile.mkdtemp(prefix="autolabel-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    common = ["--labels", str(TINY / "labels.yaml"), "-q"]
    results: dict[str, float] = {}
    try:
        if "local" in args.engines:
            cache = work / "cache"
            peak_mb(["run", str(manifest(work, 64, True)), "--out", str(work / "warm.parquet"), "--cache-dir",
                     str(cache), *common])  # fills the cache: every later row is a hit
            for kind, out in (("file", "out.parquet"), ("shards", "shards/")):
                peaks = {n: peak_mb(["run", str(manifest(work, n, True)), "--out", f"{work}/{n}-{out}",
                                     "--cache-dir", str(cache), "--shard-size", "20000", *common])
                         for n in (small, large)}
                results[f"local_{kind}_growth_mb"] = peaks[large] - peaks[small]
                print(f"local engine, {kind} --out: peak RSS {peaks[small]:.0f} MB at {small:,} rows, "
                      f"{peaks[large]:.0f} MB at {large:,} → +{peaks[large] - peaks[small]:.0f} MB", flush=True)
        if "ray" in args.engines:
            peaks = {n: peak_mb(["run", str(manifest(work, n, False)), "--out", f"{work}/ray-{n}/",
                                 "--engine", "ray", "--shard-size", "20000", "--no-cache", *common])
                     for n in (small, large)}
            results["ray_driver_growth_mb"] = peaks[large] - peaks[small]
            print(f"ray engine driver, folder --out: peak RSS {peaks[small]:.0f} MB at {small:,} rows, "
                  f"{peaks[large]:.0f} MB at {large:,} → +{peaks[large] - peaks[small]:.0f} MB", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: round(v, 1) for k, v in results.items()}))


if __name__ == "__main__":
    main()
