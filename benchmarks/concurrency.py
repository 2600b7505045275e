"""Two `autolabel run`s at once on the same cores: wall time against one run alone (ideal: ×2, same total work).

    python benchmarks/concurrency.py [--repeats 2] [--model tiny|b32]

Each run is its own process on the same machine, no cache: with `tiny` (default) the tiny-shapes CLIP over
600 small images at batch size 2 (decoding and thread hand-offs dominate, where oversubscription bites);
with `b32` a random-init ViT-B/32-shaped CLIP over 32 JPEGs, half 640×480 and half 3000×2000. Compared,
interleaved and repeated: the defaults (on the CPU one decode thread per four cores, idle OpenMP threads
sleeping) against the old settings (one decode thread per core, OMP_WAIT_POLICY=ACTIVE, i.e. spinning).
Prints each setting's ratio two-at-once / one-alone (medians).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, make_jpegs, median, save_vit_b32

SETTINGS = {
    "defaults": ({}, []),
    "old (a decode thread per core, spinning OpenMP)": ({"OMP_WAIT_POLICY": "ACTIVE"}, ["--workers", "2"]),
}


def run_many(n: int, folder: Path, model: Path, spec: Path, work: Path, env: dict[str, str],
             extra: list[str]) -> float:
    """Wall time of n concurrent runs."""
    procs = []
    started = time.perf_counter()
    for i in range(n):
        cmd = [sys.executable, "-m", "autolabel", "run", str(folder), "--labels", str(spec), "--model", str(model),
               "--out", str(work / f"o{i}.parquet"), "--no-cache", "-q", *extra]
        procs.append(subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(err.decode()[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", choices=["tiny", "b32"], default="tiny")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="autolabel-conc-"))
    folder = work / "images"
    spec = work / "spec.yaml"
    if args.model == "b32":
        model = save_vit_b32(Path(tempfile.gettempdir()) / "autolabel-bench-vit-b32")
        make_jpegs(folder, 32)
        spec.write_text("templates: ['a photo of a {label}.']\nclasses: [cat, dog, bird, car, tree]\n")
        batch = []
    else:
        tiny = ROOT / "examples" / "tiny-shapes"
        model = tiny / "model"
        subprocess.run([sys.executable, str(tiny / "make_images.py"), str(folder), "--n", "600"], check=True,
                       stdout=subprocess.DEVNULL)
        spec.write_text((tiny / "labels.yaml").read_text().replace("model: model", f"model: {model}"))
        batch = ["--batch-size", "2"]
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for name, (env, extra) in SETTINGS.items():
            for n in (1, 2):
                times.setdefault((name, n), []).append(run_many(n, folder, model, spec, work, env, extra + batch))
    for name in SETTINGS:
        one, two = median(times[(name, 1)]), median(times[(name, 2)])
        print(f"{name}: one run {one:.1f} s, two at once {two:.1f} s → ×{two / one:.2f} (ideal ×2)", flush=True)


if __name__ == "__main__":
    main()
