"""Command-line interface: parse options, build a config, call the library, map errors to exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
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
            click.echo("interrupted: no partial output was written (re-run `autolabel run` with the same "
                       "arguments to resume from the embedding cache)", err=True)
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
      autolabel report labels.parquet --out report.html  # look at the result
    \b
    Review loop: run → report → export → import-review → eval → calibrate → run again (cached).

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
              help="Decode threads (0: one per core, max 32).")
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
@click.option("--cache-dir", type=click.Path(file_okay=False), envvar="AUTOLABEL_CACHE_DIR", default=None,
              help="Embedding cache folder [default: $XDG_CACHE_HOME/autolabel or ~/.cache/autolabel].")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Run here, or on a Ray cluster (pip install 'autolabel[ray]').")
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None,
              help="Ray cluster to join [default: $RAY_ADDRESS, else a private local cluster].")
@click.option("--actors", type=int, default=1, show_default=True, help="Ray: model actors.")
@click.option("--cpus-per-actor", type=float, default=1.0, show_default=True,
              help="Ray: CPUs each model actor holds (and its torch threads).")
@click.option("--gpus-per-actor", type=float, default=0.0, show_default=True, help="Ray: GPUs per model actor.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@handle_errors
def run(source: str, labels: str, out: str, model: str | None, device: str, precision: str, batch_size: int,
        workers: int, top_k: int, threshold: float | None, max_errors: int | None, summary_json: str | None,
        path_column: str | None, full_decode: bool, cache_dir: str | None, no_cache: bool, engine: str,
        ray_address: str | None, actors: int, cpus_per_actor: float, gpus_per_actor: float, quiet: bool) -> None:
    """Label every image of SOURCE with the classes of a label spec.

    SOURCE is a folder (searched recursively), a manifest (.csv .tsv .parquet .jsonl .txt) or - for image
    paths on stdin. Writes one row per image, in input order: path, label, confidence, margin, status
    (accepted / review / error), top_labels, top_scores, error, then the manifest's own columns.

    Image and text embeddings are cached by content, so changing the label spec and running again only
    re-encodes the prompts, and an interrupted run re-run with the same arguments resumes where it stopped.

    \b
    Examples:
      autolabel run photos/ --labels pets.yaml --out labels.parquet
      autolabel run images.csv --labels labels.yaml --out labels.csv --model google/siglip-base-patch16-224
      find shots -name '*.jpg' | autolabel run - --labels labels.yaml --out labels.parquet --quiet
      autolabel run s3://bucket/list.parquet -l labels.yaml -o s3://bucket/labels.parquet --engine ray
    """
    import signal

    from autolabel.pipeline import RunConfig
    from autolabel.pipeline import run as run_pipeline

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # a scheduler's SIGTERM ends the run as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, terminated)

    config = RunConfig(
        source=source, labels=labels, out=out, model=model, device=device, precision=precision,
        batch_size=batch_size, workers=workers, top_k=top_k, threshold=threshold, max_errors=max_errors,
        summary_json=summary_json, path_column=path_column, quiet=quiet, draft=not full_decode,
        cache_dir=cache_dir, no_cache=no_cache, engine=engine, ray_address=ray_address, actors=actors,
        cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
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


SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _parse(value: str | None, units: dict[str, int], what: str) -> float | None:
    if value is None:
        return None
    text = value.strip().upper() if what == "size" else value.strip().lower()
    number = text.rstrip("".join({c for u in units for c in u}))
    unit = text[len(number):]
    try:
        return float(number) * units[unit]
    except (ValueError, KeyError):
        example = "2GB, 500MB" if what == "size" else "30d, 12h"
        raise click.BadParameter(f"'{value}' is not a {what} such as {example}") from None


@main.group(context_settings=CONTEXT)
def cache() -> None:
    """Inspect or shrink the embedding cache."""


def _open_cache(cache_dir: str | None):  # -> EmbeddingCache
    from autolabel.cache import EmbeddingCache, default_cache_dir

    return EmbeddingCache(cache_dir or default_cache_dir())


@cache.command("info", context_settings=CONTEXT)
@click.option("--cache-dir", type=click.Path(file_okay=False), envvar="AUTOLABEL_CACHE_DIR", default=None)
@handle_errors
def cache_info(cache_dir: str | None) -> None:
    """Show the cache's location, size and entries per model."""
    info = _open_cache(cache_dir).info()
    click.echo(f"path\t{info.path}")
    click.echo(f"size\t{info.bytes / 1e6:.1f} MB")
    click.echo(f"files indexed\t{info.files}")
    for space, n in info.images.items():
        click.echo(f"images\t{n}\t{space}")
    for space, n in info.texts.items():
        click.echo(f"prompts\t{n}\t{space}")


@cache.command("prune", context_settings=CONTEXT)
@click.option("--cache-dir", type=click.Path(file_okay=False), envvar="AUTOLABEL_CACHE_DIR", default=None)
@click.option("--max-size", default=None, help="Drop least-recently-used image embeddings until under this (e.g. 2GB).")
@click.option("--older-than", default=None, help="Drop entries unused for this long (e.g. 30d, 12h).")
@click.option("--all", "everything", is_flag=True, help="Empty the cache.")
@handle_errors
def cache_prune(cache_dir: str | None, max_size: str | None, older_than: str | None, everything: bool) -> None:
    """Shrink the cache: by age, by size (least recently used first), or entirely."""
    if not (max_size or older_than or everything):
        raise click.UsageError("give --max-size, --older-than or --all")
    store = _open_cache(cache_dir)
    if everything:
        removed = store.clear()
    else:
        removed = store.prune(max_bytes=_parse(max_size, SIZE_UNITS, "size"),
                              older_than_s=_parse(older_than, AGE_UNITS, "duration"))
    click.echo(f"removed {removed} entries; cache is now {store.info().bytes / 1e6:.1f} MB", err=True)


def _write_json(data: dict, target: str | None) -> None:
    """--json PATH writes the result; `-` prints it to stdout (data goes to stdout, people to stderr)."""
    if not target:
        return
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if target == "-":
        click.echo(text, nl=False)
    else:
        Path(target).write_text(text, encoding="utf-8")


def _stderr():  # -> rich Console
    from autolabel.progress import stderr_console

    return stderr_console()


LABELS_TABLE = click.argument("labels_table", metavar="LABELS", type=click.Path(dir_okay=False))
SPEC_OPTION = click.option("--labels", "spec", type=click.Path(dir_okay=False), default=None,
                           help="Label spec (needed for CSV tables, which do not record their classes).")
TRUTH_OPTION = click.option(
    "--truth", required=True,
    help="A column of LABELS (e.g. truth, reviewed_label), a .csv/.parquet with path and label columns, or 'folder'.")


@main.command("eval", context_settings=CONTEXT)
@LABELS_TABLE
@TRUTH_OPTION
@SPEC_OPTION
@click.option("--json", "json_out", default=None, help="Write the metrics as JSON (`-`: stdout).")
@handle_errors
def eval_command(labels_table: str, truth: str, spec: str | None, json_out: str | None) -> None:
    """Measure LABELS against ground truth: accuracy, top-k, per-class P/R/F1, confusion, accepted precision.

    Rows with errors, without truth, or with a truth outside the spec are excluded and counted.

    \b
    Examples:
      autolabel eval labels.parquet --truth truth
      autolabel eval labels.parquet --truth folder --json metrics.json
      autolabel eval reviewed.parquet --truth reviewed_label
    """
    from autolabel.evaluate import evaluate, resolve_truth
    from autolabel.progress import show_evaluation
    from autolabel.results import load_results

    results = load_results(labels_table, spec)
    metrics = evaluate(results, resolve_truth(results, truth))
    show_evaluation(_stderr(), metrics)
    _write_json(metrics, json_out)


@main.command(context_settings=CONTEXT)
@LABELS_TABLE
@TRUTH_OPTION
@SPEC_OPTION
@click.option("--target-precision", "-p", type=float, required=True, help="Precision wanted on accepted rows.")
@click.option("--per-class", is_flag=True, help="Also choose a threshold per class.")
@click.option("--min-class-rows", type=int, default=20, show_default=True,
              help="Labelled rows a class needs before it gets its own threshold.")
@click.option("--write-spec", type=click.Path(dir_okay=False), default=None,
              help="Write the label spec back with the thresholds filled in.")
@click.option("--json", "json_out", default=None, help="Write the result as JSON (`-`: stdout).")
@handle_errors
def calibrate(labels_table: str, truth: str, spec: str | None, target_precision: float, per_class: bool,
              min_class_rows: int, write_spec: str | None, json_out: str | None) -> None:
    """Choose acceptance thresholds so accepted rows reach a target precision on a labelled sample.

    Reports the expected coverage and a 95% Wilson interval for the precision, with the rows each
    estimate rests on. Needs at least 30 labelled rows.

    \b
    Example:
      autolabel calibrate labels.parquet --truth reviewed_label --target-precision 0.98 --per-class \\
          --write-spec labels.calibrated.yaml
    """
    import yaml

    from autolabel.evaluate import calibrate as choose
    from autolabel.evaluate import resolve_truth, spec_with_thresholds
    from autolabel.progress import show_calibration
    from autolabel.results import load_results

    results = load_results(labels_table, spec)
    result = choose(results, resolve_truth(results, truth), target_precision, per_class, min_class_rows)
    show_calibration(_stderr(), result)
    if write_spec:
        raw = dict(results.spec.raw) if results.spec is not None else {}
        Path(write_spec).write_text(yaml.safe_dump(spec_with_thresholds(raw, result), sort_keys=False,
                                                   allow_unicode=True), encoding="utf-8")
        click.echo(f"wrote {write_spec}", err=True)
    _write_json(result, json_out)


@main.command(context_settings=CONTEXT)
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@SPEC_OPTION
@click.option("--max-flip-rate", type=float, default=None, help="Exit 1 if more than this share of labels flipped.")
@click.option("--json", "json_out", default=None, help="Write the result as JSON (`-`: stdout).")
@handle_errors
def diff(old: str, new: str, spec: str | None, max_flip_rate: float | None, json_out: str | None) -> None:
    """Compare two runs (rows matched by path): flips, class shift, new errors, status changes. For CI.

    \b
    Example:
      autolabel diff last-week.parquet today.parquet --max-flip-rate 0.02 --json diff.json
    """
    from autolabel.errors import TooManyErrors
    from autolabel.evaluate import diff as compare
    from autolabel.progress import show_diff
    from autolabel.results import load_results

    result = compare(load_results(old, spec), load_results(new, spec))
    show_diff(_stderr(), result)
    _write_json(result, json_out)
    if max_flip_rate is not None and result["flip_rate"] > max_flip_rate:
        raise TooManyErrors(f"flip rate {result['flip_rate']:.4f} exceeds --max-flip-rate {max_flip_rate}")


@main.command(context_settings=CONTEXT)
@LABELS_TABLE
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--images-root", type=click.Path(file_okay=False), default=None,
              help="Where relative paths resolve [default: the run's SOURCE folder].")
@click.option("--truth", default=None, help="Add the confusion matrix and misclassified examples (as for eval).")
@SPEC_OPTION
@handle_errors
def report(labels_table: str, out: str, images_root: str | None, truth: str | None, spec: str | None) -> None:
    """Write one self-contained HTML review report (opens from disk, thumbnails embedded).

    \b
    Example:
      autolabel report labels.parquet --out report.html --truth truth
    """
    from autolabel.evaluate import resolve_truth
    from autolabel.report import build_report
    from autolabel.results import load_results

    results = load_results(labels_table, spec)
    document = build_report(results, results.images_root(images_root),
                            resolve_truth(results, truth) if truth else None)
    target = Path(out)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(target)
    click.echo(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)", err=True)


@main.command(context_settings=CONTEXT)
@LABELS_TABLE
@click.option("--to", "fmt", required=True,
              type=click.Choice(["label-studio", "cvat", "fiftyone", "imagefolder", "hf", "open-images"]),
              help="The annotation tool's format.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder to write (must be empty).")
@click.option("--status", type=click.Choice(["all", "accepted", "review"]), default="all", show_default=True,
              help="Which rows to export (error rows never are).")
@click.option("--images-root", type=click.Path(file_okay=False), default=None,
              help="Where relative paths in LABELS resolve [default: the run's SOURCE folder].")
@click.option("--link", type=click.Choice(["symlink", "hardlink", "copy"]), default="symlink", show_default=True,
              help="How images are put into --out.")
@click.option("--url-prefix", default=None, help="Label Studio: image URLs are PREFIX/path instead of local files.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out (an earlier export of ours is replaced).")
@SPEC_OPTION
@handle_errors
def export(labels_table: str, fmt: str, out: str, status: str, images_root: str | None, link: str,
           url_prefix: str | None, overwrite: bool, spec: str | None) -> None:
    """Export LABELS for an annotation tool, confidences kept.

    \b
    Formats:
      label-studio  tasks.json with predictions + config.xml
      cvat          CVAT for images 1.1 annotations.xml + images/ (zip the folder and import it)
      fiftyone      FiftyOneImageClassificationDataset (data/ + labels.json)
      imagefolder   one folder per class, review rows under _review/<class>/
      hf            Hugging Face imagefolder with metadata.jsonl
      open-images   Open Images image-level labels with Confidence
    \b
    Example:
      autolabel export labels.parquet --to label-studio --out ls/ --status review
    """
    from autolabel.exporters import export as write_export
    from autolabel.results import load_results

    info = write_export(load_results(labels_table, spec), fmt, Path(out), status, images_root, link, url_prefix,
                        overwrite)
    for line in info["skipped"]:
        click.echo(f"skipping {line}", err=True)
    click.echo(f"exported {info['rows'] - len(info['skipped'])} images as {fmt} to {out}", err=True)


@main.command("import-review", context_settings=CONTEXT)
@click.argument("exported", metavar="EXPORTED_RESULTS", type=click.Path(dir_okay=False, exists=True))
@click.option("--into", "into", required=True, type=click.Path(dir_okay=False, exists=True),
              help="The labels table to update (rewritten in place, every column kept).")
@SPEC_OPTION
@handle_errors
def import_review(exported: str, into: str, spec: str | None) -> None:
    """Bring human review decisions back: adds reviewed_label and reviewed_by_human to a labels table.

    EXPORTED_RESULTS is a Label Studio JSON export or a CVAT for images 1.1 XML export of reviewed tasks.
    Then e.g. `autolabel eval LABELS --truth reviewed_label`.
    """
    from autolabel.exporters import import_review as merge
    from autolabel.exporters import write_table
    from autolabel.results import load_results

    results = load_results(into, spec)
    counts = merge(results, Path(exported))
    write_table(results)
    click.echo(f"{counts['matched']} reviewed rows merged from {counts['tool']} ({counts['changed']} differ from "
               f"the model's label, {counts['unmatched']} reviews matched no row) → {into}", err=True)
    if counts["labels_outside_spec"]:
        click.echo(f"warning: reviewed labels outside the spec: {', '.join(counts['labels_outside_spec'])}", err=True)
