"""`autolabel export` and `autolabel import-review`: the round trip through annotation tools."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from click.core import ParameterSource

from autolabel.cli.app import CONTEXT, LABELS_TABLE, SPEC_OPTION, F, handle_errors, main
from autolabel.core.errors import UsageError


def api_key_option(command: str) -> Callable[[F], F]:
    """--api-key, from AUTOLABEL_<COMMAND>_API_KEY or, as Label Studio's SDK reads it, LABEL_STUDIO_API_KEY."""
    return click.option("--api-key", envvar=[f"AUTOLABEL_{command}_API_KEY", "LABEL_STUDIO_API_KEY"], default=None,
                        help="Label Studio: a Personal Access Token or a legacy token (Account & Settings).")


@main.command(context_settings=CONTEXT)
@LABELS_TABLE
@click.option("--to", "fmt", required=True,
              type=click.Choice(["label-studio", "cvat", "fiftyone", "imagefolder", "hf", "open-images"]),
              help="The annotation tool's format.")
@click.option("--out", "-o", type=click.Path(), help="Folder to write (empty, or see --overwrite).")
@click.option("--url", envvar=["AUTOLABEL_EXPORT_URL", "LABEL_STUDIO_URL"], default=None,
              help="Label Studio: push to the server at URL instead of writing --out (prints the project's URL).")
@api_key_option("EXPORT")
@click.option("--project", default=None,
              help="Label Studio push: the project's title; an existing one is reused [default: autolabel NAME].")
@click.option("--status", type=click.Choice(["all", "accepted", "review"]), default="all", show_default=True,
              help="Which rows to export (error rows never are).")
@click.option("--images-root", type=click.Path(file_okay=False), default=None,
              help="Where relative paths in LABELS resolve [default: the run's SOURCE folder].")
@click.option("--link", type=click.Choice(["symlink", "hardlink", "copy"]), default="symlink", show_default=True,
              help="How images are put into --out.")
@click.option("--url-prefix", default=None,
              help="Label Studio: image URLs are PREFIX/path (images served over HTTP(S), S3) instead of local files.")
@click.option("--overwrite", is_flag=True,
              help="Write into a non-empty --out: the files an earlier export of ours wrote are replaced, others kept.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (a push).")
@SPEC_OPTION
@handle_errors
def export(labels_table: str, fmt: str, out: str | None, url: str | None, api_key: str | None, project: str | None,
           status: str, images_root: str | None, link: str, url_prefix: str | None, overwrite: bool, quiet: bool,
           spec: str | None) -> None:
    """Export LABELS for an annotation tool, confidences kept; or push it to a running Label Studio.

    \b
    Formats:
      label-studio  tasks.json with predictions + config.xml; with --url: a project on the server
      cvat          CVAT for images 1.1 annotations.xml + images/ (zip the folder and import it)
      fiftyone      FiftyOneImageClassificationDataset (data/ + labels.json)
      imagefolder   one folder per class, review rows under _review/<class>/
      hf            Hugging Face imagefolder with metadata.jsonl
      open-images   Open Images image-level labels with Confidence
    \b
    Pushing to Label Studio (--url or LABEL_STUDIO_URL, without --out): creates the project (or adds to the one
    with that title only the tasks it lacks), each task with the model's prediction. Images: a Local Files
    storage when LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT is set (a server on this machine, with that root above the
    images), else --url-prefix, else they are uploaded.
    \b
    Examples:
      autolabel export labels.parquet --to label-studio --out ls/ --status review
      autolabel export labels.parquet --to label-studio --url http://localhost:8080 --project pets --status review
    """
    from autolabel.review.exchange import ExportOptions, export_labels

    ctx = click.get_current_context()
    pushing = out is None and url is not None
    if out is not None and ctx.get_parameter_source("url") == ParameterSource.COMMANDLINE:
        raise UsageError("--out writes files, --url pushes to a server: pass one of them")
    if pushing and fmt != "label-studio":
        raise UsageError(f"--url pushes to Label Studio; --to {fmt} writes files: pass --out")
    if out is None and not pushing:
        out_option = next(p for p in ctx.command.params if p.name == "out")
        raise click.MissingParameter("Or, for --to label-studio, --url to push to a server.", ctx, out_option)
    if pushing:
        _push(labels_table, spec, url, api_key, project, status, images_root, url_prefix, quiet)
        return
    done = export_labels(labels_table, ExportOptions(fmt, out, status, images_root, link, url_prefix, overwrite), spec)
    if not done.rows:
        which = "" if status == "all" else f" with status {status}"
        click.echo(f"nothing to export: {labels_table} has no labelled rows{which} ({done.table_rows} rows); "
                   f"{out} was not written", err=True)
        return
    for line in done.skipped:
        click.echo(f"skipping {line}", err=True)
    click.echo(f"exported {done.exported} images as {fmt} to {out}", err=True)
    if done.local_files:
        click.echo(f"note: Label Studio serves these images when started with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"
                   f"=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={Path(done.local_files).parent} and given a Local "
                   f"files storage for {done.local_files}", err=True)


def _push(labels_table: str, spec: str | None, url: str, api_key: str | None, project: str | None, status: str,
          images_root: str | None, url_prefix: str | None, quiet: bool) -> None:
    from autolabel.core.progress import Reporter
    from autolabel.review.exchange import PushConfig, push_labels
    from autolabel.review.exporters.label_studio import document_root

    reporter = Reporter(quiet=quiet)
    config = PushConfig(url=url, api_key=api_key, project=project, status=status, images_root=images_root,
                        url_prefix=url_prefix, document_root=document_root())
    done = push_labels(labels_table, config, spec, reporter)
    for line in done.skipped:
        reporter.skip(*line.split(": ", 1))
    for line in done.warnings:
        reporter.warn(line)
    reporter.info(f"{'created' if done.created else 'updated'} Label Studio project '{done.project_title}' "
                  f"(id {done.project_id}): {done.added} tasks added, {done.present} already there; "
                  f"images: {done.images}")
    click.echo(done.project_url)


@main.command("import-review", context_settings=CONTEXT)
@click.argument("exported", metavar="[EXPORTED_RESULTS]", required=False,
                type=click.Path(dir_okay=False, exists=True))
@click.option("--into", "into", required=True, type=click.Path(exists=True),
              help="The labels table to update (rewritten in place, every column kept).")
@click.option("--from-label-studio", "server", metavar="URL", default=None,
              help="Fetch the reviews from the Label Studio server at URL instead of an export file.")
@click.option("--project", default=None, help="With --from-label-studio: the project's id or title.")
@api_key_option("IMPORT_REVIEW")
@SPEC_OPTION
@handle_errors
def import_review(exported: str | None, into: str, server: str | None, project: str | None, api_key: str | None,
                  spec: str | None) -> None:
    """Bring human review decisions back: adds reviewed_label and reviewed_by_human to a labels table.

    EXPORTED_RESULTS is a Label Studio JSON export, a CVAT for images 1.1 XML export of reviewed tasks, or the
    corrections.csv (path,reviewed_label) that the HTML report's review queue downloads; or
    fetch a Label Studio project's reviews with --from-label-studio URL --project ID_OR_TITLE. In each task the
    latest annotation that was not cancelled wins. Then e.g. `autolabel eval LABELS --truth reviewed_label`.
    """
    from autolabel.review.exchange import LabelStudioProject, import_reviews

    if (exported is None) == (server is None):
        raise UsageError("give either EXPORTED_RESULTS (an export file) or --from-label-studio URL")
    if server is not None and not project:
        raise UsageError("--from-label-studio needs --project (the project's id or title)")
    source = exported if server is None else LabelStudioProject(server, project, api_key)
    merged = import_reviews(into, source, spec)
    replaced = f", {merged.replaced} earlier reviews replaced" if merged.replaced else ""
    click.echo(f"{merged.matched} reviewed rows merged from {merged.tool} → {into} ({merged.changed} "
               f"reviewed rows in the table now differ from the model's label{replaced})", err=True)
    if merged.unmatched_keys:
        shown = merged.unmatched_keys[:3]
        click.echo(f"warning: {len(merged.unmatched_keys)} review(s) matched no row of {into}, e.g. "
                   f"{', '.join(map(repr, shown))}: name the same files as the table (absolute paths, or paths "
                   "relative to the review file)", err=True)
