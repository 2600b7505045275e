"""Audit findings: one frozen record per finding, and the FINDINGS table (Parquet/CSV) they are written to."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from autolabel.core.errors import SourceError, UsageError
from autolabel.table.files import read_file, write_arrow

KINDS = ("duplicate", "leakage", "label_issue", "outlier", "summary")
METADATA_KEY = b"autolabel_audit"
SCHEMA = pa.schema([
    ("kind", pa.string()),
    ("path", pa.string()),
    ("other_path", pa.string()),
    ("score", pa.float64()),
    ("detail", pa.string()),
    ("group", pa.int64()),
    ("label", pa.string()),
    ("suggested", pa.string()),
])


@dataclass(frozen=True)
class Finding:
    """One row of FINDINGS: what was found, about which image(s), how suspicious (higher = more), why."""

    kind: str
    path: str | None
    score: float
    detail: str
    other_path: str | None = None
    group: int | None = None  # duplicate group number (1, 2, … in input order)
    label: str | None = None  # the row's given label (truth for label issues, the class for summaries)
    suggested: str | None = None  # the label the model suggests instead


def findings_format(out: str | Path) -> str:
    """`parquet` or `csv` from FINDINGS' suffix; anything else is a usage error."""
    suffix = Path(out).suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UsageError(f"--out {out}: the findings table must end in .parquet or .csv")
    return suffix[1:]


def to_table(findings: Sequence[Finding], metadata: dict[str, Any] | None = None) -> pa.Table:
    """The findings as an Arrow table with the FINDINGS schema (and the audit's settings as metadata)."""
    columns = {name: [getattr(f, name) for f in findings] for name in SCHEMA.names}
    table = pa.table({name: pa.array(columns[name], type=SCHEMA.field(name).type) for name in SCHEMA.names},
                     schema=SCHEMA)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata or {}, default=str).encode()})


def write_findings(findings: Sequence[Finding], out: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write FINDINGS atomically (temp file + rename); CSV leaves empty cells for nulls."""
    out = Path(out)
    findings_format(out)
    write_arrow(to_table(findings, metadata), out)
    return out


def load_findings(path: str | Path) -> pd.DataFrame:
    """Read a FINDINGS table back (as written by `autolabel audit`)."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such findings table; write one with `autolabel audit LABELS --out {path}`")
    try:
        findings_format(path)
        frame = read_file(path, text=("path", "other_path")).frame
    except UsageError:
        raise
    except Exception as exc:
        raise SourceError(f"{path}: cannot read the findings table ({' '.join(str(exc).split())[:200]})") from None
    missing = [c for c in ("kind", "path", "other_path", "score", "detail") if c not in frame.columns]
    if missing:
        raise SourceError(f"{path}: not an audit findings table (missing columns: {', '.join(missing)})")
    return frame


def is_findings(path: Path) -> bool:
    """True for a findings table this command wrote (so a re-run may replace it)."""
    try:
        load_findings(path)
    except (UsageError, SourceError):
        return False
    return True
