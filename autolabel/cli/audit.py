"""`autolabel audit` and `autolabel lint`: what is wrong with a labelled dataset, and with a label spec."""

from __future__ import annotations

import itertools

import click

from autolabel.cli.app import CONTEXT, LABELS_TABLE, SPEC_OPTION, handle_errors, main, table_model_options

KIND_NAMES = ("duplicate", "label_issue", "outlier", "summary")


def _split_kinds(values: tuple[str, ...]) -> tuple[str, ...] | None:
    kinds = tuple(k.strip() for v in values for k in v.split(",") if k.strip())
    return kinds or None


@main.command(context_settings=CONTEXT)
@LABELS_TABLE
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="The findings table to write (.parquet or .csv).")
@click.option("--truth", default=None,
              help="True labels for label issues: a column (e.g. reviewed_label, the default when present), a "
                   ".csv/.parquet with path and label, or 'folder'.")
@click.option("--images-root", type=click.Path(file_okay=False), default=None,
              help="Where relative paths resolve [default: the run's images root or SOURCE folder].")
@click.option("--kinds", multiple=True,
              help="Only these (comma-separated or repeated): duplicate, label_issue, outlier, summary "
                   "[default: all that apply].")
@click.option("--split-column", default=None,
              help="A column naming each image's split (train/val/test): duplicates across splits become "
                   "`leakage` rows too.")
@SPEC_OPTION
@table_model_options
@click.option("--batch-size", "-b", type=int, default=32, show_default=True,
              help="Images per model call, for embeddings the cache lacks.")
@click.option("--workers", "-w", type=int, default=0, show_default=True,
              help="Decode threads (0: one per core, max 32).")
@click.option("--candidate-similarity", type=float, default=0.90, show_default=True,
              help="Embedding cosine from which two images are duplicate candidates (then checked on pixels).")
@click.option("--no-crops", is_flag=True, help="Do not look for crops of one image in another.")
@click.option("--outlier-k", type=int, default=5, show_default=True,
              help="Neighbours an image's outlier distance is averaged over.")
@click.option("--outlier-fence", type=float, default=3.0, show_default=True,
              help="Outliers lie beyond Q3 + this many interquartile ranges of all images' distances.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or class table.")
@handle_errors
def audit(labels_table: str, out: str, truth: str | None, images_root: str | None, kinds: tuple[str, ...],
          split_column: str | None, spec: str | None, model: str | None, device: str, cache_dir: str | None,
          batch_size: int, workers: int, candidate_similarity: float, no_crops: bool, outlier_k: int,
          outlier_fence: float, quiet: bool) -> None:
    """Find duplicates (and split leakage), probable label errors, outliers and class imbalance in LABELS.

    Uses the embeddings the run cached (encoding only what the cache lacks) and writes one row per
    finding: kind, path, other_path, score (higher = more suspicious), detail. Duplicates are embedding
    neighbours confirmed on pixels; label issues are rows whose --truth the model confidently
    contradicts (confident learning); outliers are images far from all others.

    \b
    Examples:
      autolabel audit labels.parquet --out findings.parquet
      autolabel audit labels.parquet --out findings.csv --truth reviewed_label --split-column split
      autolabel report labels.parquet --out report.html --audit findings.parquet
    """
    from autolabel.audit.runner import AuditConfig, run_audit
    from autolabel.audit.summary import format_balance

    config = AuditConfig(
        labels=labels_table, out=out, truth=truth, images_root=images_root, kinds=_split_kinds(kinds),
        split_column=split_column, spec=spec, model=model, device=device, cache_dir=cache_dir,
        batch_size=batch_size, workers=workers, candidate_similarity=candidate_similarity, crops=not no_crops,
        outlier_k=outlier_k, outlier_fence=outlier_fence, quiet=quiet,
    )
    result = run_audit(config)
    counts = {k: sum(f.kind == k for f in result.findings) for k in ("duplicate", "leakage", "label_issue", "outlier")}
    if not quiet:
        click.echo(format_balance(result.balance))
    groups = len({f.group for f in result.findings if f.kind == "duplicate"})
    click.echo(f"{result.audited} images audited ({result.encoded} newly embedded, {result.failed} unreadable): "
               + ", ".join(f"{n} {k}" + (f" (in {groups} groups)" if k == "duplicate" and n else "")
                           for k, n in counts.items()) + f" → {result.out}")


@main.command(context_settings=CONTEXT)
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--model", "-m", default=None,
              help="Hub id or local folder [default: the spec's model:, else openai/clip-vit-base-patch32].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--cache-dir", type=click.Path(file_okay=False), envvar="AUTOLABEL_CACHE_DIR", default=None,
              help="Embedding cache folder (prompt embeddings are cached there).")
@click.option("--strict", is_flag=True, help="Exit 1 when there is any warning (for CI).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Warnings of each kind printed (confusable pairs worst first); the rest are counted.")
@click.option("--all", "show_all", is_flag=True,
              help="Print every warning (for thousands of look-alike classes: millions of lines).")
@handle_errors
def lint(spec_path: str, model: str | None, device: str, cache_dir: str | None, strict: bool, limit: int,
         show_all: bool) -> None:
    """Check a label spec against a model: classes it cannot tell apart, prompts over its context, duplicates.

    Two classes are confusable when each class's own prompts, scored like images at the model's
    temperature, do not pick their own class over the other at least 90% of the time on average.
    Each kind prints at most --limit warnings (the worst confusable pairs first), then how many
    more there are and, for confusable pairs, the classes with the most partners.

    \b
    Examples:
      autolabel lint labels.yaml
      autolabel lint labels.yaml --model google/siglip-base-patch16-224 --strict
      autolabel lint big.yaml --limit 20
    """
    from autolabel.classifier.lint import lint as lint_spec
    from autolabel.core.config import CacheConfig, ModelConfig
    from autolabel.core.errors import TooManyErrors
    from autolabel.core.spec import load_spec
    from autolabel.embedding.session import Session

    spec = load_spec(spec_path)
    session = Session.open(ModelConfig(model, device), CacheConfig(cache_dir), spec_model=spec.model_location())
    try:
        found = lint_spec(spec, session.model, session.encode, limit=None if show_all else limit)
    finally:
        session.close()
    for kind in ("duplicate", "too_long", "confusable"):
        shown = found.found if kind != "confusable" else itertools.islice(found.each(), len(found.found), None)
        for w in shown:  # confusable pairs: one message at a time, however many --all prints
            if w.kind == kind:
                click.echo(f"{spec_path}: {w.kind}: {w.message}")
        if found.more(kind):
            click.echo(f"{spec_path}: {kind}: … and {found.more(kind):,} more (--limit N or --all prints them)")
    if found.count("confusable") > 1:
        click.echo(f"{spec_path}: summary: {found.summary()}")
    total = found.count()
    click.echo(f"{total:,} warning{'s' if total != 1 else ''} ({session.model.name})", err=True)
    if strict and total:
        raise TooManyErrors(f"{total:,} lint warning(s) with --strict")
