"""Throughput benchmark: autolabel vs transformers' zero-shot pipeline and the model-only limit.

Random-init ViT-B/32-shaped CLIP (same speed as openai/clip-vit-base-patch32), 64 JPEGs (half 640×480,
half 3000×2000), CPU unless CUDA is present. Runs are interleaved and repeated; ratios use medians.

    python benchmarks/throughput.py [--repeats 3] [--work DIR]
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
import torch
import yaml
from common import ROOT, interleave, make_jpegs, median, save_vit_b32
from PIL import Image

from autolabel.core.config import RunConfig
from autolabel.core.progress import Reporter
from autolabel.core.records import ImageRecord
from autolabel.embedding.decode import stack
from autolabel.embedding.model import ZeroShotModel
from autolabel.embedding.session import Session
from autolabel.embedding.stages import Prepare
from autolabel.labelling.pipeline import run

TINY = ROOT / "examples" / "tiny-shapes"


def spec_file(folder: Path, n_classes: int) -> Path:
    path = folder / f"classes{n_classes}.yaml"
    names = [f"class {i}" for i in range(n_classes)]
    path.write_text(yaml.safe_dump({"templates": ["a photo of a {label}."], "classes": names}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "autolabel-bench")
    parser.add_argument("--sections", default="1,2,3,4,5", help="which measurements to run, e.g. 1,3")
    parser.add_argument("--pipeline-images-1000", type=int, default=4,
                        help="images the pipeline labels at 1,000 classes with batch_size=1 (that slow)")
    args = parser.parse_args()
    work = args.work
    model_dir = save_vit_b32(work / "vit-b32")
    paths = make_jpegs(work / "jpegs")
    folder = str(work / "jpegs")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ZeroShotModel.load(str(model_dir), device=device)
    session = Session(model, None)  # each run keeps its own cache over this loaded model
    quiet = Reporter(quiet=True)
    results: dict[str, float] = {}

    from transformers import pipeline

    pipe = pipeline("zero-shot-image-classification", model=str(model_dir), device=device,
                    dtype=model.dtype)

    def ours(n_classes: int, cache_dir: Path | None = None):
        """A cold run (no cache) unless cache_dir is given."""
        config = RunConfig.from_options(folder, str(spec_file(work, n_classes)), str(work / "out.parquet"),
                                        batch_size=32, quiet=True, cache_dir=str(cache_dir) if cache_dir else None,
                                        no_cache=cache_dir is None)
        return lambda: run(config, session=session, reporter=quiet)

    def theirs(n_classes: int, n_images: int):
        labels = [f"class {i}" for i in range(n_classes)]
        files = [str(p) for p in paths[:n_images]]
        return lambda: pipe(files, candidate_labels=labels, hypothesis_template="a photo of a {}.", batch_size=32)

    sections = {int(s) for s in args.sections.split(",")}

    if 1 in sections:
        # 1. 10 classes, all 64 images.
        t = interleave({"autolabel": ours(10), "pipeline": theirs(10, len(paths))}, args.repeats)
        ips_ours, ips_pipe = len(paths) / median(t["autolabel"]), len(paths) / median(t["pipeline"])
        results["ours_10_ips"], results["pipeline_10_ips"] = ips_ours, ips_pipe
        print(f"[1] 10 classes: autolabel {ips_ours:.2f} img/s, pipeline {ips_pipe:.2f} img/s "
              f"→ ×{ips_ours / ips_pipe:.2f} (target ≥ 1.5)", flush=True)

    if 2 in sections:
        # 2. 1,000 classes. With batch_size=32 the pipeline encodes the 1,000 prompts once per batch of 32 images
        #    (it reuses the first image's text inputs for the whole batch); with its default batch_size=1, once per
        #    image. We encode them once per run, and not at all when the text cache already has them.
        text_cache = work / "text-cache"
        shutil.rmtree(text_cache, ignore_errors=True)
        ours(1000, text_cache)()  # fills the text cache (and the image cache, which the next run must not use)

        def ours_warm_text():
            config = RunConfig.from_options(folder, str(work / "classes1000.yaml"), str(work / "out.parquet"),
                                            quiet=True, cache_dir=str(text_cache))
            import sqlite3

            with sqlite3.connect(text_cache / "embeddings.sqlite") as conn:
                conn.execute("DELETE FROM images")
                conn.execute("DELETE FROM files")
            return run(config, session=session, reporter=quiet)

        n_one = args.pipeline_images_1000
        pipe_one = lambda: pipe([str(p) for p in paths[:n_one]], candidate_labels=[f"class {i}" for i in range(1000)],  # noqa: E731
                                hypothesis_template="a photo of a {}.", batch_size=1)
        t = interleave({"autolabel": ours(1000), "warm-text": ours_warm_text, "pipeline": theirs(1000, len(paths))},
                       max(1, args.repeats - 1))
        t1 = interleave({"pipeline-b1": pipe_one}, 1)
        ips_ours, ips_pipe = len(paths) / median(t["autolabel"]), len(paths) / median(t["pipeline"])
        ips_warm, ips_one = len(paths) / median(t["warm-text"]), n_one / median(t1["pipeline-b1"])
        results.update(ours_1000_ips=ips_ours, ours_1000_warm_text_ips=ips_warm, pipeline_1000_ips=ips_pipe,
                       pipeline_1000_b1_ips=ips_one)
        print(f"[2] 1,000 classes: autolabel {ips_ours:.2f} img/s (cold), {ips_warm:.2f} img/s (prompts cached); "
              f"pipeline batch_size=32 {ips_pipe:.2f} img/s → ×{ips_ours / ips_pipe:.1f} / ×{ips_warm / ips_pipe:.1f} "
              f"(target ≥ 30); pipeline batch_size=1 {ips_one:.3f} img/s ({n_one} images) "
              f"→ ×{ips_ours / ips_one:.0f} / ×{ips_warm / ips_one:.0f}", flush=True)

    if 3 in sections:
        # 3. Model-only limit: get_image_features on ready tensors, same batch size.
        records = [ImageRecord(path=p.name, location=str(p)) for p in paths]
        prepare = Prepare(model.preprocessing)
        ready = [stack([prepare(r).inputs for r in records[i:i + 32]])  # type: ignore[misc]
                 for i in range(0, len(records), 32)]

        def model_only():
            for batch in ready:
                model.encode_images(batch)

        t = interleave({"autolabel": ours(10), "model": model_only}, args.repeats)
        ips_ours, ips_model = len(paths) / median(t["autolabel"]), len(paths) / median(t["model"])
        results["ours_vs_model"] = ips_ours / ips_model
        print(f"[3] model-only limit {ips_model:.2f} img/s; autolabel {ips_ours:.2f} img/s "
              f"→ {100 * ips_ours / ips_model:.0f}% (target ≥ 85%)", flush=True)

    if 4 in sections:
        # 4. Re-label with a changed spec on a warm cache vs the cold first run (fresh cache each repeat).
        cold, warm = [], []
        for rep in range(args.repeats):
            cache_dir = work / f"cache-{rep}"
            shutil.rmtree(cache_dir, ignore_errors=True)
            t = interleave({"cold": ours(10, cache_dir)}, 1)
            spec_file(work, 12)  # a different label spec: 12 classes, new prompts
            config = RunConfig.from_options(folder, str(work / "classes12.yaml"), str(work / "out.parquet"),
                                            quiet=True, cache_dir=str(cache_dir))
            cold.append(t["cold"][0])
            warm.append(interleave({"warm": lambda c=config: run(c, session=session, reporter=quiet)}, 1)["warm"][0])
        results["warm_speedup"] = median(cold) / median(warm)
        print(f"[4] changed label spec, warm cache: {median(warm) * 1000:.0f} ms vs cold {median(cold):.2f} s "
              f"→ ×{results['warm_speedup']:.0f} faster (target ≥ 50)", flush=True)

    if 5 in sections:
        # 5. Peak RSS at 1,000 vs 20,000 small images, each run in its own process (tiny-shapes model).
        rss = {n: peak_rss_mb(work, n) for n in (1000, 20000)}
        results["rss_growth_mb"] = rss[20000] - rss[1000]
        print(f"[5] peak RSS: {rss[1000]:.0f} MB at 1,000 images, {rss[20000]:.0f} MB at 20,000 "
              f"→ +{results['rss_growth_mb']:.0f} MB (target ≤ 150)", flush=True)

    print(json.dumps({k: round(v, 4) for k, v in results.items()}))


def small_images(folder: Path, n: int) -> Path:
    """n small PNGs (64×64), generated once."""
    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.png")))
    rng = np.random.default_rng(0)
    for i in range(have, n):
        pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((64, 64)).save(folder / f"{i:06d}.png")
    return folder


def peak_rss_mb(work: Path, n: int) -> float:
    """Peak resident memory of `autolabel run` over n images, in a fresh process."""
    folder = small_images(work / f"small-{n}", n)
    code = (
        "import sys\n"
        "from autolabel.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
    )
    shutil.rmtree(work / f"rss-cache-{n}", ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", str(folder), "--labels", str(TINY / "labels.yaml"), "--out",
         str(work / f"rss-{n}.parquet"), "--quiet", "--cache-dir", str(work / f"rss-cache-{n}")],
        capture_output=True, text=True, check=True,
    )
    return int(proc.stdout.strip().splitlines()[-1]) / 1024


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
