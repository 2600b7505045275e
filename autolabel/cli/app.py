"""The click group and what every command shares: error handling, common options, JSON output."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from autolabel.core.errors import AutolabelError
from autolabel.core.fileio import check_output_file, json_with, write_text
from autolabel.core.version import __version__
from autolabel.table.format import SIDECAR_SUFFIX

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
INTERRUPTED = {
    "export": "the files written so far were removed",
    "import-review": "the --into table was not changed",
    "prune": "the cache is intact (entries removed so far stay removed)",
}


def run_interrupted(params: dict[str, Any]) -> str:
    """What an interrupted `run` left behind, for its options."""
    from autolabel.core import storage
    from autolabel.labelling.output import is_folder_output
    from autolabel.table.shards import has_parts

    cached = not params.get("no_cache") and params.get("engine", "local") == "local"
    out = storage.local_path(str(params.get("out") or ""))
    shards = is_folder_output(out) and not storage.is_url(out) and has_parts(Path(out).expanduser())
    if shards:
        kept = f"the finished shards in {out} are kept"
        how = "from them and from the embedding cache" if cached else "from them"
    else:
        kept = f"no shard of {out} was finished" if is_folder_output(out) else "no partial output was written"
        how = "from the embedding cache" if cached else ""
    return f"{kept}; re-run `autolabel run` with the same arguments to resume {how}" if how else \
        f"{kept} (with --no-cache, a re-run starts over)"


def verbose_wanted() -> bool:
    """-v: `autolabel -v COMMAND`, a command's own -v, or AUTOLABEL_VERBOSE=1."""
    context = click.get_current_context(silent=True)
    while context is not None:
        if context.params.get("verbose"):
            return True
        context = context.parent
    return os.environ.get("AUTOLABEL_VERBOSE", "").lower() in ("1", "true", "yes")


def handle_errors(func: F) -> F:
    """Domain errors → one stderr line and their exit code; Ctrl-C → 130 with what it left behind; anything
    else (the OS, a library, a bug) → one line naming the file and what to do, exit 1 (the traceback with -v)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AutolabelError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            context = click.get_current_context()
            left = (run_interrupted(context.params) if context.info_name == "run"
                    else INTERRUPTED.get(context.info_name or "", "no partial output was written"))
            click.echo(f"interrupted: {left}", err=True)
            sys.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            from autolabel.cli.failures import describe

            line, code = describe(exc)
            if verbose_wanted():
                traceback.print_exc()
            click.echo(f"error: {line}", err=True)
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


def name_env_vars(params: list[click.Parameter], prefix: str | None) -> None:
    """Each option reads AUTOLABEL_<COMMAND>_<OPTION>, named after its long flag, and says so in --help.

    Click's automatic names come from the Python parameter (`json_out`, `fmt`), not the flag; options
    with a documented variable of their own (AUTOLABEL_CACHE_DIR, RAY_ADDRESS) keep it.
    """
    if prefix is None:
        return
    for param in params:
        if isinstance(param, click.Option) and param.envvar is None:
            flag = max(param.opts, key=len).lstrip("-")
            param.envvar = f"{prefix}_{flag.upper().replace('-', '_')}"
        if isinstance(param, click.Option):
            param.show_envvar = True


class Command(click.Command):
    """A command whose options can come from AUTOLABEL_<COMMAND>_<OPTION>."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        name_env_vars(self.params, ctx.auto_envvar_prefix)
        return super().parse_args(ctx, args)


class Group(click.Group):
    """A group whose commands (and sub-groups' commands) are `Command`s; the prefix nests (AUTOLABEL_CACHE_PRUNE)."""

    command_class = Command
    group_class = type


@click.group(cls=Group, context_settings={**CONTEXT, "auto_envvar_prefix": "AUTOLABEL"})
@click.version_option(__version__, "-V", "--version", prog_name="autolabel")
@click.option("--verbose", "-v", is_flag=True,
              help="On an unexpected failure, print the full traceback too (also AUTOLABEL_VERBOSE=1).")
def main(verbose: bool) -> None:
    """Label image datasets with zero-shot image-text models (CLIP, SigLIP).

    \b
    Quick start:
      autolabel prompts                                  # shipped template sets
      autolabel run photos/ --labels labels.yaml --out labels.parquet
      autolabel report labels.parquet --out report.html  # look at the result
    \b
    Review loop: run → queue (what to review) → report / export → import-review → eval → calibrate
    → run again with --examples (cached).

    Every option can also be set with an AUTOLABEL_<COMMAND>_<OPTION> environment variable
    (e.g. AUTOLABEL_RUN_BATCH_SIZE, AUTOLABEL_CACHE_PRUNE_MAX_SIZE); AUTOLABEL_CACHE_DIR is shared.
    """


def check_json_target(target: str | None, *inputs: str | None, keys: tuple[str, ...] = ()) -> None:
    """Refuse an unwritable --json PATH, one that is an input, or a file there that is not this command's JSON
    (an object with `keys`), before any work (`-` is stdout)."""
    if target and target != "-":
        check_output_file(target, "--json", inputs, json_with(*keys))


def write_json(data: dict, target: str | None) -> None:
    """--json PATH writes the result atomically; `-` prints it to stdout (then the table goes to stderr)."""
    if not target:
        return
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if target == "-":
        click.echo(text, nl=False)
    else:
        write_text(target, text)


def output_console(json_target: str | None):  # -> rich Console
    """Where a command's table goes: stdout, its main output; stderr when `--json -` makes the JSON the output."""
    from autolabel.core.progress import stderr_console, stdout_console

    return stderr_console() if json_target == "-" else stdout_console()


def stderr():  # -> rich Console
    from autolabel.core.progress import stderr_console

    return stderr_console()


LABELS_TABLE = click.argument("labels_table", metavar="LABELS", type=click.Path())
SPEC_OPTION = click.option("--labels", "spec", type=click.Path(dir_okay=False), default=None,
                           help="Label spec, for tables that do not record their classes (a CSV without its "
                                f"LABELS{SIDECAR_SUFFIX} sidecar).")


def table_model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--model, --device and --cache-dir of the commands that embed a labels table's images with its run's model."""
    for option in reversed((
        click.option("--model", "-m", default=None, help="Hub id or local folder [default: the run's model]."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
        click.option("--cache-dir", type=click.Path(file_okay=False), envvar="AUTOLABEL_CACHE_DIR", default=None,
                     help="Embedding cache folder [default: $XDG_CACHE_HOME/autolabel or ~/.cache/autolabel]."),
    )):
        command = option(command)
    return command


TRUTH_OPTION = click.option(
    "--truth", required=True,
    help="A column of LABELS (e.g. truth, reviewed_label), a .csv/.parquet with path and label columns, or 'folder'.")


