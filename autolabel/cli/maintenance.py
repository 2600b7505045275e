"""`autolabel prompts` and `autolabel cache info|prune`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from autolabel.cli.app import CONTEXT, handle_errors, main
from autolabel.core.errors import UsageError


@main.command(context_settings=CONTEXT)
@click.argument("name", required=False)
def prompts(name: str | None) -> None:
    """List the shipped template sets and example label specs, or print the templates of set NAME.

    Use a set in a label spec with `templates: NAME`.
    """
    from autolabel.core.prompts import example_specs, template_sets

    sets = template_sets()
    if name:
        if name not in sets:
            click.echo(f"error: no template set named '{name}'; sets: {', '.join(sets)}", err=True)
            sys.exit(2)
        for template in sets[name].templates:
            click.echo(template)
        return
    for item in sets.values():
        count = len(item.templates)
        click.echo(f"{item.name}\t{count} template{'s' if count != 1 else ''}\t{item.description}")
    click.echo("\nexample label specs:", err=True)
    for path in example_specs():
        click.echo(f"  {path}", err=True)


SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _parse(value: str | None, units: dict[str, int], option: str, example: str) -> float | None:
    """`2GB`, `30d` → bytes or seconds; anything else, negative numbers included, is one-line usage error."""
    if value is None:
        return None
    text = value.strip().upper() if units is SIZE_UNITS else value.strip().lower()
    number = text.rstrip("".join({c for u in units for c in u}))
    unit = text[len(number):]
    try:
        parsed = float(number) * units[unit]
    except (ValueError, KeyError):
        raise UsageError(f"{option} {value}: not a value such as {example}") from None
    if not parsed >= 0:  # also refuses nan
        raise UsageError(f"{option} {value}: must not be negative (e.g. {example})")
    return parsed


def human_bytes(n: float) -> str:
    """1258291 → '1.2 MB', in the units --max-size takes (KB = 1024 bytes)."""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@main.group(context_settings=CONTEXT)
def cache() -> None:
    """Inspect or shrink the embedding cache."""


def _open_cache(cache_dir: str | None):  # -> EmbeddingCache
    """The cache in that folder; an inspection never creates one (a mistyped --cache-dir is said, not made)."""
    from autolabel.core.config import CacheConfig
    from autolabel.embedding.cache import CACHE_FILE, default_cache_dir
    from autolabel.embedding.session import open_cache

    folder = Path(cache_dir or default_cache_dir()).expanduser()
    if not os.path.lexists(folder) or (folder.is_dir() and not os.path.lexists(folder / CACHE_FILE)):
        raise UsageError(f"--cache-dir {folder}: holds no autolabel cache ({CACHE_FILE}); check the path "
                         "(a run creates it)")
    cache_file = folder / CACHE_FILE
    if cache_file.is_file() and cache_file.stat().st_size:
        with cache_file.open("rb") as handle:
            if handle.read(16) != b"SQLite format 3\x00":  # a run would set it aside and start over; we only look
                raise UsageError(f"--cache-dir {folder}: {CACHE_FILE} there is not an autolabel cache; nothing "
                                 "was changed")
    return open_cache(CacheConfig(str(folder)))


@cache.command("info", context_settings=CONTEXT)
@click.option("--cache-dir", type=click.Path(), envvar="AUTOLABEL_CACHE_DIR", default=None,
              help="The cache folder [default: $AUTOLABEL_CACHE_DIR, $XDG_CACHE_HOME/autolabel or ~/.cache/autolabel].")
@handle_errors
def cache_info(cache_dir: str | None) -> None:
    """Show the cache's location, size and entries per model."""
    info = _open_cache(cache_dir).info()
    click.echo(f"path\t{info.path}")
    click.echo(f"size\t{human_bytes(info.bytes)}")
    click.echo(f"files indexed\t{info.files}")
    for space, n in info.images.items():
        click.echo(f"images\t{n}\t{space}")
    for space, n in info.texts.items():
        click.echo(f"prompts\t{n}\t{space}")


@cache.command("prune", context_settings=CONTEXT)
@click.option("--cache-dir", type=click.Path(), envvar="AUTOLABEL_CACHE_DIR", default=None,
              help="The cache folder [default: $AUTOLABEL_CACHE_DIR, $XDG_CACHE_HOME/autolabel or ~/.cache/autolabel].")
@click.option("--max-size", default=None,
              help="Drop least-recently-used embeddings until the cache file is this small (e.g. 2GB).")
@click.option("--older-than", default=None, help="Drop entries unused for this long (e.g. 30d, 12h).")
@click.option("--all", "everything", is_flag=True, help="Empty the cache.")
@handle_errors
def cache_prune(cache_dir: str | None, max_size: str | None, older_than: str | None, everything: bool) -> None:
    """Shrink the cache: by age, by size (least recently used first), or entirely."""
    if not (max_size or older_than or everything):
        raise UsageError("cache prune: give --max-size SIZE, --older-than AGE or --all")
    max_bytes = _parse(max_size, SIZE_UNITS, "--max-size", "2GB, 500MB")
    older_than_s = _parse(older_than, AGE_UNITS, "--older-than", "30d, 12h")
    store = _open_cache(cache_dir)
    removed = store.clear() if everything else store.prune(max_bytes=max_bytes, older_than_s=older_than_s)
    click.echo(f"removed {removed} entries; cache is now {human_bytes(store.file_bytes())}", err=True)
