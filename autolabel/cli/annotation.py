"""`autolabel export` and `autolabel import-review`: the round trip through annotation tools."""

from __future__ import annotations

from pathlib import Path

import click

from autolabel.cli.app import CONTEXT, LABELS_TABLE, SPEC_OPTION, handle_errors, main


@main.command(context_settings=CONTEXT)
@LABELS_TABLE
@click.option("--to", "fmt", required=True,
              type=click.Choice(["label-studio", "cvat", "fiftyone", "imagefolder", "hf", "open-images"]),
              help="The annotation tool's format.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Folder to write (empty, or see --overwrite).")
@click.option("--status", type=click.Choice(["all", "accepted", "review"]), default="all", show_default=True,
              help="Which rows to export (error rows never are).")
@click.option("--images-root", type=click.Path(file_okay=False), default=None,
              help="Where relative paths in LABELS resolve [default: the run's SOURCE folder].")
@click.option("--link", type=click.Choice(["symlink", "hardlink", "copy"]), default="symlink", show_default=True,
              help="How images are put into --out.")
@click.option("--url-prefix", default=None, help="Label Studio: image URLs are PREFIX/path instead of local files.")
@click.option("--overwrite", is_flag=True,
              help="Write into a non-empty --out: the files an earlier export of ours wrote are replaced, others kept.")
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
    from autolabel.fileio import check_output_folder
    from autolabel.results import load_results

    check_output_folder(out, "--out")
    results = load_results(labels_table, spec)
    info = write_export(results, fmt, Path(out), status, images_root, link, url_prefix, overwrite)
    if not info["rows"]:
        which = "" if status == "all" else f" with status {status}"
        click.echo(f"nothing to export: {labels_table} has no labelled rows{which} ({len(results.frame)} rows); "
                   f"{out} was not written", err=True)
        return
    for line in info["skipped"]:
        click.echo(f"skipping {line}", err=True)
    click.echo(f"exported {info['rows'] - len(info['skipped'])} images as {fmt} to {out}", err=True)


@main.command("import-review", context_settings=CONTEXT)
@click.argument("exported", metavar="EXPORTED_RESULTS", type=click.Path(dir_okay=False, exists=True))
@click.option("--into", "into", required=True, type=click.Path(exists=True),
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
    from autolabel.fileio import check_output_file, check_output_folder
    from autolabel.results import load_results

    if Path(into).is_dir():  # a shard folder: each part is rewritten in place
        check_output_folder(into, "--into")
    else:
        check_output_file(into, "--into", (exported, spec))
    results = load_results(into, spec)
    counts = merge(results, Path(exported))
    write_table(results)
    click.echo(f"{counts['matched']} reviewed rows merged from {counts['tool']} ({counts['changed']} differ from "
               f"the model's label, {counts['unmatched']} reviews matched no row) → {into}", err=True)
    if counts["labels_outside_spec"]:
        click.echo(f"warning: reviewed labels outside the spec: {', '.join(counts['labels_outside_spec'])}", err=True)
