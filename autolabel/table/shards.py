"""A shard folder: its manifest written and read back, and every part checked to be the shard the manifest says."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from autolabel.core import storage
from autolabel.core.errors import SourceError, UsageError
from autolabel.core.fileio import InputError, atomic_write, open_regular, read_json_object, temp_beside, write_text
from autolabel.core.records import Shard
from autolabel.table.files import parquet_file
from autolabel.table.format import (
    METADATA_KEY,
    METADATA_NAME,
    SHARD_KEY,
    SHARD_LOCK,
    SHARD_MANIFEST,
    SHARD_PART,
    in_folder,
    part_glob,
    part_name,
)
from autolabel.table.schema import OUTPUT_SCHEMA

REDO = "re-run the same `autolabel run` command to redo it, or pass --overwrite to start over"


def has_parts(folder: Path) -> bool:
    """Whether a local folder holds part files (or files named like them)."""
    return any(folder.glob(part_glob()))


def refuse_foreign_entries(folder: Path, given: str) -> None:
    """A shard folder holds autolabel's parts and nothing pandas would read beside them: a file of the user's
    there (pyarrow reads every file whose name does not start with '.' or '_') would be read as rows by
    `pd.read_parquet(DIR)`, and a part that is not a regular file (a FIFO) would block the run."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:  # missing (created later) or unlistable: the lock and the writes say so
        return
    for name in names:
        if name.startswith((".", "_")):
            continue
        if not SHARD_PART.match(name):
            raise UsageError(f"--out {given}: holds {name}, which autolabel did not write; a folder of shards holds "
                             "only its parts (pd.read_parquet reads every file in it): move it out, or choose an "
                             "empty folder")
        if not stat.S_ISREG(os.lstat(folder / name).st_mode):
            raise UsageError(f"--out {given}: {name} is not a regular file, so autolabel did not write it; remove "
                             "it, or choose an empty folder")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest (SHARD_MANIFEST) of a shard folder ({} when the run has not finished)."""
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
                          f"{part_name(0)}, {part_name(1)}, … in order); {REDO}")
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
    model = (manifest.get(METADATA_NAME) or {}).get("model") or {}
    if (meta.get("model") or {}).get("fingerprint") != model.get("fingerprint"):
        return "another model labelled it"
    return None


def read_folder(folder: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """A finished run's table (its parts in order, each checked against the manifest) and the manifest."""

    manifest = finished_manifest(folder)
    tables = []
    for entry in manifest["shards"]:
        try:
            # on this thread only (see files.parquet_file); the metadata is checked before any row is read
            with open_regular(Path(folder) / entry["file"]) as handle:
                part = parquet_file(handle)
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
        return OUTPUT_SCHEMA.empty_table(), manifest
    return pa.concat_tables(tables, promote_options="default"), manifest


def write_manifest(folder: str, metadata: dict[str, Any], shard_size: int, key: str, shards: Iterable[Shard]) -> None:
    """Write the folder's SHARD_MANIFEST (the run metadata and every shard: file, rows, digest, counts), atomically:
    the last file a run writes, so a folder without it is a run in progress."""
    shards = list(shards)
    manifest = {METADATA_NAME: metadata, "shard_size": shard_size, "key": key,
                "rows": sum(s.rows for s in shards), "complete": True,
                "shards": [{"file": s.file, "first_row": s.first_row, "rows": s.rows, "digest": s.digest,
                            "counts": s.counts.to_dict()} for s in shards]}
    text = json.dumps(manifest, indent=1, ensure_ascii=False, default=str) + "\n"
    target = in_folder(folder, SHARD_MANIFEST)
    if storage.is_url(target):
        local = temp_beside(Path(os.environ.get("TMPDIR", "/tmp")) / SHARD_MANIFEST)
        try:
            local.write_text(text, encoding="utf-8")
            storage.upload(str(local), target)
        finally:
            local.unlink(missing_ok=True)
    else:
        write_text(Path(target).expanduser(), text)


def rewrite_folder(folder: Path, frame: Any, metadata: dict[str, Any]) -> None:
    """Write an updated table (e.g. with review columns) back over a shard folder, part by part, atomically."""
    import pyarrow.parquet as pq

    offset = 0
    shards = read_manifest(folder).get("shards", [])
    # New columns get one type from the whole table: a part whose values are all null (no review there)
    # must not be typed `null` while another is list<string>, or the parts no longer read as one table.
    known = pq.read_schema(folder / shards[0]["file"]).names if shards else []
    added = [c for c in frame.columns if c not in known]
    inferred = pa.Table.from_pandas(frame[added], preserve_index=False).schema
    for shard in shards:
        target = folder / shard["file"]
        original = pq.read_schema(target)
        part = frame.iloc[offset: offset + shard["rows"]]
        offset += shard["rows"]
        part_meta = json.loads(original.metadata[METADATA_KEY])
        part_meta.update({k: v for k, v in metadata.items() if k != SHARD_KEY})
        schema = pa.schema([original.field(c) if c in original.names else inferred.field(c) for c in part.columns])
        table = pa.Table.from_pandas(part, schema=schema, preserve_index=False)
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(part_meta, default=str).encode()})
        with atomic_write(target) as tmp:
            pq.write_table(table, tmp, compression="zstd")
