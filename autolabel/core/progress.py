"""People-facing output on stderr: rich progress bar, skip/warning lines, the end-of-run summary table."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

MAX_SUMMARY_ROWS = 40  # beyond this the table shows the largest classes


def stderr_console() -> Console:
    """The console for people: stderr, no syntax highlighting, 120 columns when not a terminal."""
    return _console(stderr=True)


def stdout_console() -> Console:
    """The console for a command's main output (the tables of eval, calibrate, diff): stdout."""
    return _console(stderr=False)


def _console(stderr: bool) -> Console:
    # markup off: class names and paths are data, and "[/x]" in one must print as written, not fail
    console = Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, width=120)
    return console


SKIP_LINES = 20  # `skipping PATH: reason` lines shown before the rest are only counted (all with -v)
GROUP_LINES = 3  # items a grouped warning names before "… and N more" (all with -v)


class Reporter:
    """Progress and messages for one command; the bar only on an interactive stderr and without --quiet.

    Repetitive lines are bounded: skipped images beyond SKIP_LINES and long warning lists are counted,
    not printed, unless `verbose`. With `console=None` nothing is written at all (the Python API):
    warnings then go to the `autolabel` logger.
    """

    def __init__(self, quiet: bool = False, console: Console | None = None, verbose: bool = False,
                 silent: bool = False) -> None:
        self.silent = silent
        self.console = console or stderr_console()
        self.quiet = quiet or silent
        self.verbose = verbose
        self.show_bar = not self.quiet and self.console.is_terminal and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self.skipped = 0

    def _print(self, message: str, style: str | None = None) -> None:
        if self.silent:
            import logging

            logging.getLogger("autolabel").warning(message)
        else:
            self.console.print(message, markup=False, style=style)

    def info(self, message: str) -> None:
        """A status line, suppressed by --quiet."""
        if not self.quiet:
            self._print(message)

    def warn(self, message: str) -> None:
        """A warning line; shown even with --quiet."""
        self._print(f"warning: {message}", style="yellow")

    def warn_group(self, what: str, items: list[str], total: int | None = None, elsewhere: str = "") -> None:
        """One warning for many items: `what` with a count (`total`, else how many items), the first few named
        (all the items with -v; `elsewhere` says where to see the rest of a longer `total`)."""
        total = len(items) if total is None else total
        if not total:
            return
        shown = items if self.verbose else items[:GROUP_LINES]
        hint = "-v lists them all" if total == len(items) else elsewhere or f"-v lists {len(items):,}"
        more = f" … and {total - len(shown):,} more ({hint})" if total > len(shown) else ""
        self.warn(f"{total:,} {what}: " + "; ".join(repr(i) for i in shown) + more)

    def lint(self, found: Any, spec: str) -> None:
        """A spec's lint.Lint, once: over-long prompts as one grouped line, other kinds a few lines and a count."""
        for kind in ("duplicate", "too_long", "confusable"):
            group = [w for w in found.warnings if w.kind == kind]
            if kind == "too_long":
                self.warn_group("prompts are longer than the model's text context and are truncated",
                                [p for w in group for p in w.prompts], found.count(kind),
                                f"`autolabel lint {spec} --all` lists them all")
                continue
            shown = group if self.verbose else group[:GROUP_LINES]
            for warning in shown:
                self.warn(warning.message)
            more = found.count(kind) - len(shown)
            if more:
                self.warn(f"… and {more:,} more {kind} warnings"
                          + (f"; {found.summary()}" if kind == "confusable" else "")
                          + f" (`autolabel lint {spec}` lists the worst, `--all` every one)")

    def skip(self, path: str, reason: str) -> None:
        """The line for an image that became an error row (after SKIP_LINES of them, only counted)."""
        self.skipped += 1
        if self.verbose or self.skipped <= SKIP_LINES:
            self._print(f"skipping {path}: {reason}", style="red")

    def skips_done(self) -> None:
        """Say how many skip lines were held back."""
        if not self.verbose and self.skipped > SKIP_LINES:
            self._print(f"… and {self.skipped - SKIP_LINES} more images skipped (their error rows say why; "
                        "-v prints every one)", style="red")

    def start(self, total: int | None, description: str = "labeling") -> None:
        """Open the progress bar (a no-op when it is not shown)."""
        if not self.show_bar:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, rate="-")

    def set_total(self, total: int) -> None:
        """The number of images, once known."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)

    def advance(self, n: int, rate: float) -> None:
        """Count n more images done."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=n, rate=f"{rate:.1f}")

    def stop(self) -> None:
        """Close the bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def summary(self, summary: dict[str, Any], out: str) -> None:
        """The per-class table and totals after a run."""
        if self.quiet:
            return
        table = Table(title="autolabel summary", title_justify="left")
        status = summary["status"]
        kinds = ["accepted", "review"] + (["reviewed"] if status.get("reviewed") else [])  # people's labels apart
        for name in ("class", "images", *kinds):
            table.add_column(name, justify="left" if name == "class" else "right")
        classes = sorted(summary["classes"].items(), key=lambda kv: -kv[1]["images"]) if len(
            summary["classes"]) > MAX_SUMMARY_ROWS else list(summary["classes"].items())
        for name, counts in classes[:MAX_SUMMARY_ROWS]:
            table.add_row(name, str(counts["images"]), *(str(counts.get(k, 0)) for k in kinds))
        if len(classes) > MAX_SUMMARY_ROWS:
            table.add_row(f"… {len(classes) - MAX_SUMMARY_ROWS} more classes (see --summary-json)", *[""] * (
                len(kinds) + 1))
        table.add_section()
        table.add_row("all", str(summary["images"] - status["error"]), *(str(status.get(k, 0)) for k in kinds))
        self.console.print(table)
        choice = summary.get("model", {}).get("precision_choice")
        self.console.print(
            f"{summary['images']} images, {status['error']} errors, "
            f"{summary['seconds']:.1f} s, {summary['images_per_second']:.1f} img/s"
            f"{f', {choice}' if choice else ''} → {out}",
            markup=False,
        )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def show_evaluation(console: Console, metrics: Any) -> None:
    """Per-class table and headline numbers of `autolabel eval` (`metrics`: the task's evaluation)."""
    table = Table(title=f"per class (truth: {metrics.truth})", title_justify="left")
    for name in ("class", "precision", "recall", "f1", "support"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for name, row in metrics.per_class.items():
        table.add_row(name, _pct(row.precision), _pct(row.recall), _pct(row.f1), str(row.support))
    console.print(table)
    for paragraph in metrics.summary():
        console.print(paragraph, markup=False)


def show_calibration(console: Console, result: Any) -> None:
    """The chosen thresholds with coverage (multi-label: recall) and precision intervals (`result`: the task's
    calibration)."""
    table = Table(title=f"thresholds for ≥ {_pct(result.target_precision)} precision on {result.scope} "
                        f"({result.interval_method})", title_justify="left")
    for name in ("scope", "threshold", "precision", "95% interval", result.share_name, "accepted", "rows", "note"):
        table.add_column(name, justify="left" if name in ("scope", "note") else "right")

    def add(scope: str, r: Any) -> None:
        if r.threshold is None:
            why = r.reason or f"target not reachable (best {_pct(r.best_precision)})"
            table.add_row(scope, "—", "", "", "", "", str(r.rows), why)
            return
        lo, hi = r.precision_ci95
        table.add_row(scope, repr(r.threshold), _pct(r.precision), f"{_pct(lo)}–{_pct(hi)}",
                      _pct(result.share(r)), str(r.accepted), str(r.rows), "")

    add("global", result.overall)
    for name, r in (result.per_class or {}).items():
        add(name, r)
    console.print(table)


def show_diff(console: Console, result: Any) -> None:
    """Flip rate, flips per class and status changes of `autolabel diff` (`result`: the task's diff)."""
    console.print(
        f"matched {result.matched} rows (only old {result.only_old}, only new {result.only_new}); "
        f"flips {result.flips} of {result.compared} = {_pct(result.flip_rate)}; "
        f"newly errored {result.newly_errored}, recovered {result.recovered}",
        markup=False,
    )
    table = Table(title="class distribution", title_justify="left")
    for name in ("class", "old", "new", "change", result.flips_column):
        table.add_column(name, justify="left" if name == "class" else "right")
    for name, row in result.distribution.items():
        flips = result.flips_by_class[name].total if name in result.flips_by_class else 0
        table.add_row(name, str(row.old), str(row.new), f"{row.change:+d}", str(flips))
    console.print(table)
    reviewed = result.reviewed
    if reviewed.old or reviewed.new:
        console.print(f"reviewed by people (not counted as flips): {reviewed.old} old, {reviewed.new} new, "
                      f"{reviewed.overruled} of them overrule the old label", markup=False)
    if result.status_changes:
        console.print("status changes: " + ", ".join(f"{k} {v}" for k, v in result.status_changes.items()),
                      markup=False)
