"""Read a labels table written by `autolabel run` (Parquet, or CSV with its label spec) back into memory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from autolabel.errors import SourceError, UsageError
from autolabel.writers import OUTPUT_SCHEMA, read_metadata

LIST_COLUMNS = ("top_labels", "top_scores")


@dataclass
class Results:
    """A labels table, its classes in spec order, and the run metadata (empty for CSV)."""

    path: Path
    frame: pd.DataFrame
    classes: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    spec: Any = None  # LabelSpec, when known (from --labels or the Parquet metadata)

    @property
    def thresholds(self) -> dict[str, float]:
        """Per-class acceptance thresholds used by the run."""
        if self.metadata.get("thresholds"):
            return dict(self.metadata["thresholds"])
        if self.spec is not None:
            return dict(zip(self.spec.class_names, self.spec.thresholds(), strict=True))
        return {}

    def images_root(self, given: str | Path | None = None) -> Path:
        """Where relative paths resolve: `given` (--images-root), else the run's SOURCE folder or manifest's folder."""
        if given:
            return Path(given)
        source = self.metadata.get("source")
        if source and source != "-":
            path = Path(source)
            return path if path.is_dir() else path.parent
        return Path.cwd()

    def location(self, path: str, root: Path) -> Path:
        """The file behind a table path."""
        return Path(path) if Path(path).is_absolute() else root / path

    @property
    def min_margin(self) -> float:
        """The run's min_margin."""
        if "min_margin" in self.metadata:
            return float(self.metadata["min_margin"])
        return float(self.spec.min_margin) if self.spec is not None else 0.0


def _read_shards(folder: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A shard folder written by `autolabel run --out DIR/`: its parts in order, and the manifest's metadata."""
    from autolabel.output import read_manifest

    manifest = read_manifest(folder)
    if not manifest:
        raise SourceError(f"{folder}: no _autolabel.json, so the run that writes this folder has not finished; "
                          "re-run the same `autolabel run` command to complete it")
    try:
        tables = [pq.read_table(folder / shard["file"]) for shard in manifest["shards"]]
    except (OSError, KeyError) as exc:
        raise SourceError(f"{folder}: a shard listed in _autolabel.json cannot be read ({exc})") from None
    frame = pa.concat_tables([t.replace_schema_metadata(None) for t in tables]).to_pandas() if tables else \
        pd.DataFrame(columns=OUTPUT_SCHEMA.names)
    return frame, dict(manifest.get("autolabel") or {})


def load_results(path: str | Path, labels: str | Path | None = None) -> Results:
    """Load OUT of `autolabel run`. CSV tables need the label spec (`labels`) for their class list."""
    from autolabel.spec import load_spec, parse_spec

    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such labels table")
    suffix = path.suffix.lower()
    if path.is_dir():
        frame, metadata = _read_shards(path)
    elif suffix == ".parquet":
        try:
            frame = pq.read_table(path).to_pandas()
            metadata = read_metadata(path)
        except Exception as exc:  # pyarrow raises several types for non-Parquet files
            raise SourceError(f"{path}: cannot read Parquet ({' '.join(str(exc).split())[:200]})") from None
    elif suffix == ".csv":
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"path": str})
        for column in LIST_COLUMNS:
            if column in frame:
                frame[column] = [json.loads(v) if isinstance(v, str) else [] for v in frame[column]]
        metadata = {}
    else:
        raise UsageError(f"{path}: a labels table ends in .parquet or .csv")
    missing = [c for c in OUTPUT_SCHEMA.names if c not in frame.columns]
    if missing:
        raise SourceError(f"{path}: not an autolabel table (missing columns: {', '.join(missing)})")
    spec = None
    if labels is not None:
        spec = load_spec(labels)
    elif metadata.get("spec"):
        spec = parse_spec(metadata["spec"], f"{path} (metadata)")
    if spec is not None:
        classes = list(spec.label_names)  # `other` is a label like the classes (eval, exports, report)
    elif metadata.get("classes"):
        other = (metadata.get("other") or {}).get("name")
        classes = list(metadata["classes"]) + ([other] if other else [])
    else:
        raise UsageError(f"{path}: a CSV table does not record its classes; pass the label spec with --labels")
    frame["status"] = frame["status"].astype(str)
    return Results(path=path, frame=frame, classes=classes, metadata=metadata, spec=spec)
