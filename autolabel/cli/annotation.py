"""`autolabel export` and `autolabel import-review`: the round trip through annotation tools."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from autolabel.cli.app import CONTEXT, LABELS_TABLE, SPEC_OPTION, F, handle_errors, main
from autolabel.core.errors import UsageError

if TYPE_CHECKING:
    from autolabel.table.results import Results


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
    from autolabel.table.results import load_results

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
        _push(load_results(labels_table, spec), url, api_key, project, status, images_root, url_prefix, quiet)
        return
    from autolabel.core.fileio import check_output_folder
    from autolabel.review.exporters import export as write_export

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
    from autolabel.review.exporters.label_studio import document_root
    from autolabel.table.results import find_images_root

    folder = find_images_root(results, images_root)
    if fmt == "label-studio" and not url_prefix and document_root() is None and folder:
        click.echo(f"note: Label Studio serves these images when started with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"
                   f"=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={Path(folder).parent} and given a Local files "
                   f"storage for {folder}", err=True)


def _push(results: Results, url: str, api_key: str | None, project: str | None, status: str,
          images_root: str | None, url_prefix: str | None, quiet: bool) -> None:
    from autolabel.core.progress import Reporter
    from autolabel.review.exporters.label_studio import document_root
    from autolabel.review.exporters.label_studio_api import PushConfig, push

    reporter = Reporter(quiet=quiet)
    config = PushConfig(url=url, api_key=api_key, project=project, status=status, images_root=images_root,
                        url_prefix=url_prefix, document_root=document_root())
    done = push(results, config, reporter)
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
    from autolabel.core.fileio import check_output_file, check_output_folder
    from autolabel.review.exporters import merge_review, read_review, write_table
    from autolabel.table.results import load_results

    if (exported is None) == (server is None):
        raise UsageError("give either EXPORTED_RESULTS (an export file) or --from-label-studio URL")
    if server is not None and not project:
        raise UsageError("--from-label-studio needs --project (the project's id or title)")
    lock = None
    if Path(into).is_dir():  # a shard folder: each part is rewritten in place, never while a run writes it
        from autolabel.labelling.output import FolderLock
        from autolabel.table.shards import finished_manifest

        check_output_folder(into, "--into")
        finished_manifest(into)  # no lock file is left in a folder that is not a finished run's
        lock = FolderLock.take(Path(into), into)
    else:
        check_output_file(into, "--into", (exported, spec))
    try:
        results = load_results(into, spec)
        if server is not None:
            from autolabel.review.exporters.label_studio_api import pull_reviews

            counts = merge_review(results, "label-studio",
                                  pull_reviews(server, api_key, project, results.task))
        else:
            counts = merge_review(results, *read_review(Path(exported), results.task))
        write_table(results)
    finally:
        if lock is not None:
            lock.release()
    replaced = f", {counts['replaced']} earlier reviews replaced" if counts.get("replaced") else ""
    click.echo(f"{counts['matched']} reviewed rows merged from {counts['tool']} → {into} ({counts['changed']} "
               f"reviewed rows in the table now differ from the model's label{replaced})", err=True)
    if counts["unmatched_keys"]:
        shown = counts["unmatched_keys"][:3]
        click.echo(f"warning: {len(counts['unmatched_keys'])} review(s) matched no row of {into}, e.g. "
                   f"{', '.join(map(repr, shown))}: name the same files as the table (absolute paths, or paths "
                   "relative to the review file)", err=True)
