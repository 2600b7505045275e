"""Embedding cache: image embeddings by (content hash, model, preprocessing), text embeddings by (model, prompt).

Also the few numbers a model's weights decide besides embeddings (its "facts": logit scale and bias, text
context, …), so that a run the cache answers completely never loads the model.

One SQLite file in WAL mode: a process killed mid-write leaves the last committed state readable, and
several runs can share it at once (readers never block; writers wait on a busy timeout). A damaged file
is moved aside and rebuilt. A small index maps (path, size, mtime) to the content hash, so unchanged
files are not re-read; renamed or copied files are found by content.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autolabel.core.errors import RuntimeFailure, UsageError
from autolabel.core.fileio import refuse_inside_shards

CACHE_FILE = "embeddings.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (hash TEXT, space TEXT, vec BLOB, used REAL, PRIMARY KEY (hash, space));
CREATE TABLE IF NOT EXISTS texts (space TEXT, prompt TEXT, vec BLOB, used REAL, PRIMARY KEY (space, prompt));
CREATE TABLE IF NOT EXISTS files (location TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, hash TEXT);
CREATE TABLE IF NOT EXISTS facts (space TEXT PRIMARY KEY, data TEXT, used REAL);
"""


def default_cache_dir() -> Path:
    """$AUTOLABEL_CACHE_DIR, else $XDG_CACHE_HOME/autolabel, else ~/.cache/autolabel."""
    if os.environ.get("AUTOLABEL_CACHE_DIR"):
        return Path(os.environ["AUTOLABEL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "autolabel"


def content_hash(data: bytes) -> str:
    """The cache key of a file's bytes."""
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def _location_key(location: str) -> str:
    """The file index key: the path itself, or for a name that is not UTF-8 a form no real path can take."""
    try:
        location.encode("utf-8")
        return location
    except UnicodeEncodeError:
        return "\0" + location.encode("utf-8", "surrogatepass").hex()


def _blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


def _vec(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


@dataclass(frozen=True)
class CacheInfo:
    """What `autolabel cache info` shows."""

    path: Path
    bytes: int
    images: dict[str, int]
    texts: dict[str, int]
    files: int


class EmbeddingCache:
    """Thread-safe handle on the cache file (one SQLite connection per thread)."""

    def __init__(self, folder: str | Path, warn: object = None) -> None:
        self.folder = Path(folder).expanduser()
        self.path = self.folder / CACHE_FILE
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._warn = warn
        refuse_inside_shards(self.path, folder, "--cache-dir")  # a shard folder holds its parts only
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and not self.path.is_file():
                raise OSError(f"{self.path.name} there is not a regular file")
            self._open_checked()
        except (OSError, sqlite3.OperationalError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UsageError(f"cannot use {self.folder} as the embedding cache ({reason}); pass a writable "
                             "--cache-dir (or set AUTOLABEL_CACHE_DIR), or run with --no-cache") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=60000")
        return conn

    def _check_header(self) -> None:
        """Cheap truncation check: the header's page count × page size must fit in the file."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb") as f:
            header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
            raise sqlite3.DatabaseError("not an SQLite file")
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        if pages * page_size > self.path.stat().st_size:
            raise sqlite3.DatabaseError(f"truncated: header says {pages * page_size} bytes, file has fewer")

    def _open_checked(self) -> None:
        try:
            self._check_header()
            conn = self._connect()
            # A full integrity scan is affordable on small caches; big ones rely on the header check.
            if self.path.stat().st_size < (256 << 20) and conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            conn.executescript(_SCHEMA)
            conn.close()
        except sqlite3.OperationalError:
            raise  # cannot open or write the file (a read-only folder, a lock): not damage, nothing to move aside
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{CACHE_FILE}.damaged-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    os.replace(src, Path(str(aside) + suffix))
            if callable(self._warn):
                self._warn(f"embedding cache {self.path} was damaged ({exc}); moved to {aside.name}, rebuilding")
            conn = self._connect()
            conn.executescript(_SCHEMA)
            conn.close()

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            with self._lock:
                self._all.append(conn)
        return conn

    # --- files: (location, size, mtime) → content hash -------------------------------------------
    def known_hash(self, location: str, size: int, mtime_ns: int) -> str | None:
        """The content hash recorded for this exact file state, if any."""
        row = self._read_one("SELECT hash FROM files WHERE location=? AND size=? AND mtime_ns=?",
                             (_location_key(location), size, mtime_ns))
        return row[0] if row else None

    def _read_one(self, sql: str, args: tuple) -> tuple | None:
        """A lookup; a cache that fails mid-run (damaged, locked too long) is a miss, never a failed image."""
        try:
            return self.conn.execute(sql, args).fetchone()
        except sqlite3.Error:
            return None

    # --- images ------------------------------------------------------------------------------------
    def get_image(self, digest: str, space: str) -> np.ndarray | None:
        """A cached image embedding (float32), or None."""
        row = self._read_one("SELECT vec FROM images WHERE hash=? AND space=?", (digest, space))
        return _vec(row[0]) if row else None

    def put_images(self, space: str, entries: Iterable[tuple[str, np.ndarray]],
                   files: Iterable[tuple[str, int, int, str]] = ()) -> None:
        """Store image embeddings and file-index rows in one transaction."""
        now = time.time()
        self._transaction([
            ("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?)", [(h, space, _blob(v), now) for h, v in entries]),
            ("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", [(_location_key(loc), *rest) for loc, *rest in files]),
        ])

    def _transaction(self, statements: list[tuple[str, list[tuple]]]) -> None:
        """Run inserts atomically; an interrupt (Ctrl-C, SIGTERM) at any point leaves the last committed state."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # the interrupt may land after COMMIT already succeeded
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise self._write_failure(exc) from exc

    def _write_failure(self, exc: sqlite3.OperationalError) -> Exception:
        """A full disk (or a failing one) under the cache → one line naming the folder and the way out."""
        text = str(exc).lower()
        if "full" in text or "disk i/o" in text:
            return RuntimeFailure(f"the cache folder {self.folder} is full ({exc}): free space there, or pass "
                                  "--cache-dir DIR on another disk, or --no-cache")
        return exc

    def touch_images(self, space: str, digests: Sequence[str]) -> None:
        """Mark entries as used now (for least-recently-used pruning)."""
        if digests:
            try:
                self.conn.executemany("UPDATE images SET used=? WHERE hash=? AND space=?",
                                      [(time.time(), d, space) for d in digests])
            except sqlite3.OperationalError as exc:
                raise self._write_failure(exc) from exc

    # --- texts -------------------------------------------------------------------------------------
    def get_texts(self, space: str, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached text embeddings of those prompts that have one."""
        found = {}
        for prompt in dict.fromkeys(prompts):
            row = self._read_one("SELECT vec FROM texts WHERE space=? AND prompt=?", (space, prompt))
            if row:
                found[prompt] = _vec(row[0])
        return found

    def put_texts(self, space: str, items: dict[str, np.ndarray]) -> None:
        """Store text embeddings."""
        now = time.time()
        self._transaction([("INSERT OR REPLACE INTO texts VALUES (?, ?, ?, ?)",
                            [(space, p, _blob(v), now) for p, v in items.items()])])

    # --- model facts -------------------------------------------------------------------------------
    def get_facts(self, space: str) -> dict | None:
        """What was stored for this model and precision (a JSON object), or None."""
        row = self._read_one("SELECT data FROM facts WHERE space=?", (space,))
        try:
            data = json.loads(row[0]) if row else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def put_facts(self, space: str, data: dict) -> None:
        """Store a model's facts (JSON-ready values)."""
        self._transaction([("INSERT OR REPLACE INTO facts VALUES (?, ?, ?)",
                            [(space, json.dumps(data, sort_keys=True), time.time())])])

    # --- maintenance -------------------------------------------------------------------------------
    def info(self) -> CacheInfo:
        """Sizes and entry counts per embedding space."""
        images = dict(self.conn.execute("SELECT space, COUNT(*) FROM images GROUP BY space ORDER BY space"))
        texts = dict(self.conn.execute("SELECT space, COUNT(*) FROM texts GROUP BY space ORDER BY space"))
        files = self.conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        return CacheInfo(path=self.path, bytes=self.file_bytes(), images=images, texts=texts, files=files)

    def file_bytes(self) -> int:
        """What the cache takes on disk: the SQLite file and its write-ahead log."""
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def _compact(self) -> None:
        """Give freed pages back to the file system: VACUUM, then fold the log into the (now smaller) file."""
        self.conn.execute("VACUUM")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def clear(self) -> int:
        """Remove every entry; returns how many."""
        removed = sum(self.conn.execute(f"DELETE FROM {t}").rowcount for t in ("images", "texts", "files", "facts"))
        self._compact()
        return removed

    def prune(self, max_bytes: int | None = None, older_than_s: float | None = None) -> int:
        """Drop entries unused for `older_than_s`, then least-recently-used ones until the file is under `max_bytes`.

        Sizes are the file's own, measured after compaction (image embeddings go first, then text ones);
        an empty cache still takes a few kilobytes, so a smaller limit leaves it empty.
        """
        if (max_bytes is not None and max_bytes < 0) or (older_than_s is not None and older_than_s < 0):
            raise UsageError("cache sizes and ages must not be negative")
        conn = self.conn
        removed = 0
        if older_than_s is not None:
            cutoff = time.time() - older_than_s
            removed += conn.execute("DELETE FROM images WHERE used < ?", (cutoff,)).rowcount
            removed += conn.execute("DELETE FROM texts WHERE used < ?", (cutoff,)).rowcount
        self._drop_orphans()
        self._compact()
        for table in ("images", "texts"):
            while max_bytes is not None and self.file_bytes() > max_bytes:
                rows = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                if not rows:
                    break
                # Rows are about the same size: drop the share of them the file is over, at least one.
                size = self.file_bytes()
                n = max(1, math.ceil(rows * (size - max_bytes) / size))
                removed += conn.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
                                        "ORDER BY used LIMIT ?)", (n,)).rowcount
                self._drop_orphans()
                self._compact()
        return removed

    def _drop_orphans(self) -> None:
        self.conn.execute("DELETE FROM files WHERE hash NOT IN (SELECT hash FROM images)")

    def close(self) -> None:
        """Close every thread's connection (the last one to close folds the WAL back into the file)."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
