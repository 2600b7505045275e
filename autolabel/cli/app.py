"""The click group and what every command shares: error handling, common options, JSON output."""

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


def write_json(data: dict, target: str | None) -> None:
    """--json PATH writes the result; `-` prints it to stdout (data goes to stdout, people to stderr)."""
    if not target:
        return
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if target == "-":
        click.echo(text, nl=False)
    else:
        Path(target).write_text(text, encoding="utf-8")


def stderr():  # -> rich Console
    from autolabel.progress import stderr_console

    return stderr_console()


LABELS_TABLE = click.argument("labels_table", metavar="LABELS", type=click.Path())
SPEC_OPTION = click.option("--labels", "spec", type=click.Path(dir_okay=False), default=None,
                           help="Label spec (needed for CSV tables, which do not record their classes).")
TRUTH_OPTION = click.option(
    "--truth", required=True,
    help="A column of LABELS (e.g. truth, reviewed_label), a .csv/.parquet with path and label columns, or 'folder'.")


