"""Command-line interface: parse options, build a config, call the library, map errors to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from autolabel import __version__
from autolabel.errors import AutolabelError

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "AUTOLABEL", "max_content_width": 100}


def handle_errors(func: F) -> F:
    """Domain errors → one stderr line and their exit code; Ctrl-C → 130."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AutolabelError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: no partial output was written", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="autolabel")
def main() -> None:
    """Label image datasets with zero-shot image-text models (CLIP, SigLIP).

    \b
    Quick start:
      autolabel prompts                                  # shipped template sets
      autolabel run photos/ --labels labels.yaml --out labels.parquet

    Every option can also be set with an AUTOLABEL_<COMMAND>_<OPTION> environment variable.
    """


@main.command(context_settings=CONTEXT)
@click.argument("source")
@click.option("--labels", "-l", required=True, type=click.Path(dir_okay=False), help="Label spec YAML.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Output .parquet or .csv.")
@click.option("--model", "-m", default=None,
              help="Hub id or local folder [default: the spec's model:, else openai/clip-vit-base-patch32].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
              help="auto: fp16 on CUDA, fp32 elsewhere.")
@click.option("--batch-size", "-b", type=int, default=32, show_default=True, help="Images per model call.")
@click.option("--workers", "-w", type=int, default=0, show_default=True,
              help="Decode threads (0: one per core, max 8).")
@click.option("--top-k", "-k", type=int, default=3, show_default=True, help="Classes kept in top_labels/top_scores.")
@click.option("--threshold", "-t", type=float, default=None,
              help="Global acceptance threshold (overrides the spec's; per-class thresholds still apply).")
@click.option("--max-errors", type=int, default=None, help="Exit 1 if more images than this fail (output is kept).")
@click.option("--summary-json", type=click.Path(dir_okay=False), default=None,
              help="Write counts per class and status, images/s, model and thresholds as JSON.")
@click.option("--path-column", default=None,
              help="Manifest column with the image paths [default: first of path, image, file_name, filepath].")
@click.option("--full-decode", is_flag=True,
              help="Decode JPEGs at full size (slower; by default DCT draft mode scales them to 2x the model input).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@handle_errors
def run(source: str, labels: str, out: str, model: str | None, device: str, precision: str, batch_size: int,
        workers: int, top_k: int, threshold: float | None, max_errors: int | None, summary_json: str | None,
        path_column: str | None, full_decode: bool, quiet: bool) -> None:
    """Label every image of SOURCE with the classes of a label spec.

    SOURCE is a folder (searched recursively), a manifest (.csv .tsv .parquet .jsonl .txt) or - for image
    paths on stdin. Writes one row per image, in input order: path, label, confidence, margin, status
    (accepted / review / error), top_labels, top_scores, error, then the manifest's own columns.

    \b
    Examples:
      autolabel run photos/ --labels pets.yaml --out labels.parquet
      autolabel run images.csv --labels labels.yaml --out labels.csv --model google/siglip-base-patch16-224
      find shots -name '*.jpg' | autolabel run - --labels labels.yaml --out labels.parquet --quiet
    """
    from autolabel.pipeline import RunConfig
    from autolabel.pipeline import run as run_pipeline

    config = RunConfig(
        source=source, labels=labels, out=out, model=model, device=device, precision=precision,
        batch_size=batch_size, workers=workers, top_k=top_k, threshold=threshold, max_errors=max_errors,
        summary_json=summary_json, path_column=path_column, quiet=quiet, draft=not full_decode,
    )
    run_pipeline(config, stdin=sys.stdin if source == "-" else None)


@main.command(context_settings=CONTEXT)
@click.argument("name", required=False)
def prompts(name: str | None) -> None:
    """List the shipped template sets and example label specs, or print the templates of set NAME.

    Use a set in a label spec with `templates: NAME`.
    """
    from autolabel.prompts import example_specs, template_sets

    sets = template_sets()
    if name:
        if name not in sets:
            click.echo(f"error: no template set named '{name}'; sets: {', '.join(sets)}", err=True)
            sys.exit(2)
        for template in sets[name].templates:
            click.echo(template)
        return
    for item in sets.values():
        click.echo(f"{item.name}\t{len(item.templates)} templates\t{item.description}")
    click.echo("\nexample label specs:", err=True)
    for path in example_specs():
        click.echo(f"  {path}", err=True)
