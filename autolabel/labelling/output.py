"""Where results go: one table file, or a folder of shards (parts and a manifest) that a re-run resumes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from autolabel.core import storage
from autolabel.core.errors import UsageError
from autolabel.core.fileio import check_output_file, remove_stale_temps
from autolabel.core.records import Batch, Counts, ImageRecord, Shard
from autolabel.table.files import TableFacts, read_metadata, reviewed_rows, table_facts
from autolabel.table.format import SHARD_KEY, in_folder, output_format, part_name
from autolabel.table.format import SHARD_LOCK as LOCK
from autolabel.table.format import SHARD_MANIFEST as MANIFEST
from autolabel.table.format import SHARD_PART as PART
from autolabel.table.shards import refuse_foreign_entries, write_manifest
from autolabel.table.writer import TableWriter

CHANGED = "its images changed in SOURCE: added, removed, renamed, reordered or modified"


class ShardDigest:
    """What a shard covers, as a digest of its input rows: each row's path, location, pass-through values and,
    for a local file, its size and modification time (an object-store image is known by its URL alone).

    Fed row by row, so a shard's digest is known once its last record has gone by; `prefix` is the digest
    of its first `upto` rows (was an earlier, shorter last shard the start of this one?).
    """

    def __init__(self, upto: int = 0) -> None:
        self._hash, self.rows, self.upto, self.prefix = hashlib.sha256(), 0, upto, ""

    def add(self, record: ImageRecord) -> None:
        """One more row."""
        size = mtime = -1
        location = record.location
        if location and ("://" not in location or not storage.is_url(location)):
            try:
                info = os.stat(location)
                size, mtime = info.st_size, info.st_mtime_ns
            except OSError:
                pass
        extra = repr(record.extra) if record.extra else ""
        line = f"{record.row}\0{record.path!r}\0{location!r}\0{extra}\0{record.error!r}\0{size}\0{mtime}\n"
        self._hash.update(line.encode("utf-8", "surrogatepass"))
        self.rows += 1
        if self.rows == self.upto:
            self.prefix = self.hexdigest()

    def hexdigest(self) -> str:
        """The digest of the rows so far."""
        return self._hash.hexdigest()[:32]


def digest_of(records: Iterable[ImageRecord]) -> str:
    """The ShardDigest of a shard's records."""
    digest = ShardDigest()
    for record in records:
        digest.add(record)
    return digest.hexdigest()


def is_folder_output(out: str) -> bool:
    """`--out DIR/` (trailing slash), an existing folder, or an existing object-store prefix."""
    if out.endswith("/"):
        return True
    if storage.is_url(out):
        return Path(out).suffix == "" and storage.is_folder(out)
    return Path(out).expanduser().is_dir()


@dataclass(frozen=True)
class PartWriter:
    """Writes one shard as an atomic Parquet file carrying the run metadata and its own place in the run.

    Picklable, so Ray workers write their shards themselves.
    """

    folder: str
    schema: pa.Schema
    key: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    settings: dict[str, str] = field(default_factory=dict, compare=False)  # a digest per setting, for messages

    def open(self, index: int) -> TableWriter:
        """A writer for shard `index` (nothing is visible at its name until `close`)."""
        return TableWriter(in_folder(self.folder, part_name(index)), self.schema)

    def close(self, writer: TableWriter, index: int, first_row: int, rows: int, counts: Counts,
              digest: str) -> Shard:
        """Commit a shard's file with its metadata (`digest`: its input rows' ShardDigest); returns what the
        manifest records of it."""
        meta = dict(self.metadata)
        meta[SHARD_KEY] = {"index": index, "first_row": first_row, "rows": rows, "key": self.key,
                           "settings": self.settings, "digest": digest,
                           "counts": counts.to_dict()}
        writer.commit(meta)
        return Shard(index, part_name(index), first_row, rows, counts, digest)

    def write(self, index: int, records: list[ImageRecord], columns: Iterable[dict[str, list[Any]]]) -> Shard:
        """Write a whole shard: its records, labelled as batches of columns."""
        writer = self.open(index)
        rows, counts = 0, Counts()
        try:
            for cols in columns:
                writer.write(cols)
                rows += len(cols["path"])
                counts += Counts.of(cols, 0)
            return self.close(writer, index, records[0].row, rows, counts, digest_of(records))
        except BaseException:
            writer.abort()
            raise


class FileSink:
    """One .parquet/.csv table, written to a temp file and renamed into place at the end."""

    resumed: tuple[Shard, ...] = ()

    def __init__(self, out: str, schema: pa.Schema, overwrite: bool = False) -> None:
        self.out, self.schema, self.overwrite = out, schema, overwrite
        self.writer: TableWriter | None = None

    def check(self) -> None:
        """Before any work: the location must take the file, and a file already there must be ours to replace."""
        output_format(self.out)
        check_output_file(self.out, "--out")
        if not self.overwrite and not storage.is_url(self.out):
            refuse_replacing(Path(self.out).expanduser(), self.out)

    def check_model(self, model: dict[str, Any]) -> None:
        """Nothing to match: a single file is always written whole."""

    def pending(self, records: Iterable[ImageRecord]) -> Iterator[ImageRecord]:
        """Every record: a single file is always written whole."""
        return iter(records)

    def write(self, batch: Batch) -> None:
        """Append a batch's rows."""
        if self.writer is None:
            self.writer = TableWriter(self.out, self.schema)
        self.writer.write(batch.columns or {})

    def commit(self, metadata: dict[str, Any]) -> str:
        """Put the finished table at OUT."""
        if self.writer is None:
            self.writer = TableWriter(self.out, self.schema)
        return str(self.writer.commit(metadata))

    def abort(self) -> None:
        """Leave nothing half-written."""
        if self.writer is not None:
            self.writer.abort()


def refuse_replacing(path: Path, out: str) -> None:
    """Refuse (UsageError) to replace a file that is not a labels table, or one that holds human reviews.

    A re-run may replace its own earlier table, but never a file the user wrote, nor the reviews that
    import-review merged into a table (they exist nowhere else).
    """
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return
        facts = table_facts(path, output_format(out))
    except (OSError, pa.ArrowException, ValueError, UnicodeDecodeError):
        facts = TableFacts(ours=False, reviewed=0)
    if not facts.ours:
        raise UsageError(f"--out {out}: exists and is not a labels table autolabel wrote; choose another --out "
                         "(or pass --overwrite to replace it)")
    if facts.reviewed:
        raise UsageError(f"--out {out}: holds {facts.reviewed} human review(s) (reviewed_label) that this run would "
                         "replace; write to another --out and pass this table to --examples to keep them, or "
                         "pass --overwrite to drop them")


class ShardSink:
    """A folder of shards of `shard_size` consecutive input rows; shards of an earlier run of the same job are kept.

    Each part is committed atomically with the run's key in its metadata, so a killed run leaves only
    whole parts, and a re-run skips every part whose key and row range match. Parts of a different job
    are refused unless --overwrite; files that autolabel did not write are never touched.
    """

    def __init__(self, folder: str, schema: pa.Schema, key: str, shard_size: int, overwrite: bool,
                 settings: dict[str, str] | None = None) -> None:
        self.folder, self.schema, self.key = folder.rstrip("/") or "/", schema, key
        self.settings = dict(settings or {})
        self.shard_size, self.overwrite = shard_size, overwrite
        self.parts: PartWriter | None = None
        self.finished: dict[int, Shard] = {}
        self.models: dict[int, str] = {}  # finished shard → the model (fingerprint:precision) that labelled it
        self.stale: set[int] = set()
        self.written: dict[int, Shard] = {}
        self._open: tuple[int, int, TableWriter] | None = None  # (shard, first row, writer)
        self._lock: FolderLock | None = None
        self.reviews: dict[int, int] = {}  # finished part → rows with a human review in it
        self._open_rows, self._open_counts = 0, Counts()
        self.digests: dict[int, str] = {}  # shard being (re)done → the digest of its input rows
        self._manifest_removed = False

    # --- before the model loads ---------------------------------------------------------------------
    def check(self) -> None:
        """Create the folder, prove it takes files, lock it, and read what an earlier run left there."""
        if not storage.is_url(self.folder):
            folder = Path(self.folder).expanduser()
            if folder.exists() and not folder.is_dir():
                raise UsageError(f"--out {self.folder}: exists and is not a folder")
            check_output_file(folder / MANIFEST, "--out", shard_folder=folder)
            refuse_foreign_entries(folder, self.folder)
            self._lock = FolderLock.take(folder, self.folder)
        try:
            self._read_existing()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _read_existing(self) -> None:
        for index, meta in self._existing_parts():
            shard = meta.get(SHARD_KEY) if isinstance(meta, dict) else None
            name = part_name(index)
            if not isinstance(shard, dict) or "key" not in shard:
                raise UsageError(f"--out {self.folder}: {name} was not written by autolabel; refusing to touch it "
                                 "(choose an empty folder)")
            if shard["key"] != self.key:
                if not self.overwrite:
                    self._refuse_other_job(shard)
                self.stale.add(index)
                continue
            if not storage.is_url(self.folder):
                self.reviews[index] = reviewed_rows(Path(self.folder).expanduser() / name)
            if shard.get("index") != index or shard.get("first_row") != index * self.shard_size:
                self._may_replace(index, "it is not the shard its name says: a part copied or swapped in")
                self.stale.add(index)
                continue
            self.finished[index] = Shard(index, name, int(shard["first_row"]), int(shard["rows"]),
                                         Counts.from_dict(shard["counts"]), str(shard.get("digest") or ""))
            self.models[index] = _model_identity(meta.get("model") or {})
        if self.stale:
            self._changing()  # the old manifest no longer describes the folder

    def _refuse_other_job(self, shard: dict[str, Any]) -> None:
        old = shard.get("settings") or {}
        changed = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
        what = ", ".join(changed) if old and changed else "label spec, model, source or options"
        reviews = self._reviews_total()
        lost = (f"; --overwrite would drop the {reviews} human review(s) in them — to keep them, write "
                "to another folder and pass this one to --examples" if reviews else "")
        raise UsageError(f"--out {self.folder}: holds shards of a different job ({what} changed); pass "
                         f"--overwrite to replace them, or choose another folder{lost}")

    def _changing(self) -> None:
        """The folder is about to differ from what its manifest says: remove the manifest first (once), so
        that no reader takes the folder for a finished run until this one commits."""
        if not self._manifest_removed:
            self._remove(MANIFEST)
            self._manifest_removed = True

    def _reviews_total(self) -> int:
        """Human reviews in every part of the folder (local folders; 0 for object stores)."""
        if storage.is_url(self.folder):
            return 0
        return sum(reviewed_rows(Path(self.folder).expanduser() / part_name(index))
                   for index, _ in self._existing_parts())

    def _may_replace(self, index: int, why: str) -> None:
        """Refuse (UsageError) to redo or drop a finished part that holds human reviews, unless --overwrite."""
        reviews = self.reviews.get(index, 0)
        if reviews and not self.overwrite:
            raise UsageError(f"--out {self.folder}: {part_name(index)} holds {reviews} human review(s) "
                             f"(reviewed_label) and this run would redo it ({why}); write to another folder and pass "
                             "this one to --examples to keep them, or pass --overwrite to drop them")

    def check_model(self, model: dict[str, Any]) -> None:
        """Once the model is loaded: shards labelled by other weights or precision are refused or replaced."""
        other = sorted(k for k, seen in self.models.items() if seen != _model_identity(model))
        if other and not self.overwrite:
            raise UsageError(f"--out {self.folder}: {len(other)} shard(s) were labelled by other model weights or "
                             "precision; pass --overwrite to replace them, or choose another folder")
        for index in other:
            del self.finished[index]
            self.stale.add(index)

    def _existing_parts(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for name in sorted(self._listing()):
            match = PART.match(name)
            if match:
                try:
                    meta = read_metadata(in_folder(self.folder, name))
                except Exception:  # a file named like a part that is not a Parquet table of ours
                    meta = {}
                yield int(match.group(1)), meta

    def _listing(self) -> list[str]:
        if storage.is_url(self.folder):
            fs, path = storage.filesystem(self.folder)
            try:
                return [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
            except FileNotFoundError:
                return []
        folder = Path(self.folder).expanduser()
        return os.listdir(folder) if folder.is_dir() else []

    def _remove(self, name: str) -> None:
        target = in_folder(self.folder, name)
        if storage.is_url(target):
            fs, path = storage.filesystem(target)
            if fs.exists(path):
                fs.rm(path)
        else:
            Path(target).expanduser().unlink(missing_ok=True)

    # --- during the run -----------------------------------------------------------------------------
    @property
    def resumed(self) -> tuple[Shard, ...]:
        """Shards an earlier run finished, which this one keeps."""
        return tuple(self.finished[k] for k in sorted(self.finished))

    def prepare(self, metadata: dict[str, Any]) -> PartWriter:
        """The part writer (with the run metadata every part carries); engines may hand it to their workers."""
        self.parts = PartWriter(self.folder, self.schema, self.key, metadata, self.settings)
        if not storage.is_url(self.folder):
            Path(self.folder).expanduser().mkdir(parents=True, exist_ok=True)
            remove_stale_temps(Path(self.folder).expanduser() / MANIFEST)
        return self.parts

    def pending(self, records: Iterable[ImageRecord]) -> Iterator[ImageRecord]:
        """The records of the shards this run must (re)do, in input order.

        A shard no part holds yet streams through (its digest taken on the way). A finished shard's records
        are held (at most --shard-size of them) until its last one has gone by: its part is kept only when
        the digest of its input rows is the one the part recorded, so added, removed, renamed, reordered or
        modified images redo exactly the shards they fall in (or refuse, when such a shard holds human
        reviews). Kept shards' records are never decoded.
        """
        held: list[ImageRecord] = []
        digest, k = ShardDigest(), -1
        for record in records:
            if record.row // self.shard_size != k:
                yield from self._settle(k, digest, held)
                k, held = record.row // self.shard_size, []
                done = self.finished.get(k)
                digest = ShardDigest(done.rows if done is not None else 0)
                if done is None:
                    self._changing()
            digest.add(record)
            if k in self.finished:
                held.append(record)
            else:
                yield record
        yield from self._settle(k, digest, held)
        self._ended(k + 1)

    def _settle(self, k: int, digest: ShardDigest, held: list[ImageRecord]) -> list[ImageRecord]:
        """Shard k's records have all gone by: the held ones to redo, or none when its part covers exactly them."""
        if k < 0:
            return []
        done = self.finished.get(k)
        if done is None:  # streamed: its part (written once the engine catches up) records this digest
            self.digests[k] = digest.hexdigest()
            return []
        if done.digest == digest.hexdigest() and (done.first_row, done.rows) == (held[0].row, len(held)):
            return []
        grew = done.digest and digest.prefix == done.digest and len(held) > done.rows
        self._may_replace(k, "SOURCE grew past it" if grew else CHANGED if done.digest else
                          "an earlier autolabel wrote it without a digest of its images")
        del self.finished[k]
        self.digests[k] = digest.hexdigest()
        self._changing()
        return held

    def _ended(self, end: int) -> None:
        """SOURCE has `end` shards: finished ones beyond them are dropped (or refused when they hold reviews)."""
        for k in sorted(k for k in self.finished if k >= end):
            self._may_replace(k, "SOURCE is shorter now")
            del self.finished[k]
            self.stale.add(k)
            self._changing()

    def write(self, batch: Batch) -> None:
        """Record a shard a worker wrote, or route a batch's rows into their shards' files."""
        if batch.shard is not None:  # a Ray worker wrote it, with the digest of the records it was given
            self.written[batch.shard.index] = batch.shard
            self.digests.pop(batch.shard.index, None)
            return
        columns, rows = batch.columns or {}, batch.rows
        n, start = len(rows), 0
        while start < n:
            k = rows[start] // self.shard_size
            end = start
            while end < n and rows[end] // self.shard_size == k:
                end += 1
            self._append(k, rows[start], {name: values[start:end] for name, values in columns.items()})
            start = end

    def _append(self, k: int, first_row: int, columns: dict[str, list[Any]]) -> None:
        if self._open is not None and self._open[0] != k:
            self._close()
        if self._open is None:
            assert self.parts is not None, "prepare() first"
            self._open = (k, first_row, self.parts.open(k))
            self._open_rows, self._open_counts = 0, Counts()
        self._open[2].write(columns)
        self._open_rows += len(columns["path"])
        self._open_counts += Counts.of(columns, 0)

    def _close(self) -> None:
        if self._open is not None and self.parts is not None:
            k, first, writer = self._open
            self.written[k] = self.parts.close(writer, k, first, self._open_rows, self._open_counts,
                                               self.digests.pop(k, ""))
        self._open = None

    def commit(self, metadata: dict[str, Any]) -> str:
        """Close the last shard, drop parts this job no longer has, then write the manifest (last)."""
        self._close()
        shards = {**self.finished, **self.written}
        for index in sorted(self.stale - set(shards)):
            self._remove(part_name(index))
        last = max(shards, default=-1)
        for index, _ in list(self._existing_parts()):
            if index > last:  # an earlier run of this job saw a longer source
                self._may_replace(index, "SOURCE is shorter now")
                self._remove(part_name(index))
        write_manifest(self.folder, metadata, self.shard_size, self.key, [s for _, s in sorted(shards.items())])
        self._release()
        return self.folder + "/"

    def abort(self) -> None:
        """Drop the shard being written; finished shards stay for the re-run."""
        if self._open is not None:
            self._open[2].abort()
            self._open = None
        self._release()


@dataclass
class FolderLock:
    """An exclusive lock on a local --out folder for one run: two runs writing one folder would mix their shards."""

    fd: int
    path: Path

    @classmethod
    def take(cls, folder: Path, shown: str) -> FolderLock:
        """Lock the folder (creating it), or refuse at once (UsageError) when another run holds it."""
        import fcntl

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK
        while True:
            try:  # never through a link, never a FIFO: the lock is a plain file of ours
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
            except OSError as exc:
                raise UsageError(f"--out {shown}: cannot use {path} as this run's lock ({exc.strerror}); remove "
                                 "it if no autolabel run is writing to this folder") from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise UsageError(f"--out {shown}: {path} is not a regular file; remove it if no autolabel run is "
                                 "writing to this folder")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise UsageError(f"--out {shown}: another autolabel run is writing to this folder; wait for it to "
                                 "finish, or choose another folder") from None
            try:
                current = os.stat(path, follow_symlinks=False).st_ino
            except OSError:
                current = None
            if current == os.fstat(fd).st_ino:
                return cls(fd, path)
            os.close(fd)  # the run that held it removed the file meanwhile: lock the one that is there now

    def release(self) -> None:
        """Remove the lock file and let go (the kernel also lets go if the process dies)."""
        import fcntl

        with contextlib.suppress(OSError):
            self.path.unlink()
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _model_identity(model: dict[str, Any]) -> str:
    return f"{model.get('fingerprint')}:{model.get('precision')}"


__all__ = ["FileSink", "ShardSink", "PartWriter", "is_folder_output"]
