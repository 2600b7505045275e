"""Throughput benchmark: autolabel vs transformers' zero-shot pipeline and the model-only limit.

Random-init ViT-B/32-shaped CLIP (same speed as openai/clip-vit-base-patch32), 64 JPEGs (half 640×480,
half 3000×2000), CPU unless CUDA is present. Runs are interleaved and repeated; ratios use medians.

    python benchmarks/throughput.py [--repeats 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
import yaml
from common import interleave, make_jpegs, median, save_vit_b32

from autolabel.decode import stack
from autolabel.model import ZeroShotModel
from autolabel.pipeline import RunConfig, decode_record, run
from autolabel.progress import Reporter
from autolabel.sources import ImageRecord


def spec_file(folder: Path, n_classes: int) -> Path:
    path = folder / f"classes{n_classes}.yaml"
    names = [f"class {i}" for i in range(n_classes)]
    path.write_text(yaml.safe_dump({"templates": ["a photo of a {label}."], "classes": names}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "autolabel-bench")
    parser.add_argument("--pipeline-images-1000", type=int, default=8,
                        help="images the pipeline labels at 1,000 classes (it is that slow)")
    args = parser.parse_args()
    work = args.work
    model_dir = save_vit_b32(work / "vit-b32")
    paths = make_jpegs(work / "jpegs")
    folder = str(work / "jpegs")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ZeroShotModel.load(str(model_dir), device=device)
    quiet = Reporter(quiet=True)
    results: dict[str, float] = {}

    from transformers import pipeline

    pipe = pipeline("zero-shot-image-classification", model=str(model_dir), device=device,
                    dtype=model.dtype)

    def ours(n_classes: int):
        config = RunConfig(source=folder, labels=str(spec_file(work, n_classes)), out=str(work / "out.parquet"),
                           batch_size=32, quiet=True)
        return lambda: run(config, model=model, reporter=quiet)

    def theirs(n_classes: int, n_images: int):
        labels = [f"class {i}" for i in range(n_classes)]
        files = [str(p) for p in paths[:n_images]]
        return lambda: pipe(files, candidate_labels=labels, hypothesis_template="a photo of a {}.", batch_size=32)

    # 1. 10 classes, all 64 images.
    t = interleave({"autolabel": ours(10), "pipeline": theirs(10, len(paths))}, args.repeats)
    ips_ours, ips_pipe = len(paths) / median(t["autolabel"]), len(paths) / median(t["pipeline"])
    results["ours_10_ips"], results["pipeline_10_ips"] = ips_ours, ips_pipe
    print(f"[1] 10 classes: autolabel {ips_ours:.2f} img/s, pipeline {ips_pipe:.2f} img/s "
          f"→ ×{ips_ours / ips_pipe:.2f} (target ≥ 1.5)", flush=True)

    # 2. 1,000 classes: the pipeline re-encodes every prompt per image, so it gets fewer images.
    n_pipe = args.pipeline_images_1000
    t = interleave({"autolabel": ours(1000), "pipeline": theirs(1000, n_pipe)}, max(1, args.repeats - 1))
    ips_ours, ips_pipe = len(paths) / median(t["autolabel"]), n_pipe / median(t["pipeline"])
    results["ours_1000_ips"], results["pipeline_1000_ips"] = ips_ours, ips_pipe
    print(f"[2] 1,000 classes: autolabel {ips_ours:.2f} img/s, pipeline {ips_pipe:.3f} img/s "
          f"({n_pipe} images) → ×{ips_ours / ips_pipe:.1f} (target ≥ 30)", flush=True)

    # 3. Model-only limit: get_image_features on ready tensors, same batch size.
    records = [ImageRecord(path=p.name, location=str(p)) for p in paths]
    ready = [stack([decode_record(r, model.preprocessing) for r in records[i:i + 32]])  # type: ignore[misc]
             for i in range(0, len(records), 32)]

    def model_only():
        for batch in ready:
            model.encode_images(batch)

    t = interleave({"autolabel": ours(10), "model": model_only}, args.repeats)
    ips_ours, ips_model = len(paths) / median(t["autolabel"]), len(paths) / median(t["model"])
    results["ours_vs_model"] = ips_ours / ips_model
    print(f"[3] model-only limit {ips_model:.2f} img/s; autolabel {ips_ours:.2f} img/s "
          f"→ {100 * ips_ours / ips_model:.0f}% (target ≥ 85%)", flush=True)

    print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
