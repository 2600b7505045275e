"""One table file (Parquet, CSV, TSV, JSONL, a list of paths) read or written whole, atomically, metadata kept."""

from __future__ import annotations

import csv
import errno
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from autolabel.core import storage
from autolabel.core.errors import SourceError, UsageError
from autolabel.core.fileio import InputError, atomic_write, open_regular, read_json_object, write_text
from autolabel.table.format import LIST_COLUMNS, MARK_COLUMNS, METADATA_KEY, METADATA_NAME, sidecar_path
from autolabel.table.schema import review_types

if TYPE_CHECKING:
    from autolabel.task import Task


def read_parquet(handle: BinaryIO) -> pa.Table:
    """A whole Parquet file from an open handle, on one thread."""
    return parquet_file(handle).read(use_threads=False)


def parquet_file(handle: BinaryIO) -> pq.ParquetFile:
    """A Parquet file over a Python file object, read on the calling thread only.

    pyarrow's default pre-buffering reads a Python file object from its I/O threads, which call back into
    Python; one still at work as the interpreter exits aborts the process (SIGABRT, "terminate called without an
    active exception"). Without pre-buffering and with use_threads=False every read happens on this thread.
    """
    return pq.ParquetFile(handle, pre_buffer=False)


@dataclass(frozen=True)
class FileTable:
    """A table file read whole: its rows, and a Parquet file's own schema (its column types and metadata)."""

    frame: Any  # pandas.DataFrame
    schema: pa.Schema | None = None  # None for CSV


def read_file(path: str | Path, text: Sequence[str] = ("path",), all_text: bool = False) -> FileTable:
    """A Parquet file (by its suffix), else a CSV file, whole; regular files only (a FIFO is refused, not waited on).

    CSV cells are read as written: only an empty cell is missing, and the `text` columns (every column with
    `all_text`) stay strings. InputError when the file cannot be opened; pyarrow's and pandas' own errors for a
    file that is not such a table.
    """
    import pandas as pd

    with open_regular(path) as handle:
        if Path(path).suffix.lower() == ".parquet":
            table = read_parquet(handle)
            return FileTable(table.to_pandas(), table.schema)
        dtype: Any = str if all_text else dict.fromkeys(text, str)  # a class may be named "NA"
        return FileTable(pd.read_csv(handle, keep_default_na=False, na_values=[""], dtype=dtype))


@dataclass(frozen=True)
class Rows:
    """A table file opened for reading as Arrow: its schema, its row count and its rows (Parquet: streamed)."""

    source: Any  # a pa.Table, or a pq.ParquetFile read a batch at a time

    @property
    def schema(self) -> pa.Schema:
        """The columns."""
        return self.source.schema if isinstance(self.source, pa.Table) else self.source.schema_arrow

    @property
    def count(self) -> int:
        """How many rows."""
        return self.source.num_rows if isinstance(self.source, pa.Table) else self.source.metadata.num_rows

    def batches(self, size: int) -> Iterator[pa.RecordBatch]:
        """The rows, `size` at a time (a Parquet file is read a few thousand rows at a time)."""
        if isinstance(self.source, pa.Table):
            yield from self.source.to_batches(max_chunksize=size)
        else:
            yield from self.source.iter_batches(batch_size=size, use_threads=False)

    def read(self) -> pa.Table:
        """Every row at once."""
        if isinstance(self.source, pa.Table):
            return self.source
        return self.source.read(use_threads=False)  # see _parse: no pyarrow threads on a file object


def read_rows(path: Path | str, suffix: str, what: str = "manifest", strings: Sequence[str] = ()) -> Rows:
    """A manifest (or any table of paths) by its suffix, as Arrow; a Parquet file stays open, streamed batch by batch.

    A local file must be a regular file (opened without blocking: pyarrow would wait on a FIFO forever).
    CSV columns named in `strings` are read as written: no type guessing (`001` stays `001`, `NA` stays `NA`).
    """
    try:
        handle = storage.open_url(str(path)) if storage.is_url(str(path)) else open_regular(path)
        if suffix == ".parquet":
            return Rows(parquet_file(handle))
        with handle:
            return Rows(_parse(handle, suffix, strings))
    except InputError as exc:
        if exc.errno == errno.ENOENT:
            raise SourceError(f"{path}: {what} not found") from None
        raise SourceError(f"{path}: cannot read {what}: {exc.strerror}") from None
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{path}: cannot read {suffix[1:]} {what} ({first})") from None


def _parse(source: Any, suffix: str, strings: Sequence[str] = ()) -> pa.Table:
    if suffix in (".csv", ".tsv"):
        import pyarrow.csv as pcsv

        delimiter = "\t" if suffix == ".tsv" else ","
        # one thread: pyarrow's worker threads reading through a Python file object can abort the process at exit
        return pcsv.read_csv(source, read_options=pcsv.ReadOptions(use_threads=False),
                             parse_options=pcsv.ParseOptions(delimiter=delimiter),
                             convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(strings, pa.string())))
    if suffix == ".jsonl":
        import pyarrow.json as pjson

        return pjson.read_json(source, read_options=pjson.ReadOptions(use_threads=False))
    lines = source.read().decode("utf-8").splitlines()
    return pa.table({"path": [ln.strip() for ln in lines if ln.strip()]})


def column_names(path: Path) -> list[str]:
    """A table file's column names: a CSV file's first line split at its commas, else a Parquet file's schema's."""
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().strip().split(",")
    return pq.read_schema(path).names


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The `autolabel` run metadata of a Parquet output ({} when absent)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY)
    return json.loads(raw) if raw else {}


@dataclass(frozen=True)
class TableFacts:
    """What an existing table file is: a labels table autolabel wrote or not, and its rows with a human review."""

    ours: bool
    reviewed: int


def table_facts(path: Path, fmt: str) -> TableFacts:
    """Whether a file (`fmt`: parquet or csv) is a labels table autolabel wrote; how many rows have a reviewed_label."""
    if fmt == "parquet":
        schema = pq.read_schema(path)
        ours = bool(schema.metadata and METADATA_KEY in schema.metadata) and set(schema.names) >= MARK_COLUMNS
        return TableFacts(ours, reviewed_rows(path) if ours else 0)
    import pandas as pd

    with path.open(encoding="utf-8-sig", newline="") as handle:  # a regular file: the caller checked
        header = [name.strip() for name in next(csv.reader([handle.readline(1 << 20)]), [])]
    if "reviewed_label" in header:  # reviews are what must never be lost, whatever the rest looks like
        cells = pd.read_csv(path, usecols=lambda name: name.strip() == "reviewed_label", dtype=str,
                            keep_default_na=False, encoding="utf-8-sig").iloc[:, 0]
        return TableFacts(set(header) >= MARK_COLUMNS, int((cells.str.strip() != "").sum()))
    return TableFacts(set(header) >= MARK_COLUMNS, 0)


def reviewed_rows(path: Path) -> int:
    """Rows of a Parquet table (or part) with a human review (0 when it has none or cannot be read)."""
    try:
        if "reviewed_label" not in pq.read_schema(path).names:
            return 0
        column = pq.read_table(path, columns=["reviewed_label"], use_threads=False).column(0)
    except (OSError, pa.ArrowException):
        return 0
    return len(column) - column.null_count


def write_frame(frame: Any, path: str | Path, text_columns: Sequence[str] = (), json_columns: Sequence[str] = ()
                ) -> None:
    """Write a frame atomically: Parquet (types inferred, `text_columns` as strings, no metadata), or CSV (pandas'
    writer; the `json_columns` it has as JSON arrays, a missing cell left empty)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        if path.suffix.lower() == ".parquet":
            table = pa.Table.from_pandas(frame, preserve_index=False)
            for name in text_columns:
                at = table.schema.get_field_index(name)
                table = table.cast(table.schema.set(at, pa.field(name, pa.string())))
            pq.write_table(table.replace_schema_metadata(None), tmp, compression="zstd")
        else:
            frame = frame.copy()
            for column in (c for c in json_columns if c in frame):
                frame[column] = [None if v is None else json.dumps(list(v), ensure_ascii=False)
                                 for v in frame[column]]
            frame.to_csv(tmp, index=False)


def write_arrow(table: pa.Table, path: str | Path) -> None:
    """Write an Arrow table atomically: Parquet (its schema metadata kept), or CSV (pyarrow's writer: nulls empty)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        if path.suffix.lower() == ".parquet":
            pq.write_table(table, tmp, compression="zstd")
        else:
            import pyarrow.csv as pacsv

            pacsv.write_csv(table, tmp)


def rewrite_file(path: Path, frame: Any, metadata: dict[str, Any], schema: pa.Schema | None,
                 task: Task) -> None:
    """Write an updated table file back over itself atomically, keeping every column and the run metadata.

    Parquet (`schema`: the file's own) keeps its columns' types and metadata, the run metadata replaced by
    `metadata`; CSV writes list cells as JSON arrays and keeps its sidecar as it is.
    """
    if schema is None:
        if "reviewed_label" in frame:  # multi-label: a JSON array, empty when not reviewed
            frame = frame.assign(reviewed_label=[task.text_cell(v) for v in frame["reviewed_label"]])
        write_frame(frame, path, json_columns=[*LIST_COLUMNS, *(f.name for f in task.fields)])
        return
    added = review_types(task)
    fields = [schema.field(c) if c in schema.names else pa.field(c, added.get(c, pa.string())) for c in frame.columns]
    table = pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)
    meta = dict(schema.metadata or {})
    meta.pop(b"pandas", None)
    if metadata:
        meta[METADATA_KEY] = json.dumps(metadata, default=str).encode()
    with atomic_write(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")


def sidecar_ours(sidecar: Path) -> bool:
    """True when the sidecar's place is free or holds a sidecar autolabel wrote (a file of the user's is kept)."""
    if not sidecar.exists() and not sidecar.is_symlink():
        return True
    try:
        data = json.loads(sidecar.read_bytes()) if sidecar.is_file() and sidecar.stat().st_size < (64 << 20) else None
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get(METADATA_NAME), dict)


def replace_csv(tmp: Path, out: Path, metadata: dict[str, Any]) -> None:
    """Put the CSV at OUT and its metadata beside it. The old sidecar goes first: a crash in between leaves a table
    without one (readers then ask for --labels), never a table with another run's metadata."""
    sidecar = sidecar_path(out)
    ours = sidecar_ours(sidecar)
    if ours:
        sidecar.unlink(missing_ok=True)
    os.replace(tmp, out)
    if ours:
        write_text(sidecar, json.dumps({METADATA_NAME: metadata, "table": out.name}, default=str,
                                       ensure_ascii=False) + "\n")


def read_sidecar(table: str | Path) -> dict[str, Any]:
    """The run metadata beside a CSV table ({} when it has none); UsageError when the file there is not one."""
    sidecar = sidecar_path(table)
    if not sidecar.exists():
        return {}
    try:
        data = read_json_object(sidecar, "the table's metadata sidecar").get(METADATA_NAME)
    except InputError as exc:
        raise UsageError(f"{sidecar}: {exc.strerror}; move it away, or pass the label spec with --labels") from None
    if not isinstance(data, dict):
        raise UsageError(f"{sidecar}: not the metadata autolabel writes beside a CSV table (no '"
                         f"{METADATA_NAME}' object); move it away, or pass the label spec with --labels")
    return data
