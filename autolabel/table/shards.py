"""A shard folder read back: a finished run's manifest, and every part checked to be the shard the manifest says."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from autolabel.core import storage
from autolabel.core.errors import SourceError
from autolabel.core.fileio import SHARD_LOCK, SHARD_MANIFEST, SHARD_PART, InputError, open_regular, read_json_object

SHARD_KEY = "shard"  # the part's own place in its run, in its Parquet metadata
REDO = "re-run the same `autolabel run` command to redo it, or pass --overwrite to start over"


def part_name(index: int) -> str:
    """The file name of shard `index`."""
    return f"part-{index:05d}.parquet"


def in_folder(folder: str, name: str) -> str:
    """The location of `name` in a local or object-store folder."""
    return f"{folder.rstrip('/')}/{name}" if storage.is_url(folder) else str(Path(folder) / name)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The `_autolabel.json` of a shard folder ({} when the run has not finished)."""
    target = in_folder(str(folder), SHARD_MANIFEST)
    try:
        if storage.is_url(target):
            manifest = json.loads(storage.read_url(target))
            if not isinstance(manifest, dict):
                raise InputError(errno.EINVAL, "the shard manifest is not a JSON object")
            return manifest
        return read_json_object(target, "the shard manifest")
    except FileNotFoundError:
        return {}
    except InputError as exc:
        if exc.errno == errno.ENOENT:
            return {}
        raise SourceError(f"{target}: {exc.strerror}; re-run the job with --overwrite") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{target}: not a manifest autolabel wrote ({exc}); re-run the job with --overwrite") \
            from None


def finished_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a local folder that a finished run wrote; SourceError (one line) for any other folder.

    A folder with parts or a run's lock but no manifest is a run in progress or interrupted; one with
    neither is no run's folder at all (`/`, a folder of images or of other files). Every part file there
    must be one the manifest lists.
    """
    manifest = read_manifest(folder)
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise SourceError(f"{folder}: cannot list this folder ({exc.strerror or exc})") from None
    if not manifest:
        if SHARD_LOCK in names or any(SHARD_PART.match(n) for n in names):
            raise SourceError(f"{folder}: run in progress or interrupted; re-run to finish it (the same "
                              "`autolabel run` command)")
        raise SourceError(f"{folder}: not a finished run's folder (no {SHARD_MANIFEST}); a folder is read as a "
                          "labels table only when `autolabel run --out DIR/` wrote it: give that folder or a table "
                          "file")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards) or \
            [s.get("file") for s in shards] != [part_name(i) for i in range(len(shards))]:
        raise SourceError(f"{folder}: {SHARD_MANIFEST} is not a manifest autolabel wrote (it must list "
                          f"part-00000.parquet, part-00001.parquet, … in order); {REDO}")
    listed = {s["file"] for s in shards}
    stray = sorted(n for n in names if SHARD_PART.match(n) and n not in listed)
    if stray:
        raise SourceError(f"{folder}: holds {stray[0]}, which {SHARD_MANIFEST} does not list (a part copied in "
                          f"from elsewhere?); {REDO}")
    return manifest


def part_problem(meta: dict[str, Any], entry: dict[str, Any], manifest: dict[str, Any], rows: int) -> str | None:
    """What makes a part (its metadata and row count) not the shard `entry` of `manifest` says, or None."""
    own = meta.get(SHARD_KEY) if isinstance(meta, dict) else None
    if not isinstance(own, dict):
        return "it carries no shard metadata"
    index = int(SHARD_PART.match(entry["file"]).group(1))  # type: ignore[union-attr]
    if own.get("index") != index:
        return f"it holds shard {own.get('index')}"
    if own.get("key") != manifest.get("key"):
        return "it belongs to another job"
    if (own.get("first_row"), own.get("rows")) != (entry.get("first_row"), entry.get("rows")) or rows != own["rows"]:
        return "its rows are not the ones listed"
    if own.get("digest") != entry.get("digest"):
        return "it labelled other images"
    model = (manifest.get("autolabel") or {}).get("model") or {}
    if (meta.get("model") or {}).get("fingerprint") != model.get("fingerprint"):
        return "another model labelled it"
    return None


def read_folder(folder: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """A finished run's table (its parts in order, each checked against the manifest) and the manifest."""
    import pyarrow.parquet as pq

    from autolabel.table.writer import METADATA_KEY

    manifest = finished_manifest(folder)
    tables = []
    for entry in manifest["shards"]:
        try:
            # one thread, not pq.read_table: pyarrow's threads reading through a Python file object aborted the
            # process at exit (SIGABRT) one run in four; the metadata is checked before any row is read
            with open_regular(Path(folder) / entry["file"]) as handle:
                part = pq.ParquetFile(handle)
                meta = json.loads((part.schema_arrow.metadata or {}).get(METADATA_KEY, b"{}"))
                problem = part_problem(meta, entry, manifest, part.metadata.num_rows)
                table = None if problem else part.read(use_threads=False)
        except InputError as exc:
            raise SourceError(f"{folder}: {entry['file']}, listed in {SHARD_MANIFEST}, cannot be read "
                              f"({exc.strerror}); {REDO}") from None
        except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
            problem = f"it cannot be read: {' '.join(str(exc).split())[:120]}"
        if problem:
            raise SourceError(f"{folder}: {entry['file']} is not the shard {SHARD_MANIFEST} lists ({problem}: a part "
                              f"copied from another run or folder, or swapped); {REDO}")
        tables.append(table.replace_schema_metadata(None))
    if not tables:
        from autolabel.table.writer import OUTPUT_SCHEMA

        return OUTPUT_SCHEMA.empty_table(), manifest
    return pa.concat_tables(tables, promote_options="default"), manifest
