"""Precision benchmark: torch fp32 / bf16 and ONNX Runtime int8, speed and agreement with fp32; the lazy cached re-run.

1. Speed: a random-init CLIP with openai/clip-vit-base-patch32's exact shape (so its exact speed), the image
   tower on one stacked batch of decoded photo-like JPEGs (steady state: decoding and start-up excluded),
   each precision timed in turn, interleaved and repeated; ratios of medians vs fp32 in the same process.
2. Agreement: the trained tiny-shapes model labels 240 fresh images at each precision (whole `run`s, no
   cache); labels, statuses and the largest confidence difference vs fp32.
3. Start-up: a re-run the cache answers completely vs `python -c "import torch, transformers; from
   transformers import CLIPModel"`, whole processes, interleaved, median ratio (target < 0.5).

    python benchmarks/precision.py [--repeats 5] [--batch 32] [--sections 1,2,3] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, interleave, make_jpegs, median, save_vit_b32

TINY = ROOT / "examples" / "tiny-shapes"
PRECISIONS = ("fp32", "bf16", "int8")


def _lazy(name: str, precision: str, work: Path):  # -> LazyModel
    from autolabel.embedding.session import LazyModel

    return LazyModel(name, "cpu", precision, work_dir=work / "onnx")


def speed(work: Path, repeats: int, batch: int) -> None:
    """Steady-state img/s of the image tower at each precision, on the same ready batch."""
    from PIL import Image

    from autolabel.core.precision import native_bf16
    from autolabel.embedding.decode import stack

    model_dir = save_vit_b32(work / "vit-b32")
    models = {p: _lazy(str(model_dir), p, work).get() for p in PRECISIONS}
    fp32 = models["fp32"]
    paths = make_jpegs(work / "jpegs", n=max(batch, 2))[:batch]
    inputs = stack([fp32.preprocessing(Image.open(p).convert("RGB")) for p in paths])
    reference = np.asarray(fp32.encode_images(inputs))
    cosines = {p: float((np.asarray(m.encode_images(inputs)) * reference).sum(axis=1).min()) for p, m in models.items()}
    times = interleave({p: (lambda m=m: m.encode_images(inputs)) for p, m in models.items()}, repeats)
    base = median(times["fp32"])
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        capability = "?"
    print(f"\n1. ViT-B/32 image tower, batch {batch}, {repeats} interleaved repeats; torch CPU capability "
          f"{capability}, native bf16: {native_bf16()}")
    print(f"{'precision':<22}{'img/s (median)':>15}{'vs fp32':>10}{'min cosine vs fp32':>20}")
    for p in PRECISIONS:
        runtime = "ONNX Runtime" if p == "int8" else "torch"
        print(f"{p + ' (' + runtime + ')':<22}{batch / median(times[p]):>15.1f}{base / median(times[p]):>9.2f}x"
              f"{cosines[p]:>20.6f}")
    print("   parity at export (int8):", models["int8"].parity)


def agreement(work: Path) -> None:
    """Labels, statuses and confidences of the trained tiny model at each precision vs fp32."""
    import pandas as pd
    from make_images import make_images

    from autolabel.core.config import RunConfig
    from autolabel.embedding.session import Session
    from autolabel.labelling.pipeline import run

    manifest = make_images(work / "shapes", n=240, seed=2024)
    frames = {}
    for p in PRECISIONS:
        out = work / f"agree-{p}.parquet"
        config = RunConfig.from_options(str(manifest), str(TINY / "labels.yaml"), str(out), precision=p,
                                        device="cpu", no_cache=True, quiet=True, overwrite=True)
        run(config, session=Session(_lazy(str(TINY / "model"), p, work), None))
        frames[p] = pd.read_parquet(out)
    print("\n2. trained tiny-shapes model, 240 images, whole runs vs fp32")
    print(f"{'precision':<12}{'labels equal':>14}{'statuses equal':>16}{'max |Δ confidence|':>20}{'accuracy':>10}")
    ref = frames["fp32"]
    for p, frame in frames.items():
        print(f"{p:<12}{(frame.label == ref.label).mean():>14.2%}{(frame.status == ref.status).mean():>16.2%}"
              f"{(frame.confidence - ref.confidence).abs().max():>20.4f}{(frame.label == frame.truth).mean():>10.2%}")


def startup(work: Path, repeats: int) -> None:
    """A fully cached re-run (whole process) vs importing torch + transformers' CLIP."""
    from make_images import make_images

    manifest = make_images(work / "rerun", n=240, seed=7)
    env = {**os.environ, "AUTOLABEL_CACHE_DIR": str(work / "rerun-cache"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "autolabel", "run", str(manifest), "--labels", str(TINY / "labels.yaml"), "--out",
           str(work / "rerun.parquet"), "--model", str(TINY / "model"), "--overwrite", "-q"]
    subprocess.run(cmd, env=env, check=True)  # fills the cache
    imports = [sys.executable, "-c", "import torch, transformers; from transformers import CLIPModel"]
    times = interleave({"cached re-run": lambda: subprocess.run(cmd, env=env, check=True),
                        "import torch+transformers": lambda: subprocess.run(imports, env=env, check=True)}, repeats)
    rerun, heavy = median(times["cached re-run"]), median(times["import torch+transformers"])
    print(f"\n3. whole processes, {repeats} interleaved repeats (240 images, every embedding cached)")
    print(f"cached re-run {rerun:.2f} s, import torch+transformers' CLIP {heavy:.2f} s: ratio {rerun / heavy:.2f} "
          f"(target < 0.5); runs {', '.join(f'{t:.2f}' for t in times['cached re-run'])} vs "
          f"{', '.join(f'{t:.2f}' for t in times['import torch+transformers'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sections", default="1,2,3")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "autolabel-bench")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sections = set(args.sections.split(","))
    started = time.perf_counter()
    if "1" in sections:
        speed(args.work, args.repeats, args.batch)
    if "2" in sections:
        agreement(args.work)
    if "3" in sections:
        startup(args.work, args.repeats)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
