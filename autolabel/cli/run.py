"""`autolabel run`: options → RunConfig → the library's run."""

from __future__ import annotations

import sys
from typing import Any

import click

from autolabel.cli.app import CONTEXT, handle_errors, main


@main.command(context_settings=CONTEXT)
@click.argument("source")
@click.option("--labels", "-l", required=True, type=click.Path(dir_okay=False), help="Label spec YAML.")
@click.option("--out", "-o", required=True,
              help="Output .parquet or .csv, or a folder (DIR/ or an existing folder) for resumable shards.")
@click.option("--model", "-m", default=None,
              help="Hub id or local folder [default: the spec's model:, else openai/clip-vit-base-patch32].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16", "int8"]), default="auto",
              show_default=True, help="auto: fp16 on CUDA, bf16 on a CPU with native bf16, else fp32. int8: ONNX "
              "Runtime on the CPU (the int8 extra).")
@click.option("--batch-size", "-b", type=int, default=32, show_default=True, help="Images per model call.")
@click.option("--workers", "-w", type=int, default=0, show_default=True,
              help="Decode threads (0: one per core, max 32).")
@click.option("--top-k", "-k", type=int, default=None,
              help="Classes kept in top_labels/top_scores [default: 3; multi-label specs: every class].")
@click.option("--threshold", "-t", type=float, default=None,
              help="Global acceptance threshold (overrides the spec's; per-class thresholds still apply).")
@click.option("--max-errors", type=int, default=None, help="Exit 1 if more images than this fail (output is kept).")
@click.option("--summary-json", type=click.Path(dir_okay=False), default=None,
              help="Write counts per class and status, images/s, model and thresholds as JSON.")
@click.option("--path-column", default=None,
              help="Manifest column with the image paths [default: first of path, image, file_name, filepath].")
@click.option("--full-decode", is_flag=True,
              help="Decode JPEGs at full size (slower; by default DCT draft mode scales them to 2x the model input).")
@click.option("--cache-dir", type=click.Path(), envvar="AUTOLABEL_CACHE_DIR", default=None,
              help="Embedding cache folder [default: $AUTOLABEL_CACHE_DIR, $XDG_CACHE_HOME/autolabel or "
                   "~/.cache/autolabel].")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Run here, or on a Ray cluster (pip install 'autolabel[ray]').")
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None,
              help="Ray cluster to join [default: $RAY_ADDRESS, else a private local cluster].")
@click.option("--actors", type=int, default=1, show_default=True, help="Ray: model actors.")
@click.option("--cpus-per-actor", type=float, default=1.0, show_default=True,
              help="Ray: CPUs each model actor holds (and its torch threads).")
@click.option("--gpus-per-actor", type=float, default=0.0, show_default=True, help="Ray: GPUs per model actor.")
@click.option("--examples", "examples", multiple=True, type=click.Path(),
              help="A table (.parquet/.csv/.jsonl, or a shard folder) of reviewed images (path + label): it learns "
                   "from them, and those inside SOURCE keep their human label (status reviewed). Repeatable.")
@click.option("--examples-column", default=None,
              help="The label column of --examples tables [default: reviewed_label if present, else label].")
@click.option("--shard-size", type=int, default=100_000, show_default=True,
              help="Folder --out: input rows per part-NNNNN.parquet shard.")
@click.option("--overwrite", is_flag=True,
              help="Replace what --out holds even so: a file that is not an autolabel table or holds human "
                   "reviews (reviewed_label), shards of a different job (spec, model, source or options changed).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@click.option("--verbose", "-v", is_flag=True, help="Every skipped image and every item of grouped warnings.")
@handle_errors
def run(source: str, labels: str, out: str, **options: Any) -> None:
    """Label every image of SOURCE with the classes of a label spec.

    SOURCE is a folder (searched recursively), a manifest (.csv .tsv .parquet .jsonl .txt) or - for image
    paths on stdin. Writes one row per image, in input order: path, label, confidence, margin, status
    (accepted / review / error), top_labels, top_scores, error, then the manifest's own columns. A spec with
    `multi_label: true` scores every class on its own and adds `labels` (every class over its threshold).

    Image and text embeddings are cached by content, so changing the label spec and running again only
    re-encodes the prompts, and an interrupted run re-run with the same arguments resumes where it stopped.
    With a folder --out (DIR/), rows go to part-NNNNN.parquet shards of --shard-size input rows, and a
    re-run skips the finished shards whose images are unchanged and redoes the others, so the folder
    equals a fresh run of SOURCE (on Ray too, where the cache is not used).

    \b
    Examples:
      autolabel run photos/ --labels pets.yaml --out labels.parquet
      autolabel run images.csv --labels labels.yaml --out labels.csv --model google/siglip-base-patch16-224
      find shots -name '*.jpg' | autolabel run - --labels labels.yaml --out labels.parquet --quiet
      autolabel run s3://bucket/list.parquet -l labels.yaml -o s3://bucket/labels/ --engine ray   # shards
    """
    import signal

    from autolabel.core.config import RunConfig
    from autolabel.labelling.pipeline import run as run_pipeline

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # a scheduler's SIGTERM ends the run as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, terminated)
    config = RunConfig.from_options(source, labels, out, **options)
    run_pipeline(config, stdin=sys.stdin if source == "-" else None)
