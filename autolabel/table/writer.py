"""Parquet/CSV output: the contract schema, streamed to a temp file, renamed into place atomically."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from autolabel.core.errors import UsageError
from autolabel.core.fileio import remove_stale_temps, temp_beside
from autolabel.task import SINGLE, Task

METADATA_KEY = b"autolabel"
OUTPUT_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.string()),
        ("confidence", pa.float64()),
        ("margin", pa.float64()),
        ("status", pa.string()),
        ("top_labels", pa.list_(pa.string())),
        ("top_scores", pa.list_(pa.float64())),
        ("error", pa.string()),
    ]
)
OUTPUT_FORMATS = (".parquet", ".csv")


def output_schema(task: Task = SINGLE) -> pa.Schema:
    """The contract columns: OUTPUT_SCHEMA, then the task's (multi-label: `labels`), before pass-through columns."""
    return pa.schema([*OUTPUT_SCHEMA, *task.fields])


def output_format(out: str | Path) -> str:
    """`parquet` or `csv` from the suffix; anything else is a usage error."""
    suffix = Path(out).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise UsageError(f"--out {out}: must end in .parquet or .csv (or in / for a folder of shards)")
    return suffix[1:]


def full_schema(extra: pa.Schema, task: Task = SINGLE) -> pa.Schema:
    """Contract columns, then pass-through columns (renamed `input_<name>` where they clash)."""
    contract = output_schema(task)
    fields = list(contract)
    taken = set(contract.names)
    for f in extra:
        name = f.name
        while name in taken:
            name = f"input_{name}"
        taken.add(name)
        fields.append(pa.field(name, f.type))
    return pa.schema(fields)


class TableWriter:
    """Streams row batches to a hidden temp file beside OUT; `commit` renames it into place, `abort` removes it."""

    def __init__(self, out: str | Path, schema: pa.Schema, rows_per_group: int = 8192) -> None:
        from autolabel.core import storage

        self.remote = str(out) if storage.is_url(str(out)) else None
        # A remote OUT is built in a private local folder and uploaded whole at the end.
        self.out = Path(out) if self.remote is None else Path(tempfile.mkdtemp(prefix="autolabel-")) / Path(
            str(out)).name
        self.format = output_format(self.out)
        self.schema = schema
        self.rows_per_group = rows_per_group
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._csv_file: Any = None
        with self.naming():
            self.out.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.out)
            self.tmp = temp_beside(self.out)
            if self.format == "parquet":
                self._parquet = pq.ParquetWriter(self.tmp, schema, compression="zstd")
            else:
                self._csv_file = open(self.tmp, "w", newline="", encoding="utf-8")  # noqa: SIM115
                self._csv = csv.writer(self._csv_file)
                self._csv.writerow(schema.names)

    @contextlib.contextmanager
    def naming(self) -> Iterator[None]:
        """An OSError while writing → the same error naming OUT (pyarrow names no file; ours name a temp file)."""
        try:
            yield
        except OSError as exc:
            found = re.search(r"errno (\d+)", str(exc), re.IGNORECASE)
            code = exc.errno or (int(found.group(1)) if found else None)
            raise OSError(code, exc.strerror or " ".join(str(exc).split()), self.remote or str(self.out)) from exc

    def write(self, columns: dict[str, Sequence[Any]]) -> None:
        """Append rows given as {column: values}; all schema columns must be present."""
        batch = pa.RecordBatch.from_arrays(
            [pa.array(columns[f.name], type=f.type) for f in self.schema], schema=self.schema
        )
        with self.naming():
            if self._parquet is None:
                self._write_csv(batch)
                return
            self._pending.append(batch)
            self._pending_rows += batch.num_rows
            if self._pending_rows >= self.rows_per_group:
                self._flush()

    def _flush(self) -> None:
        if self._pending and self._parquet is not None:
            self._parquet.write_table(pa.Table.from_batches(self._pending, schema=self.schema))
        self._pending, self._pending_rows = [], 0

    def _write_csv(self, batch: pa.RecordBatch) -> None:
        for row in batch.to_pylist():
            self._csv.writerow([_csv_cell(row[name]) for name in self.schema.names])

    def commit(self, metadata: dict[str, Any]) -> Path | str:
        """Finish the file, attach run metadata, and atomically put it at OUT (rename, or one upload)."""
        with self.naming():
            done = self._finish(metadata)
        if self.remote is None:
            return done
        from autolabel.core import storage

        try:
            storage.upload(str(done), self.remote)
        finally:
            shutil.rmtree(done.parent, ignore_errors=True)
        return self.remote

    def _finish(self, metadata: dict[str, Any]) -> Path:
        if self._parquet is not None:
            self._flush()
            self._parquet.close()
            self._parquet = None
            # Counts and timings are known only now, and Arrow's schema metadata is fixed when a Parquet
            # writer opens: copy the row groups (one at a time, memory stays flat) into a file that has it.
            schema = self.schema.with_metadata({METADATA_KEY: json.dumps(metadata, default=str).encode()})
            final = self.tmp.with_name(self.tmp.name + ".final")
            try:
                rows = pq.ParquetFile(self.tmp)
                with pq.ParquetWriter(final, schema, compression="zstd") as writer:
                    for i in range(rows.num_row_groups):
                        writer.write_table(rows.read_row_group(i).replace_schema_metadata(schema.metadata))
                os.replace(final, self.out)
            finally:
                final.unlink(missing_ok=True)
                self.tmp.unlink(missing_ok=True)
        else:
            self._csv_file.close()
            _replace_csv(self.tmp, self.out, metadata)
        return self.out

    def abort(self) -> None:
        """Drop the temp file: nothing half-written is left behind."""
        try:
            with contextlib.suppress(Exception):  # an interrupted writer may not close cleanly; it is deleted anyway
                if self._parquet is not None:
                    self._parquet.close()
                elif self._csv_file is not None:
                    self._csv_file.close()
        finally:
            self.tmp.unlink(missing_ok=True)
            if self.remote is not None:
                shutil.rmtree(self.out.parent, ignore_errors=True)


SIDECAR_SUFFIX = ".autolabel.json"


def sidecar_path(table: str | Path) -> Path:
    """Where a CSV table keeps its run metadata (CSV has no place for it): labels.csv → labels.csv.autolabel.json."""
    table = Path(table)
    return table.with_name(table.name + SIDECAR_SUFFIX)


def _ours(sidecar: Path) -> bool:
    """True when the sidecar's place is free or holds a sidecar autolabel wrote (a file of the user's is kept)."""
    if not sidecar.exists() and not sidecar.is_symlink():
        return True
    try:
        data = json.loads(sidecar.read_bytes()) if sidecar.is_file() and sidecar.stat().st_size < (64 << 20) else None
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get(METADATA_KEY.decode()), dict)


def _replace_csv(tmp: Path, out: Path, metadata: dict[str, Any]) -> None:
    """Put the CSV at OUT and its metadata beside it. The old sidecar goes first: a crash in between leaves a table
    without one (readers then ask for --labels), never a table with another run's metadata."""
    from autolabel.core.fileio import write_text

    sidecar = sidecar_path(out)
    ours = _ours(sidecar)
    if ours:
        sidecar.unlink(missing_ok=True)
    os.replace(tmp, out)
    if ours:
        write_text(sidecar, json.dumps({METADATA_KEY.decode(): metadata, "table": out.name}, default=str,
                                       ensure_ascii=False) + "\n")


def read_sidecar(table: str | Path) -> dict[str, Any]:
    """The run metadata beside a CSV table ({} when it has none); UsageError when the file there is not one."""
    from autolabel.core.fileio import InputError, read_json_object

    sidecar = sidecar_path(table)
    if not sidecar.exists():
        return {}
    try:
        data = read_json_object(sidecar, "the table's metadata sidecar").get(METADATA_KEY.decode())
    except InputError as exc:
        raise UsageError(f"{sidecar}: {exc.strerror}; move it away, or pass the label spec with --labels") from None
    if not isinstance(data, dict):
        raise UsageError(f"{sidecar}: not the metadata autolabel writes beside a CSV table (no '"
                         f"{METADATA_KEY.decode()}' object); move it away, or pass the label spec with --labels")
    return data


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    return value


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The `autolabel` run metadata of a Parquet output ({} when absent)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY)
    return json.loads(raw) if raw else {}
