"""The labels table's Arrow schema: the contract columns, then the multi-label and pass-through columns."""

from __future__ import annotations

import pyarrow as pa

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
LABELS_FIELD = pa.field("labels", pa.list_(pa.string()))  # multi-label: every class over its threshold


def output_schema(multi_label: bool = False) -> pa.Schema:
    """The contract columns: OUTPUT_SCHEMA, then `labels` for a multi-label spec (before pass-through columns)."""
    return OUTPUT_SCHEMA.append(LABELS_FIELD) if multi_label else OUTPUT_SCHEMA


def full_schema(extra: pa.Schema, multi_label: bool = False) -> pa.Schema:
    """Contract columns, then pass-through columns (renamed `input_<name>` where they clash)."""
    contract = output_schema(multi_label)
    fields = list(contract)
    taken = set(contract.names)
    for f in extra:
        name = f.name
        while name in taken:
            name = f"input_{name}"
        taken.add(name)
        fields.append(pa.field(name, f.type))
    return pa.schema(fields)


def review_types(multi_label: bool) -> dict[str, pa.DataType]:
    """The columns import-review adds to a table: the person's label (a list on multi-label tables), and a flag."""
    return {"reviewed_by_human": pa.bool_(),
            "reviewed_label": pa.list_(pa.string()) if multi_label else pa.string()}
