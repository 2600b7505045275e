"""`autolabel eval`, `calibrate`, `diff` and `report`: reading labels tables back."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from autolabel.cli.app import (
    CONTEXT,
    LABELS_TABLE,
    SPEC_OPTION,
    TRUTH_OPTION,
    check_json_target,
    handle_errors,
    main,
    output_console,
    table_model_options,
    write_json,
)
from autolabel.core.errors import UsageError
from autolabel.core.fileio import SPEC_MARK, autolabel_report, calibrated_spec, check_output_file, same_file, write_text


@main.command("eval", context_settings=CONTEXT)
@LABELS_TABLE
@TRUTH_OPTION
@SPEC_OPTION
@click.option("--json", "json_out", default=None, help="Write the metrics as JSON (`-`: stdout).")
@handle_errors
def eval_command(labels_table: str, truth: str, spec: str | None, json_out: str | None) -> None:
    """Measure LABELS against ground truth: accuracy, top-k, per-class P/R/F1, confusion, accepted precision.

    Rows with errors, without truth, or with a truth outside the spec are excluded and counted. Multi-label
    tables: truth lists (a Parquet list, a JSON array in CSV, a plain name for one label); subset accuracy,
    Hamming loss, micro/macro/weighted/samples P/R/F1 and per class, as scikit-learn defines them.

    \b
    Examples:
      autolabel eval labels.parquet --truth truth
      autolabel eval labels.parquet --truth folder --json metrics.json
      autolabel eval reviewed.parquet --truth reviewed_label
    """
    from autolabel.core.progress import show_evaluation
    from autolabel.table.results import load_results
    from autolabel.table.truth import resolve_truth

    check_json_target(json_out, labels_table, spec, truth, keys=("n", "truth"))
    results = load_results(labels_table, spec)
    metrics = results.task.evaluate(results, resolve_truth(results, truth))
    if metrics.n == 0:  # nothing measured is not a result: say why instead of printing 0% accuracy
        ex = metrics.excluded
        raise UsageError(f"--truth {truth}: no row of {labels_table} can be scored ({ex.error} error rows, "
                         f"{ex.reviewed} reviewed by people, {ex.no_truth} without truth, "
                         f"{ex.unknown_truth} with a truth outside the spec); check the truth column or file")
    show_evaluation(output_console(json_out), metrics)
    write_json(metrics.as_json(), json_out)


@main.command(context_settings=CONTEXT)
@LABELS_TABLE
@TRUTH_OPTION
@SPEC_OPTION
@click.option("--target-precision", "-p", type=float, required=True, help="Precision wanted on accepted rows.")
@click.option("--per-class", is_flag=True, help="Also choose a threshold per class.")
@click.option("--min-class-rows", type=int, default=20, show_default=True,
              help="Labelled rows a class needs before it gets its own threshold.")
@click.option("--write-spec", type=click.Path(), default=None,
              help="Write the label spec back with the thresholds filled in.")
@click.option("--json", "json_out", default=None, help="Write the result as JSON (`-`: stdout).")
@handle_errors
def calibrate(labels_table: str, truth: str, spec: str | None, target_precision: float, per_class: bool,
              min_class_rows: int, write_spec: str | None, json_out: str | None) -> None:
    """Choose acceptance thresholds so accepted rows reach a target precision on a labelled sample.

    Reports the expected coverage and a 95% Wilson interval for the precision, with the rows each
    estimate rests on. Needs at least 30 labelled rows. Multi-label tables: the precision of the labels
    (image, class pairs with score ≥ threshold), and recall instead of coverage.

    \b
    Example:
      autolabel calibrate labels.parquet --truth reviewed_label --target-precision 0.98 --per-class \\
          --write-spec labels.calibrated.yaml
    """
    import yaml

    from autolabel.core.progress import show_calibration
    from autolabel.table.results import load_results
    from autolabel.table.truth import resolve_truth
    from autolabel.task.metrics import spec_with_thresholds

    check_json_target(json_out, labels_table, spec, truth, keys=("target_precision", "global"))
    if write_spec:
        check_output_file(write_spec, "--write-spec", (labels_table, spec, truth), calibrated_spec)
    results = load_results(labels_table, spec)
    if write_spec and results.spec is not None and same_file(write_spec, results.spec.source):
        raise UsageError(f"--write-spec {write_spec}: is the label spec of {labels_table}; write the calibrated "
                         "spec to another file")
    result = results.task.calibrate(results, resolve_truth(results, truth), target_precision, per_class,
                                    min_class_rows)
    show_calibration(output_console(json_out), result)
    if write_spec and not result.overall.reachable:
        write_json(result.as_json(), json_out)
        best = result.overall.best_precision
        click.echo(f"error: the target precision {target_precision:g} is not reachable on this sample (best "
                   f"{'n/a' if best is None else f'{best:.1%}'}); {write_spec} was not written — label more rows, "
                   "or lower --target-precision", err=True)
        sys.exit(1)
    if write_spec:
        raw = dict(results.spec.raw) if results.spec is not None else {}
        if results.spec is not None and results.spec.model is not None:
            raw["model"] = results.spec.model_for(Path(write_spec).parent)
        body = yaml.safe_dump(spec_with_thresholds(raw, result), sort_keys=False, allow_unicode=True)
        write_text(write_spec, f"{SPEC_MARK} (target precision {target_precision:g}, {labels_table})\n{body}")
        click.echo(f"wrote {write_spec}", err=True)
    write_json(result.as_json(), json_out)


@main.command(context_settings=CONTEXT)
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path())
@SPEC_OPTION
@click.option("--max-flip-rate", type=float, default=None, help="Exit 1 if more than this share of labels flipped.")
@click.option("--json", "json_out", default=None, help="Write the result as JSON (`-`: stdout).")
@handle_errors
def diff(old: str, new: str, spec: str | None, max_flip_rate: float | None, json_out: str | None) -> None:
    """Compare two runs (rows matched by path): flips, class shift, new errors, status changes. For CI.

    Multi-label tables are compared by label set: a flip is a row whose set changed.

    \b
    Example:
      autolabel diff last-week.parquet today.parquet --max-flip-rate 0.02 --json diff.json
    """
    from autolabel.core.progress import show_diff
    from autolabel.table.results import load_results
    from autolabel.task.metrics import flip_gate

    if max_flip_rate is not None and not 0.0 <= max_flip_rate <= 1.0:
        raise UsageError(f"--max-flip-rate must be between 0 and 1, got {max_flip_rate}")
    check_json_target(json_out, old, new, spec, keys=("matched", "flip_rate"))
    before, after = load_results(old, spec), load_results(new, spec)
    result = before.task.joined(after.task).diff(before, after)  # by label set when either is multi-label
    show_diff(output_console(json_out), result)
    write_json(result.as_json(), json_out)
    if max_flip_rate is not None:
        flip_gate(result, max_flip_rate)


@main.command(context_settings=CONTEXT)
@LABELS_TABLE
@click.option("--out", "-o", required=True, type=click.Path(), help="The HTML file to write.")
@click.option("--images-root", type=click.Path(file_okay=False), default=None,
              help="Where relative paths resolve [default: the run's SOURCE folder].")
@click.option("--truth", default=None, help="Add the confusion matrix and misclassified examples (as for eval).")
@click.option("--audit", "audit_table", type=click.Path(dir_okay=False), default=None,
              help="Add an audit section from FINDINGS of `autolabel audit` (duplicate groups, label issues).")
@click.option("--queue", "queue_file", type=click.Path(dir_okay=False), default=None,
              help="Start the review queue with the rows `autolabel queue` planned, in its order.")
@SPEC_OPTION
@handle_errors
def report(labels_table: str, out: str, images_root: str | None, truth: str | None, audit_table: str | None,
           queue_file: str | None, spec: str | None) -> None:
    """Write one self-contained HTML review report (opens from disk, thumbnails embedded).

    Rows people reviewed (a reviewed_label from import-review, or status reviewed) show as reviewed and
    leave the review queue.

    \b
    Example:
      autolabel report labels.parquet --out report.html --truth truth
      autolabel report labels.parquet --out report.html --queue queue.csv
    """
    from autolabel.review.report import build_report
    from autolabel.table.results import find_images_root, images_missing, load_results
    from autolabel.table.truth import resolve_truth

    check_output_file(out, "--out", (labels_table, spec, truth, audit_table, queue_file), autolabel_report)
    results = load_results(labels_table, spec)
    root = find_images_root(results, images_root)
    missing = images_missing(results, root)
    if missing is not None:  # the metrics still stand; the thumbnails will be placeholders
        click.echo(f"warning: {missing}; the report shows no thumbnails", err=True)
    sections = []
    if audit_table:
        from autolabel.audit.findings import load_findings
        from autolabel.audit.report import audit_section
        from autolabel.review.report import thumbnail

        sections.append(audit_section(load_findings(audit_table),
                                      lambda p: thumbnail(results.location(p, root), 96)))
    planned = []
    if queue_file:
        from autolabel.review.queue import planned_paths

        planned = planned_paths(results, queue_file)
    document = build_report(results, root, resolve_truth(results, truth) if truth else None, sections=sections,
                            planned=planned)
    write_text(out, document)
    click.echo(f"wrote {out} ({Path(out).stat().st_size / 1e6:.1f} MB)", err=True)


@main.command(context_settings=CONTEXT)
@LABELS_TABLE
@click.option("--budget", "-n", type=int, required=True, help="How many rows to plan (people review them in order).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="The queue to write (.csv or .parquet): fill in its reviewed_label column.")
@click.option("--examples", multiple=True, type=click.Path(),
              help="Reviews so far (repeatable): corrections or earlier queues filled in; rows in them are not "
                   "offered again.")
@SPEC_OPTION
@table_model_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def queue(labels_table: str, budget: int, out: str, examples: tuple[str, ...], spec: str | None, model: str | None,
          device: str, cache_dir: str | None, quiet: bool) -> None:
    """Plan the next BUDGET reviews of LABELS: the rows a person should label first, best first.

    Without reviews: typical images of every part of the data (k-means over the cached image
    embeddings, the most typical image of each cluster, largest first). With reviews (in LABELS, or
    --examples): parts no review covers, classes with few examples, rows the adapted classifier is
    unsure of, rows where it and zero-shot disagree. Writes path, reviewed_label (empty), rank,
    reason, label, confidence, priority: fill in reviewed_label (leave junk empty) and pass the file
    to `autolabel run --examples` or `autolabel import-review`.

    \b
    Example:
      autolabel queue labels.parquet --budget 24 --out queue.csv
      autolabel run images/ --labels labels.yaml --out labels2.parquet --examples queue.csv
      autolabel queue labels2.parquet --budget 24 --out queue2.csv --examples queue.csv
    """
    from collections import Counter

    from autolabel.review.queue import QueueConfig, build_queue

    result = build_queue(QueueConfig(labels=labels_table, out=out, budget=budget, examples=examples, spec=spec,
                                     model=model, device=device, cache_dir=cache_dir, quiet=quiet))
    plan = result.plan
    why = "".join(f"{n} {reason}, " for reason, n in sorted(Counter(plan.reasons).items()))
    skipped = f", {plan.skipped} skipped (left empty above a filled-in row: never offered again)" if plan.skipped \
        else ""
    click.echo(f"planned {len(plan.rows)} review(s) ({why}{plan.reviewed} row(s) reviewed before{skipped}; "
               f"{'adapted' if plan.adapted else 'zero-shot'} classifier, {plan.encoded} images newly embedded) "
               f"→ {result.out}")
