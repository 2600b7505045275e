"""Ground truth aligned to a labels table: a column of it, a CSV/Parquet file mapping path to label, or folders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from autolabel.core.errors import SourceError, UsageError
from autolabel.core.fileio import InputError
from autolabel.table.files import read_file
from autolabel.task.metrics import Table, Truth


def resolve_truth(results: Table, spec: str) -> Truth:
    """`--truth`: a column of the table, a CSV/Parquet file mapping path → label, or `folder`."""
    frame = results.frame
    parse = results.task.parse  # multi-label: lists, JSON arrays or one name
    if spec == "folder":
        parents = [p.replace("\\", "/").rsplit("/", 2)[-2] if "/" in p else None for p in frame["path"]]
        return Truth([parse(p) for p in parents], "parent folder names")
    if spec in frame.columns and spec not in ("path", "label"):
        return Truth([parse(v) for v in frame[spec]], f"column '{spec}'")
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".parquet") and path.exists():
        table = _read_truth(path)
        label_col = next((c for c in ("label", "truth", "reviewed_label", "labels") if c in table.columns), None)
        if "path" not in table.columns or label_col is None:
            raise SourceError(f"{path}: a truth file needs a 'path' column and a 'label' (or 'truth') column")
        mapping = {str(p): parse(v) for p, v in zip(table["path"], table[label_col], strict=True)}
        return Truth([mapping.get(str(p)) for p in frame["path"]], f"{path} ('{label_col}')")
    columns = ", ".join(c for c in frame.columns if c not in ("path",))
    raise UsageError(
        f"--truth {spec}: not a column of {results.path} ({columns}), not an existing .csv/.parquet file, "
        "and not 'folder'"
    )


def _read_truth(path: Path) -> pd.DataFrame:
    """A truth file (regular files only: a FIFO or device is refused, never waited on)."""
    try:
        return read_file(path, all_text=True).frame  # every CSV cell as written: a class may be named "NA"
    except InputError as exc:
        raise SourceError(f"--truth {path}: cannot read it ({exc.strerror})") from None
    except Exception as exc:  # pandas and pyarrow raise many types for files that are not tables
        raise SourceError(f"--truth {path}: not a readable table ({' '.join(str(exc).split())[:200]})") from None
