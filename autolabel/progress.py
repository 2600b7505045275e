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


class Reporter:
    """Progress and messages for one command; the bar only on an interactive stderr and without --quiet."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.show_bar = not quiet and self.console.is_terminal and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def info(self, message: str) -> None:
        """A status line, suppressed by --quiet."""
        if not self.quiet:
            self.console.print(message, markup=False)

    def warn(self, message: str) -> None:
        """A warning line; shown even with --quiet."""
        self.console.print(f"warning: {message}", markup=False, style="yellow")

    def skip(self, path: str, reason: str) -> None:
        """The line for an image that became an error row."""
        self.console.print(f"skipping {path}: {reason}", markup=False, style="red")

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
        for name, justify in (("class", "left"), ("images", "right"), ("accepted", "right"), ("review", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for name, counts in summary["classes"].items():
            table.add_row(name, str(counts["images"]), str(counts["accepted"]), str(counts["review"]))
        status = summary["status"]
        table.add_section()
        table.add_row("all", str(summary["images"] - status["error"]), str(status["accepted"]), str(status["review"]))
        self.console.print(table)
        self.console.print(
            f"{summary['images']} images, {status['error']} errors, "
            f"{summary['seconds']:.1f} s, {summary['images_per_second']:.1f} img/s → {out}",
            markup=False,
        )
